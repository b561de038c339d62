//! Simulated Edge TPUs, for trying the runtime without hardware and for testing it (cargo
//! feature `sim`, off by default).
//!
//! Each simulator only produces something that implements a device seam, so the runtime's real
//! code runs against it unchanged:
//! * [`usb::SimBus`] is a [`crate::device::usb::UsbBus`]: a Coral USB Accelerator emulated at the
//!   USB transfer level (DFU, CSRs, bulk and interrupt endpoints, a virtual clock, faults);
//! * [`pcie::SimApex`] is a [`crate::device::pcie::Sys`]: the apex kernel driver and the chip
//!   behind it, at the system-call boundary;
//! * [`open`] makes runtime devices ([`crate::device::Accelerator`]) of them, named `sim:N`,
//!   `sim:pci:N` and `sim:pci-noncoherent:N` (a host whose PCIe is not cache-coherent), that
//!   register each prepared program with their simulator.
//!
//! A simulator cannot execute Edge TPU instructions: output values come from an [`Oracle`]
//! (the compiled model's CPU twin, a CPU model given by the user, or seeded bytes). The simulators
//! share this project's reading of the protocol, so passing against them is not evidence that
//! the driver works on hardware; that evidence comes from the libedgetpu and gasket-driver
//! sources and real USB logs.

mod devices;
pub mod pcie;
pub mod program;
pub mod usb;

pub use devices::{open, OracleChoice, SimAccelerator, SimHandle, SimOptions};
pub use program::{CpuTwinOracle, Oracle, SeededOracle};
pub use usb::TimeModel;
