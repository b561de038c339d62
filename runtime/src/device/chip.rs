//! Facts of the Edge TPU chip that the USB and PCIe paths share: clock settings, run control
//! and polling over any CSR access.

use super::csr::{self, Csr};
use crate::error::{Error, ErrorKind, Result};

/// Clock setting of the chip (PROTOCOL.md §8). The USB Accelerator defaults to [`Performance::High`];
/// [`Performance::Max`] runs the TPU core at 500 MHz and should only be used at an ambient
/// temperature of at most 25 °C (35 °C for the lower levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Performance {
    /// TPU core 62.5 MHz, AXI 125 MHz, USB 8051 250 MHz.
    Low,
    /// TPU core 125 MHz, AXI 125 MHz, 8051 500 MHz.
    Medium,
    /// TPU core 250 MHz, AXI 125 MHz, 8051 500 MHz (the default for the USB Accelerator).
    #[default]
    High,
    /// TPU core 500 MHz, AXI 250 MHz, 8051 500 MHz (opt-in: runs hot).
    Max,
}

impl Performance {
    /// Bits 28-31 of `scu_ctrl_3`: `rg_gcb_clkdiv` (28-29), `rg_axi_clk_125m` (30),
    /// `rg_8051_clk_250m` (31).
    pub fn clock_bits(self) -> u32 {
        match self {
            Performance::Low => 3 << 28 | 1 << 30 | 1 << 31,
            Performance::Medium => 2 << 28 | 1 << 30,
            Performance::High => 1 << 28 | 1 << 30,
            Performance::Max => 0,
        }
    }

    /// Parses `low`, `medium`, `high` or `max`.
    pub fn parse(s: &str) -> Option<Performance> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Performance::Low),
            "medium" => Some(Performance::Medium),
            "high" => Some(Performance::High),
            "max" => Some(Performance::Max),
            _ => None,
        }
    }
}

/// Run-control value.
pub(crate) const RUN: u64 = 1;
pub(crate) const HALT: u64 = 2;

/// CSR access, which the USB transports and the PCIe register mappings both offer: the
/// register sequences shared by both paths are written over it.
pub(crate) trait CsrIo {
    /// The device, for error messages.
    fn name(&self) -> String;
    /// USB or PCIe, for error messages.
    fn kind(&self) -> crate::error::DeviceKind;
    /// Reads a CSR.
    fn read_csr(&mut self, reg: Csr) -> Result<u64>;
    /// Writes a CSR.
    fn write_csr(&mut self, reg: Csr, value: u64) -> Result<()>;
}

/// Registers set by a run-control change, before the tile broadcast.
const CORE_RUN_CONTROLS: [Csr; 5] = [
    csr::SCALAR_CORE_RUN_CONTROL,
    csr::AV_DATA_POP_RUN_CONTROL,
    csr::PARAMETER_POP_RUN_CONTROL,
    csr::INFEED_RUN_CONTROL,
    csr::OUTFEED_RUN_CONTROL,
];
/// Tile registers set (broadcast to every tile) after `tileconfig0` := 0x7F.
const TILE_RUN_CONTROLS: [Csr; 10] = [
    csr::OP_RUN_CONTROL,
    csr::NARROW_TO_WIDE_RUN_CONTROL,
    csr::WIDE_TO_NARROW_RUN_CONTROL,
    csr::MESH_BUS0_RUN_CONTROL,
    csr::MESH_BUS1_RUN_CONTROL,
    csr::MESH_BUS2_RUN_CONTROL,
    csr::MESH_BUS3_RUN_CONTROL,
    csr::RING_BUS_CONSUMER0_RUN_CONTROL,
    csr::RING_BUS_CONSUMER1_RUN_CONTROL,
    csr::RING_BUS_PRODUCER_RUN_CONTROL,
];
/// Most reads of a register polled for a state change before giving up (libedgetpu polls
/// forever; a device that never gets there is reported instead).
const MAX_POLLS: usize = 1000;

pub(crate) fn field(v: u64, lo: u32, bits: u32) -> u64 {
    (v >> lo) & ((1 << bits) - 1)
}

pub(crate) fn set_field(v: u64, lo: u32, bits: u32, x: u64) -> u64 {
    let m = ((1u64 << bits) - 1) << lo;
    (v & !m) | ((x << lo) & m)
}

pub(crate) fn poll<T: CsrIo + ?Sized>(t: &mut T, reg: Csr, what: &str, done: impl Fn(u64) -> bool) -> Result<()> {
    for _ in 0..MAX_POLLS {
        if done(t.read_csr(reg)?) {
            return Ok(());
        }
    }
    Err(Error::device(
        t.kind(),
        t.name(),
        ErrorKind::Timeout,
        format!("{} (0x{:x}) did not reach {what} after {MAX_POLLS} reads; replug the device", reg.name, reg.offset),
    ))
}

pub(crate) fn run_control<T: CsrIo + ?Sized>(t: &mut T, value: u64) -> Result<()> {
    for reg in CORE_RUN_CONTROLS {
        t.write_csr(reg, value)?;
    }
    t.write_csr(csr::TILECONFIG0, 0x7F)?;
    poll(t, csr::TILECONFIG0, "0x7F (all tiles)", |v| v == 0x7F)?;
    for reg in TILE_RUN_CONTROLS {
        t.write_csr(reg, value)?;
    }
    Ok(())
}
