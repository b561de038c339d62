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

/// The `descr_ep` value: 0xFF reports every descriptor tag on the event endpoint, 0xF0 only the
/// scalar-core interrupts.
pub(crate) fn descr_ep(descriptors: bool) -> u64 {
    if descriptors {
        0xFF
    } else {
        0xF0
    }
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
///
/// `usb2` is true on a High-Speed link only (256-byte output chunks); `descriptors` enables the
/// DMA descriptors of the event endpoint (`descr_ep` 0xFF instead of 0xF0: the device announces
/// every transfer, which executables whose DMA hints are not fully deterministic need).
pub fn open<T: Transport + ?Sized>(t: &mut T, performance: Performance, usb2: bool, descriptors: bool) -> Result<()> {
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
    // 7. Chip set-up: e-fuse revision (informative), event descriptors (interrupts only, or every
    //    DMA), single bulk-out endpoint, output chunk size for the link.
    let _efuse_revision = field(t.read_csr(csr::OMC0_00)?, 24, 8);
    t.write_csr(csr::DESCR_EP, descr_ep(descriptors))?;
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

/// Clears a PCIe-error top-level interrupt at its source: each error response register that reads
/// 1 has its `*_abm_en` toggled off and on, otherwise the interrupt fires again.
fn clear_pcie_errors<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    for (response, enable) in [
        (csr::SLV_WR_ERR_RESP, csr::SLV_ABM_EN),
        (csr::SLV_RD_ERR_RESP, csr::SLV_ABM_EN),
        (csr::MST_WR_ERR_RESP, csr::MST_ABM_EN),
        (csr::MST_RD_ERR_RESP, csr::MST_ABM_EN),
    ] {
        if t.read_csr(response)? == 1 {
            t.write_csr(enable, 0)?;
            t.write_csr(enable, 1)?;
        }
    }
    Ok(())
}

/// Clears an MBIST top-level interrupt at its source: the set bits of `rg_mbist_int_status`
/// (`rambist_ctrl_1` bits 16-18) and of `pll_lock_failure` / `usb_sel_failure` (`scu_ctr_7` bits
/// 16-17) are written back as 1 (write-1-to-clear), otherwise the interrupt fires again.
fn clear_mbist<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    // Writing back the value read writes 1 exactly to the status bits that are set.
    let v = t.read_csr(csr::RAMBIST_CTRL_1)?;
    t.write_csr(csr::RAMBIST_CTRL_1, v)?;
    let v = t.read_csr(csr::SCU_CTR_7)?;
    t.write_csr(csr::SCU_CTR_7, v)
}

/// The close sequence (PROTOCOL.md §1.11 steps 3-5): interrupts off, halt, reset.
pub fn close<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    chip_interrupts(t, false)?;
    t.write_csr(csr::FATAL_ERR_INT_CONTROL, 0)?;
    run_control(t, HALT)?;
    enter_reset(t)
}

/// Handles an interrupt word from endpoint 0x83: a fatal error with HIB error bits set becomes an
/// error carrying them (after clearing the status); a fatal-error interrupt whose
/// `hib_error_status` is 0 is cleared and ignored, as libedgetpu does. Top-level interrupts
/// (thermal, PCIe error, MBIST) are cleared at their source and reported in the returned list.
pub fn handle_interrupt<T: Transport + ?Sized>(
    t: &mut T,
    word: super::frame::InterruptWord,
) -> Result<Vec<&'static str>> {
    if word.fatal {
        let status = t.read_csr(csr::HIB_ERROR_STATUS)?;
        if status == 0 {
            t.write_csr(csr::FATAL_ERR_INT_STATUS, 0)?;
            log::warn!("{}: a fatal-error interrupt with no HIB error bits set; cleared and ignored", t.name());
        } else {
            let first = t.read_csr(csr::HIB_FIRST_ERROR_STATUS)?;
            t.write_csr(csr::FATAL_ERR_INT_STATUS, 0)?;
            return Err(Error::usb(
                t.name(),
                ErrorKind::DeviceFault,
                format!(
                    "the chip reported a fatal error: hib_error_status 0x{status:x} ({}), first error 0x{first:x}; the \
                     device will be reset and reopened",
                    crate::device::csr::hib_errors(status).join(", ")
                ),
            ));
        }
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
            if k == 1 {
                clear_pcie_errors(t)?;
            }
            if k == 2 {
                clear_mbist(t)?;
            }
            t.write_csr(STATUS[k], 0)?;
            log::warn!("{}: top-level interrupt: {}", t.name(), NAMES[k]);
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

    /// CSRs in a map; every write logged.
    #[derive(Debug, Default)]
    struct Regs {
        values: std::collections::HashMap<u32, u64>,
        writes: Vec<(&'static str, u64)>,
    }

    impl Transport for Regs {
        fn name(&self) -> String {
            "regs".into()
        }
        fn read_csr(&mut self, reg: Csr) -> Result<u64> {
            Ok(self.values.get(&reg.offset).copied().unwrap_or(0))
        }
        fn write_csr(&mut self, reg: Csr, value: u64) -> Result<()> {
            self.writes.push((reg.name, value));
            self.values.insert(reg.offset, value);
            Ok(())
        }
        fn send(&mut self, _: super::super::frame::Tag, _: &[u8]) -> Result<()> {
            Ok(())
        }
        fn recv(&mut self, _: &mut [u8]) -> Result<()> {
            Ok(())
        }
        fn wait_event(&mut self) -> Result<super::super::frame::Event> {
            Err(Error::usb("regs", ErrorKind::Timeout, "no event"))
        }
        fn is_usb2(&self) -> bool {
            false
        }
    }

    fn word(fatal: bool, top_level: [bool; 4]) -> super::super::frame::InterruptWord {
        super::super::frame::InterruptWord { fatal, top_level }
    }

    #[test]
    fn a_fatal_interrupt_without_hib_errors_is_cleared_and_ignored() {
        let mut t = Regs::default();
        assert_eq!(handle_interrupt(&mut t, word(true, [false; 4])).unwrap(), Vec::<&str>::new());
        assert_eq!(t.writes, [("fatal_err_int_status", 0)]);
        // With an error bit set it is an error, after the status is cleared.
        t.values.insert(csr::HIB_ERROR_STATUS.offset, 1 << 9);
        let e = handle_interrupt(&mut t, word(true, [false; 4])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DeviceFault);
        assert!(e.to_string().contains("hib_error_status 0x200"), "{e}");
    }

    #[test]
    fn mbist_and_pcie_error_interrupts_are_cleared_at_their_source() {
        let mut t = Regs::default();
        // MBIST failed and timed out (bits 16-17 of rambist_ctrl_1), a PLL lock failure (bit 16 of
        // scu_ctr_7), a slave write and a master read error response.
        t.values.insert(csr::RAMBIST_CTRL_1.offset, 0b011 << 16 | 0x7 << 20);
        t.values.insert(csr::SCU_CTR_7.offset, 1 << 16);
        t.values.insert(csr::SLV_WR_ERR_RESP.offset, 1);
        t.values.insert(csr::MST_RD_ERR_RESP.offset, 1);
        let seen = handle_interrupt(&mut t, word(false, [false, true, true, false])).unwrap();
        assert_eq!(seen, ["PCIe error", "MBIST"]);
        let w = &t.writes;
        // The set status bits are written back as 1 (write-1-to-clear).
        assert!(w.contains(&("rambist_ctrl_1", 0b011 << 16 | 0x7 << 20)), "{w:?}");
        assert!(w.contains(&("scu_ctr_7", 1 << 16)), "{w:?}");
        // Each error response toggles its abm_en off and on.
        let toggles = |name| w.windows(2).filter(|p| p[0] == (name, 0) && p[1] == (name, 1)).count();
        assert_eq!((toggles("slv_abm_en"), toggles("mst_abm_en")), (1, 1), "{w:?}");
        assert!(w.contains(&("top_level_int_1_status", 0)) && w.contains(&("top_level_int_2_status", 0)), "{w:?}");
    }
}
