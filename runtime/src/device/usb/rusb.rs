//! The USB backend on rusb (libusb): [`RusbBus`] lists and opens devices, [`RusbIo`] is one
//! opened device.
//!
//! Every rusb error becomes a [`UsbError`] carrying the endpoint it happened on (0 for control
//! transfers and whole-device operations); the mapping is [`error_kind`].

use super::{Setup, Speed, UsbBus, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath};
use rusb::UsbContext;
use std::fmt;
use std::time::Duration;

/// The [`UsbErrorKind`] of a rusb error.
pub fn error_kind(e: rusb::Error) -> UsbErrorKind {
    match e {
        rusb::Error::Timeout => UsbErrorKind::Timeout,
        rusb::Error::Pipe => UsbErrorKind::Stall,
        rusb::Error::NoDevice => UsbErrorKind::Disconnected,
        rusb::Error::NotFound => UsbErrorKind::NotFound,
        rusb::Error::Access => UsbErrorKind::PermissionDenied,
        rusb::Error::Busy => UsbErrorKind::Busy,
        rusb::Error::Overflow => UsbErrorKind::Overflow,
        rusb::Error::InvalidParam => UsbErrorKind::InvalidParam,
        rusb::Error::Io
        | rusb::Error::Interrupted
        | rusb::Error::NoMem
        | rusb::Error::NotSupported
        | rusb::Error::BadDescriptor
        | rusb::Error::Other => UsbErrorKind::Other,
    }
}

/// A rusb error on `endpoint` as a [`UsbError`].
pub fn usb_error(e: rusb::Error, endpoint: u8) -> UsbError {
    UsbError::new(error_kind(e), endpoint)
}

/// Our [`Speed`] for a rusb speed.
pub fn speed(s: rusb::Speed) -> Speed {
    match s {
        rusb::Speed::Low => Speed::Low,
        rusb::Speed::Full => Speed::Full,
        rusb::Speed::High => Speed::High,
        rusb::Speed::Super => Speed::Super,
        rusb::Speed::SuperPlus => Speed::SuperPlus,
        _ => Speed::Unknown,
    }
}

/// The timeout handed to libusb: libusb reads 0 ms as "wait forever" and counts whole
/// milliseconds in 32 bits, so the timeout is clamped to 1 ms ..= `u32::MAX` ms.
fn libusb_timeout(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_millis(1), Duration::from_millis(u64::from(u32::MAX)))
}

/// The device node libusb opens on Linux, `/dev/bus/usb/BBB/DDD`.
fn device_node(bus: u8, address: u8) -> Option<std::path::PathBuf> {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        Some(std::path::PathBuf::from(format!("/dev/bus/usb/{bus:03}/{address:03}")))
    } else {
        None
    }
}

/// Identity, path and speed of a rusb device; `None` for root hubs (no port chain) and devices
/// whose descriptor cannot be read.
fn describe(device: &rusb::Device<rusb::Context>) -> Option<UsbDeviceInfo> {
    let desc = device.device_descriptor().ok()?;
    let ports = device.port_numbers().ok()?;
    if ports.is_empty() {
        return None;
    }
    let bus = device.bus_number();
    let address = device.address();
    Some(UsbDeviceInfo {
        vendor: desc.vendor_id(),
        product: desc.product_id(),
        path: UsbPath { bus, ports },
        address,
        speed: speed(device.speed()),
        node: device_node(bus, address),
    })
}

/// The USB buses of this machine, through one libusb context.
pub struct RusbBus {
    context: rusb::Context,
}

impl RusbBus {
    /// Initialises libusb.
    pub fn new() -> Result<RusbBus, UsbError> {
        let context = rusb::Context::new().map_err(|e| usb_error(e, 0))?;
        Ok(RusbBus { context })
    }
}

impl fmt::Debug for RusbBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RusbBus")
    }
}

impl UsbBus for RusbBus {
    /// Every attached device except root hubs (they have no port chain and cannot be opened by
    /// path), in libusb's order.
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        let list = self.context.devices().map_err(|e| usb_error(e, 0))?;
        Ok(list.iter().filter_map(|d| describe(&d)).collect())
    }

    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        let list = self.context.devices().map_err(|e| usb_error(e, 0))?;
        for device in list.iter() {
            if device.bus_number() != path.bus {
                continue;
            }
            let Some(info) = describe(&device) else { continue };
            if info.path != *path {
                continue;
            }
            let handle = device.open().map_err(|e| usb_error(e, 0))?;
            return Ok(Box::new(RusbIo { handle, info }));
        }
        Err(UsbError::new(UsbErrorKind::NotFound, 0))
    }
}

/// One device opened through libusb.
pub struct RusbIo {
    handle: rusb::DeviceHandle<rusb::Context>,
    info: UsbDeviceInfo,
}

impl fmt::Debug for RusbIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RusbIo").field("info", &self.info).finish()
    }
}

/// The `wLength` of a control transfer's data phase, or `InvalidParam` when it does not fit.
fn control_length(len: usize) -> Result<u16, UsbError> {
    u16::try_from(len).map_err(|_| UsbError::new(UsbErrorKind::InvalidParam, 0))
}

impl UsbIo for RusbIo {
    fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }

    fn claim_interface(&mut self, interface: u8) -> Result<(), UsbError> {
        // Not supported on every platform (rusb then carries on as if it was not asked); a
        // kernel driver that stays attached shows up as Busy when claiming.
        let _ = self.handle.set_auto_detach_kernel_driver(true);
        self.handle.claim_interface(interface).map_err(|e| usb_error(e, 0))
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        control_length(buf.len())?;
        self.handle
            .read_control(setup.request_type, setup.request, setup.value, setup.index, buf, libusb_timeout(timeout))
            .map_err(|e| usb_error(e, 0))
    }

    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        control_length(data.len())?;
        let sent = self
            .handle
            .write_control(setup.request_type, setup.request, setup.value, setup.index, data, libusb_timeout(timeout))
            .map_err(|e| usb_error(e, 0))?;
        if sent == data.len() {
            Ok(())
        } else {
            Err(UsbError::new(UsbErrorKind::Other, 0))
        }
    }

    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        self.handle.write_bulk(endpoint, data, libusb_timeout(timeout)).map_err(|e| usb_error(e, endpoint))
    }

    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.handle.read_bulk(endpoint, buf, libusb_timeout(timeout)).map_err(|e| usb_error(e, endpoint))
    }

    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.handle.read_interrupt(endpoint, buf, libusb_timeout(timeout)).map_err(|e| usb_error(e, endpoint))
    }

    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        self.handle.clear_halt(endpoint).map_err(|e| usb_error(e, endpoint))
    }

    fn reset(&mut self) -> Result<(), UsbError> {
        reset_result(self.handle.reset())
    }
}

/// The outcome of a port reset: the device re-enumerates, so libusb reporting it gone
/// (`NotFound`, `NoDevice`) means the reset worked.
fn reset_result(r: rusb::Result<()>) -> Result<(), UsbError> {
    match r {
        Ok(()) | Err(rusb::Error::NotFound | rusb::Error::NoDevice) => Ok(()),
        Err(e) => Err(usb_error(e, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rusb_error_has_its_kind() {
        let cases = [
            (rusb::Error::Timeout, UsbErrorKind::Timeout),
            (rusb::Error::Pipe, UsbErrorKind::Stall),
            (rusb::Error::NoDevice, UsbErrorKind::Disconnected),
            (rusb::Error::NotFound, UsbErrorKind::NotFound),
            (rusb::Error::Access, UsbErrorKind::PermissionDenied),
            (rusb::Error::Busy, UsbErrorKind::Busy),
            (rusb::Error::Overflow, UsbErrorKind::Overflow),
            (rusb::Error::InvalidParam, UsbErrorKind::InvalidParam),
            (rusb::Error::Io, UsbErrorKind::Other),
            (rusb::Error::Interrupted, UsbErrorKind::Other),
            (rusb::Error::NoMem, UsbErrorKind::Other),
            (rusb::Error::NotSupported, UsbErrorKind::Other),
            (rusb::Error::BadDescriptor, UsbErrorKind::Other),
            (rusb::Error::Other, UsbErrorKind::Other),
        ];
        for (e, kind) in cases {
            assert_eq!(error_kind(e), kind, "{e:?}");
        }
    }

    #[test]
    fn errors_keep_their_endpoint() {
        let e = usb_error(rusb::Error::Pipe, 0x81);
        assert_eq!(e, UsbError { kind: UsbErrorKind::Stall, endpoint: 0x81 });
        assert_eq!(e.to_string(), "USB transfer on endpoint 0x81 stalled");
        assert_eq!(usb_error(rusb::Error::Timeout, 0).to_string(), "USB control transfer timed out");
    }

    #[test]
    fn reset_tolerates_re_enumeration_only() {
        assert_eq!(reset_result(Ok(())), Ok(()));
        assert_eq!(reset_result(Err(rusb::Error::NotFound)), Ok(()));
        assert_eq!(reset_result(Err(rusb::Error::NoDevice)), Ok(()));
        assert_eq!(reset_result(Err(rusb::Error::Access)), Err(UsbError::new(UsbErrorKind::PermissionDenied, 0)));
        assert_eq!(reset_result(Err(rusb::Error::Io)), Err(UsbError::new(UsbErrorKind::Other, 0)));
    }

    #[test]
    fn speeds_map_and_usb2_is_flagged() {
        assert_eq!(speed(rusb::Speed::High), Speed::High);
        assert_eq!(speed(rusb::Speed::Super), Speed::Super);
        assert_eq!(speed(rusb::Speed::SuperPlus), Speed::SuperPlus);
        assert_eq!(speed(rusb::Speed::Unknown), Speed::Unknown);
        assert!(speed(rusb::Speed::Full).is_usb2());
        assert!(!speed(rusb::Speed::Super).is_usb2());
    }

    #[test]
    fn timeouts_never_mean_forever() {
        assert_eq!(libusb_timeout(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(libusb_timeout(Duration::from_micros(300)), Duration::from_millis(1));
        assert_eq!(libusb_timeout(Duration::from_millis(6000)), Duration::from_millis(6000));
        assert_eq!(libusb_timeout(Duration::from_secs(u64::MAX)), Duration::from_millis(u64::from(u32::MAX)));
    }

    #[test]
    fn control_lengths_must_fit_w_length() {
        assert_eq!(control_length(18), Ok(18));
        assert_eq!(control_length(65535), Ok(65535));
        assert_eq!(control_length(65536), Err(UsbError::new(UsbErrorKind::InvalidParam, 0)));
    }

    #[test]
    fn device_nodes_are_zero_padded() {
        if cfg!(target_os = "linux") {
            assert_eq!(device_node(2, 5), Some(std::path::PathBuf::from("/dev/bus/usb/002/005")));
        }
    }
}
