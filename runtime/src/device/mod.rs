//! Talking to a Coral device.
//!
//! * [`usb::UsbAccelerator`] is a Coral USB Accelerator: it downloads the firmware when the
//!   device needs it ([`dfu`]), runs the open and close register sequences ([`sequence`], every
//!   register named once in [`csr`]), runs prepared executables ([`program`]) by their DMA hints
//!   ([`usb_plan`], framing in [`usb_frame`]) with parameter caching, re-lays-out outputs
//!   ([`layout`]) and recovers from failures by resetting and reopening the device.
//! * [`discovery`] lists Corals and parses selection strings (`usb`, `usb:N`, `usb:<path>`);
//!   [`firmware_path`] finds the firmware image.
//! * [`apex::ApexAccelerator`] is a PCIe Edge TPU (M.2, Mini-PCIe, Dev Board) behind the apex
//!   kernel driver: CSR pages, device page table, instruction queue, eventfd interrupts
//!   (PROTOCOL.md §7), over the system-call seam [`crate::transport::apex::Sys`];
//!   [`apex_sysfs`] lists PCIe Corals, checks who owns them and reads their temperature.
//!
//! Everything runs over the [`crate::transport`] seams, so it is tested against the simulator
//! ([`crate::transport::sim`]) and recorded traces; it has not yet run on real hardware.

pub mod apex;
pub mod apex_sysfs;
pub mod csr;
pub mod dfu;
pub mod discovery;
pub mod firmware_path;
pub mod layout;
pub mod program;
pub mod sequence;
pub mod usb;
pub mod usb_frame;
pub mod usb_plan;
