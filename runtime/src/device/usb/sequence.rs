//! The open and close register sequences of the USB Accelerator (PROTOCOL.md §1.10-1.11), step
//! by step, over any [`Transport`], and the performance levels.

use super::transport::Transport;
use crate::device::chip::{field, poll, run_control, set_field, CsrIo, Performance, HALT, RUN};
use crate::device::csr::{self, Csr};
use crate::error::{Error, ErrorKind, Result};

impl<T: Transport + ?Sized> CsrIo for T {
    fn name(&self) -> String {
        Transport::name(self)
    }
    fn kind(&self) -> crate::error::DeviceKind {
        crate::error::DeviceKind::Usb
    }
    fn read_csr(&mut self, reg: Csr) -> Result<u64> {
        Transport::read_csr(self, reg)
    }
    fn write_csr(&mut self, reg: Csr, value: u64) -> Result<()> {
        Transport::write_csr(self, reg, value)
    }
}

const TOP_LEVEL_CONTROLS: [Csr; 4] = [
    csr::TOP_LEVEL_INT_0_CONTROL,
    csr::TOP_LEVEL_INT_1_CONTROL,
    csr::TOP_LEVEL_INT_2_CONTROL,
    csr::TOP_LEVEL_INT_3_CONTROL,
];

fn rmw<T: Transport + ?Sized>(t: &mut T, reg: Csr, f: impl Fn(u64) -> u64) -> Result<()> {
    let v = t.read_csr(reg)?;
    t.write_csr(reg, f(v))
}

/// Step 4 of the open sequence, and the last of the close sequence: put the core to sleep.
fn enter_reset<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    let v = t.read_csr(csr::SCU_CTRL_3)?;
    if field(v, 22, 2) == 3 {
        return Ok(());
    }
    t.write_csr(csr::SCU_CTRL_3, set_field(v, 22, 2, 3))?;
    poll(t, csr::SCU_CTRL_3, "cur_pwr_state 2 (asleep)", |v| field(v, 8, 2) == 2)?;
    t.write_csr(csr::GCBB_CREDIT0, 0xF)?;
    t.write_csr(csr::GCBB_CREDIT0, 0)
}

/// Whether the link is High-Speed (USB 2), which sets 256-byte output chunks.
pub(crate) fn outfeed_chunk_length(usb2: bool) -> u64 {
    if usb2 {
        0x20
    } else {
        0x80
    }
}

/// The open sequence after the device is open and interface 0 claimed (PROTOCOL.md §1.10
/// steps 1-9).
pub fn open<T: Transport + ?Sized>(t: &mut T, performance: Performance, usb2: bool) -> Result<()> {
    // 1. Top-level handler: PHYs active, remember whether hardware clock gating is on.
    rmw(t, csr::SCU_CTRL_0, |v| set_field(set_field(v, 8, 3, 0), 11, 3, 0))?;
    let gated = field(t.read_csr(csr::SCU_CTRL_2)?, 18, 2) == 1;
    // 2. Software clock gating: nothing to do over USB. 3. Hardware clock gate off.
    if gated {
        rmw(t, csr::SCU_CTRL_2, |v| set_field(v, 18, 2, 2))?;
    }
    // 4. Enter reset.
    enter_reset(t)?;
    // 5. Quit reset with the clocks of the performance level.
    rmw(t, csr::SCU_CTRL_3, |v| {
        let v = set_field(v, 22, 2, 2);
        set_field(v, 28, 4, (performance.clock_bits() >> 28) as u64)
    })?;
    poll(t, csr::SCU_CTRL_3, "cur_pwr_state 0 (awake)", |v| field(v, 8, 2) == 0)?;
    poll(t, csr::SCALAR_CORE_RUN_CONTROL, "0 (out of reset)", |v| v == 0)?;
    t.write_csr(csr::IDLE_REGISTER, 1)?;
    t.write_csr(csr::TILECONFIG0, 0x7F)?;
    poll(t, csr::TILECONFIG0, "0x7F (all tiles)", |v| v == 0x7F)?;
    t.write_csr(csr::DEEP_SLEEP, 0x1E02)?;
    // 6. Hardware clock gating on.
    let v = t.read_csr(csr::SCU_CTRL_2)?;
    if field(v, 18, 2) != 1 {
        t.write_csr(csr::SCU_CTRL_2, set_field(v, 18, 2, 1))?;
    }
    // 7. Chip set-up: e-fuse revision (informative), event descriptors for interrupts only,
    //    single bulk-out endpoint, output chunk size for the link.
    let _efuse_revision = field(t.read_csr(csr::OMC0_00)?, 24, 8);
    t.write_csr(csr::DESCR_EP, 0xF0)?;
    t.write_csr(csr::MULTI_BO_EP, 0)?;
    t.write_csr(csr::OUTFEED_CHUNK_LENGTH, outfeed_chunk_length(usb2))?;
    // 8. Run.
    run_control(t, RUN)?;
    // 9. Interrupts.
    t.write_csr(csr::FATAL_ERR_INT_CONTROL, 1)?;
    chip_interrupts(t, true)
}

/// Enables (open step 9) or disables (close step 3) the top-level interrupts and their chip-level
/// sources: thermal warning, MBIST and boot failures (status bits written 0, W1C), PCIe error
/// reporting, thermal shutdown.
fn chip_interrupts<T: Transport + ?Sized>(t: &mut T, on: bool) -> Result<()> {
    let (bit, mbist_mask, boot_mask, isr_mask) = if on { (1, 0, 0, 3) } else { (0, 7, 3, 0) };
    for reg in TOP_LEVEL_CONTROLS {
        t.write_csr(reg, bit)?;
    }
    rmw(t, csr::OMC0_D4, |v| set_field(v, 31, 1, bit))?;
    rmw(t, csr::RAMBIST_CTRL_1, |v| set_field(set_field(v, 16, 3, 0), 20, 3, mbist_mask))?;
    rmw(t, csr::SCU_CTR_7, |v| set_field(set_field(v, 16, 2, 0), 18, 2, boot_mask))?;
    t.write_csr(csr::SLV_ABM_EN, bit)?;
    t.write_csr(csr::MST_ABM_EN, bit)?;
    t.write_csr(csr::SLV_ERR_RESP_ISR_MASK, isr_mask)?;
    t.write_csr(csr::MST_ERR_RESP_ISR_MASK, isr_mask)?;
    rmw(t, csr::OMC0_D8, |v| set_field(v, 31, 1, bit))
}

/// The close sequence (PROTOCOL.md §1.11 steps 3-5): interrupts off, halt, reset.
pub fn close<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    chip_interrupts(t, false)?;
    t.write_csr(csr::FATAL_ERR_INT_CONTROL, 0)?;
    run_control(t, HALT)?;
    enter_reset(t)
}

/// Handles an interrupt word from endpoint 0x83: a fatal error becomes an error carrying the
/// decoded HIB error bits (after clearing the status); top-level interrupts (thermal, PCIe
/// error, MBIST) are cleared and reported in the returned list.
pub fn handle_interrupt<T: Transport + ?Sized>(
    t: &mut T,
    word: super::frame::InterruptWord,
) -> Result<Vec<&'static str>> {
    if word.fatal {
        let status = t.read_csr(csr::HIB_ERROR_STATUS)?;
        let first = if status != 0 { t.read_csr(csr::HIB_FIRST_ERROR_STATUS)? } else { 0 };
        t.write_csr(csr::FATAL_ERR_INT_STATUS, 0)?;
        return Err(Error::usb(
            t.name(),
            ErrorKind::DeviceFault,
            format!(
                "the chip reported a fatal error: hib_error_status 0x{status:x} ({}), first error 0x{first:x}; the device \
                 will be reset and reopened",
                crate::device::csr::hib_errors(status).join(", ")
            ),
        ));
    }
    const NAMES: [&str; 4] = ["thermal shutdown", "PCIe error", "MBIST", "thermal warning"];
    const STATUS: [Csr; 4] = [
        csr::TOP_LEVEL_INT_0_STATUS,
        csr::TOP_LEVEL_INT_1_STATUS,
        csr::TOP_LEVEL_INT_2_STATUS,
        csr::TOP_LEVEL_INT_3_STATUS,
    ];
    let mut seen = Vec::new();
    for k in 0..4 {
        if word.top_level[k] {
            if k == 0 || k == 3 {
                // Thermal: clear warn_o / sd_o with warn_clear (bit 29) / sd_clear (bit 28).
                let v = t.read_csr(csr::OMC0_DC)?;
                let clear = if k == 3 { (v >> 31 & 1) << 29 } else { (v >> 30 & 1) << 28 };
                if clear != 0 {
                    t.write_csr(csr::OMC0_DC, v | clear)?;
                }
            }
            t.write_csr(STATUS[k], 0)?;
            seen.push(NAMES[k]);
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_bits_match_the_real_max_trace() {
        // The real Max-performance write of PROTOCOL.md §1.10 has bits 28-31 clear; High sets
        // clkdiv 1 and the 125 MHz AXI bit.
        assert_eq!(Performance::Max.clock_bits(), 0);
        assert_eq!(Performance::High.clock_bits(), 0x5000_0000);
        assert_eq!(Performance::Low.clock_bits() >> 28, 0b1111);
        assert_eq!(Performance::default(), Performance::High);
        assert_eq!(Performance::parse("MAX"), Some(Performance::Max));
        assert_eq!(Performance::parse("turbo"), None);
        assert_eq!(set_field(0x00C5_025C, 22, 2, 2), 0x0085_025C);
    }
}
