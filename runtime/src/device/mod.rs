//! Talking to a Coral device. Work in progress: this module holds the pieces of the USB
//! protocol that do not need a device: the CSR map and its control-request encoding
//! ([`csr`]), the bulk-out headers, event packets and interrupt words ([`usb_frame`]), the
//! transfers of one executable run ([`usb_plan`]) and the output re-layout ([`layout`]).
//! The driver (open/close sequences, firmware download, running an executable) is not
//! implemented yet; nothing here has talked to hardware.

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
