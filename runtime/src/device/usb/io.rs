//! The two seams below the device logic (ARCHITECTURE.md).
//!
//! * [`UsbIo`] is one opened USB device: raw control, bulk and interrupt transfers on endpoint
//!   addresses, and a port reset. It is implemented by rusb ([`usb`], feature `usb`), by the
//!   simulator ([`sim`]) and by the record/replay wrappers ([`record`]). The whole USB protocol
//!   (DFU requests, CSR request encoding, bulk-out headers, hint order, bulk-in queueing) runs on
//!   top of it unchanged, whatever implements it.
//! * [`UsbBus`] lists USB devices and opens one by its port path; the runtime follows a device
//!   across its id change (DFU `1a6e:089a` to application `18d1:9302`) by that path.
//!
//! Every failure is a [`UsbError`]: small, `Copy`, with a [`UsbErrorKind`] that the device
//! logic turns into recovery (reset and reopen) or into an [`crate::Error`].

use std::fmt;
use std::time::Duration;

/// Vendor and product id of the accelerator before its firmware is loaded (DFU mode).
pub const DFU_ID: (u16, u16) = (0x1a6e, 0x089a);
/// Vendor and product id of the accelerator running its firmware (application mode).
pub const APP_ID: (u16, u16) = (0x18d1, 0x9302);

/// The setup packet of a control transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// `bmRequestType` (bit 7 set: device to host).
    pub request_type: u8,
    /// `bRequest`.
    pub request: u8,
    /// `wValue`.
    pub value: u16,
    /// `wIndex`.
    pub index: u16,
}

impl Setup {
    /// Whether the data phase goes device to host.
    pub fn is_in(self) -> bool {
        self.request_type & 0x80 != 0
    }
}

/// USB link speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Speed {
    /// 1.5 Mbit/s (rejected by the runtime).
    Low,
    /// 12 Mbit/s.
    Full,
    /// 480 Mbit/s (USB 2).
    High,
    /// 5 Gbit/s (USB 3).
    Super,
    /// 10 Gbit/s or more.
    SuperPlus,
    /// Not reported.
    Unknown,
}

impl Speed {
    /// Whether this is slower than SuperSpeed (a USB 2 port or cable).
    pub fn is_usb2(self) -> bool {
        matches!(self, Speed::Low | Speed::Full | Speed::High)
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Speed::Low => "USB 1 low speed (1.5 Mbit/s)",
            Speed::Full => "USB 1 full speed (12 Mbit/s)",
            Speed::High => "USB 2 high speed (480 Mbit/s)",
            Speed::Super => "USB 3 SuperSpeed (5 Gbit/s)",
            Speed::SuperPlus => "USB 3 SuperSpeed+ (10 Gbit/s)",
            Speed::Unknown => "unknown speed",
        })
    }
}

/// Where a device is plugged in: bus number and port chain (at most 7 ports). It stays the same
/// when the device re-enumerates with another id, so it is how the runtime finds it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UsbPath {
    /// Bus number.
    pub bus: u8,
    /// Port numbers from the root hub down.
    pub ports: Vec<u8>,
}

impl UsbPath {
    /// Parses `"<bus>-<port>.<port>..."` (the sysfs name), e.g. `"2-1.4"`.
    pub fn parse(s: &str) -> Option<UsbPath> {
        let (bus, ports) = s.split_once('-')?;
        let bus = bus.parse().ok()?;
        let ports = ports.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u8>>>()?;
        (!ports.is_empty() && ports.len() <= 7).then_some(UsbPath { bus, ports })
    }

    /// The sysfs directory of the device, `/sys/bus/usb/devices/<bus>-<ports>`.
    pub fn sysfs(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/sys/bus/usb/devices/{self}"))
    }
}

impl fmt::Display for UsbPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.bus)?;
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A device found on a bus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsbDeviceInfo {
    /// Vendor id.
    pub vendor: u16,
    /// Product id.
    pub product: u16,
    /// Where it is plugged in.
    pub path: UsbPath,
    /// Device address on its bus (changes at every re-enumeration).
    pub address: u8,
    /// Link speed.
    pub speed: Speed,
    /// The device node (`/dev/bus/usb/BBB/DDD`), when the platform has one.
    pub node: Option<std::path::PathBuf>,
}

impl UsbDeviceInfo {
    /// Whether this is a Coral USB Accelerator (either id).
    pub fn is_coral(&self) -> bool {
        (self.vendor, self.product) == DFU_ID || (self.vendor, self.product) == APP_ID
    }
    /// Whether it waits for its firmware (DFU mode).
    pub fn needs_firmware(&self) -> bool {
        (self.vendor, self.product) == DFU_ID
    }
}

/// Coarse class of a USB failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UsbErrorKind {
    /// The transfer did not complete in time.
    Timeout,
    /// The endpoint stalled (the device refused the request).
    Stall,
    /// The device is gone (unplugged, reset, or re-enumerated).
    Disconnected,
    /// No such device.
    NotFound,
    /// The user may not open the device node.
    PermissionDenied,
    /// Another process or driver holds the device.
    Busy,
    /// More data arrived than the buffer holds.
    Overflow,
    /// The transfer was malformed for this endpoint.
    InvalidParam,
    /// A recorded session does not continue the way this one does (replay only).
    ReplayMismatch,
    /// Any other host-controller or library failure.
    Other,
}

/// A failed USB operation: what kind, on which endpoint (0 for control transfers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbError {
    /// What went wrong.
    pub kind: UsbErrorKind,
    /// Endpoint address (0 for the control endpoint and for whole-device operations).
    pub endpoint: u8,
}

impl UsbError {
    /// A failure of `kind` on `endpoint`.
    pub fn new(kind: UsbErrorKind, endpoint: u8) -> UsbError {
        UsbError { kind, endpoint }
    }
}

impl fmt::Display for UsbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            UsbErrorKind::Timeout => "timed out",
            UsbErrorKind::Stall => "stalled",
            UsbErrorKind::Disconnected => "failed: the device is disconnected",
            UsbErrorKind::NotFound => "failed: no such device",
            UsbErrorKind::PermissionDenied => "failed: permission denied",
            UsbErrorKind::Busy => "failed: the device is busy (claimed by another process or driver)",
            UsbErrorKind::Overflow => "overflowed (the device sent more than asked for)",
            UsbErrorKind::InvalidParam => "was rejected as invalid",
            UsbErrorKind::ReplayMismatch => "does not match the recorded session",
            UsbErrorKind::Other => "failed",
        };
        if self.endpoint == 0 {
            write!(f, "USB control transfer {what}")
        } else {
            write!(f, "USB transfer on endpoint 0x{:02x} {what}", self.endpoint)
        }
    }
}

impl std::error::Error for UsbError {}

/// One opened USB device: the raw transfers the protocol is made of.
///
/// Implementations must not panic on any input and must return within the given timeout.
pub trait UsbIo: Send + fmt::Debug {
    /// The device's identity, path and speed as seen when it was opened.
    fn info(&self) -> &UsbDeviceInfo;
    /// Claims an interface (detaching a kernel driver where the platform needs it).
    fn claim_interface(&mut self, interface: u8) -> Result<(), UsbError>;
    /// A control transfer with a device-to-host data phase; returns the bytes received.
    fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError>;
    /// A control transfer with a host-to-device data phase (possibly empty).
    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError>;
    /// A bulk-out transfer on `endpoint`; returns the bytes sent.
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<usize, UsbError>;
    /// A bulk-in transfer on `endpoint` into `buf`; returns the bytes received (a short read is
    /// not an error).
    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError>;
    /// An interrupt-in transfer on `endpoint`.
    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError>;
    /// Clears a halted (stalled) endpoint.
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError>;
    /// Resets the port. The device re-enumerates; this handle is unusable afterwards and the
    /// device must be opened again through its [`UsbBus`] by path.
    fn reset(&mut self) -> Result<(), UsbError>;
}

/// A USB bus: lists devices and opens them.
pub trait UsbBus: Send + Sync + fmt::Debug {
    /// Every device currently attached (all ids; callers filter).
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError>;
    /// Opens the device at `path`.
    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError>;
    /// Waits `d` for devices to settle (re-enumeration after a reset). The simulator advances
    /// its virtual clock instead of sleeping.
    fn settle(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

impl<T: UsbIo + ?Sized> UsbIo for Box<T> {
    fn info(&self) -> &UsbDeviceInfo {
        (**self).info()
    }
    fn claim_interface(&mut self, interface: u8) -> Result<(), UsbError> {
        (**self).claim_interface(interface)
    }
    fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).control_in(setup, buf, timeout)
    }
    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        (**self).control_out(setup, data, timeout)
    }
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).bulk_out(endpoint, data, timeout)
    }
    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).bulk_in(endpoint, buf, timeout)
    }
    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        (**self).interrupt_in(endpoint, buf, timeout)
    }
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        (**self).clear_halt(endpoint)
    }
    fn reset(&mut self) -> Result<(), UsbError> {
        (**self).reset()
    }
}

impl UsbErrorKind {
    /// The runtime's error kind for this USB failure.
    pub fn error_kind(self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            UsbErrorKind::Timeout => K::Timeout,
            UsbErrorKind::Disconnected => K::Disconnected,
            UsbErrorKind::NotFound => K::NotFound,
            UsbErrorKind::PermissionDenied => K::PermissionDenied,
            UsbErrorKind::Busy => K::Busy,
            UsbErrorKind::Stall
            | UsbErrorKind::Overflow
            | UsbErrorKind::InvalidParam
            | UsbErrorKind::ReplayMismatch => K::Protocol,
            UsbErrorKind::Other => K::Io,
        }
    }
}

impl<T: UsbBus + ?Sized> UsbBus for Box<T> {
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        (**self).devices()
    }
    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        (**self).open(path)
    }
    fn settle(&self, d: Duration) {
        (**self).settle(d)
    }
}

impl<T: UsbBus + ?Sized> UsbBus for std::sync::Arc<T> {
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        (**self).devices()
    }
    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        (**self).open(path)
    }
    fn settle(&self, d: Duration) {
        (**self).settle(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let p = UsbPath::parse("2-1.4").unwrap();
        assert_eq!(p, UsbPath { bus: 2, ports: vec![1, 4] });
        assert_eq!(p.to_string(), "2-1.4");
        assert_eq!(p.sysfs(), std::path::PathBuf::from("/sys/bus/usb/devices/2-1.4"));
        assert!(UsbPath::parse("2").is_none());
        assert!(UsbPath::parse("2-1.2.3.4.5.6.7.8").is_none());
        assert!(UsbPath::parse("x-1").is_none());
    }
}
