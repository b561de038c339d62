//! Bringing a USB Accelerator from DFU mode to its firmware (PROTOCOL.md §1.2-1.3): descriptors,
//! DFU download with GETSTATUS after every block and a zero-length last block, verification by
//! upload, and following the device by its port path across the re-enumeration.

use crate::device::usb::{Setup, UsbBus, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath, APP_ID, DFU_ID};
use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

/// Open attempts after a reset (`kMaxNumOfRetryAfterReset`), each after [`SETTLE`].
pub const OPEN_RETRIES: usize = 25;
/// Wait before each open attempt.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Most blocks read back when verifying (256 KiB at 256-byte blocks); the device serves 32 KiB.
const MAX_UPLOAD_BLOCKS: usize = 1024;
const DFU_STATE_IDLE: u8 = 2;
const DFU_STATE_DNLOAD_IDLE: u8 = 5;

/// Progress of a firmware download: bytes sent, total.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

fn dev_err(info: &UsbDeviceInfo, kind: ErrorKind, reason: impl Into<String>) -> Error {
    Error::usb(format!("usb:{} ({:04x}:{:04x})", info.path, info.vendor, info.product), kind, reason)
}

fn usb(info: &UsbDeviceInfo, e: UsbError, what: &str) -> Error {
    dev_err(info, e.kind.error_kind(), format!("{what}: {e}"))
}

/// Reads the 18-byte device descriptor and returns (vendor, product).
pub fn read_ids(io: &mut dyn UsbIo, timeout: Duration) -> Result<(u16, u16)> {
    let mut d = [0u8; 18];
    let setup = Setup { request_type: 0x80, request: 6, value: 0x0100, index: 0 };
    let n = io.control_in(setup, &mut d, timeout).map_err(|e| usb(io.info(), e, "reading the device descriptor"))?;
    if n < 12 || d[1] != 1 {
        return Err(dev_err(io.info(), ErrorKind::Protocol, format!("a malformed device descriptor ({n} bytes)")));
    }
    Ok((u16::from_le_bytes([d[8], d[9]]), u16::from_le_bytes([d[10], d[11]])))
}

/// The DFU interface and its block size, from the configuration descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuInterface {
    /// Interface number (the `wIndex` of every DFU request).
    pub interface: u8,
    /// `wTransferSize` of the DFU functional descriptor.
    pub transfer_size: usize,
    /// `bmAttributes` (bit 0 can download, bit 1 can upload, bit 2 manifestation tolerant,
    /// bit 3 will detach).
    pub attributes: u8,
}

/// Finds the first DFU interface (no endpoints, class 0xFE, subclass 1) and the DFU functional
/// descriptor (type 0x21) after it.
pub fn parse_dfu_interface(config: &[u8]) -> Option<DfuInterface> {
    let mut at = 0;
    let mut iface: Option<u8> = None;
    while at + 2 <= config.len() {
        let len = config[at] as usize;
        if len < 2 || at + len > config.len() {
            return None;
        }
        let d = &config[at..at + len];
        match d[1] {
            4 if len >= 9 => {
                iface = (d[4] == 0 && d[5] == 0xFE && d[6] == 0x01).then_some(d[2]);
            }
            0x21 if len >= 7 => {
                if let Some(interface) = iface {
                    let transfer_size = u16::from_le_bytes([d[5], d[6]]) as usize;
                    return (transfer_size > 0).then_some(DfuInterface { interface, transfer_size, attributes: d[2] });
                }
            }
            _ => {}
        }
        at += len;
    }
    None
}

fn status(io: &mut dyn UsbIo, iface: u8, timeout: Duration) -> Result<(u8, u8)> {
    let mut s = [0u8; 6];
    let setup = Setup { request_type: 0xA1, request: 3, value: 0, index: iface as u16 };
    let n = io.control_in(setup, &mut s, timeout).map_err(|e| usb(io.info(), e, "DFU_GETSTATUS"))?;
    if n != 6 {
        return Err(dev_err(io.info(), ErrorKind::Protocol, format!("DFU_GETSTATUS returned {n} bytes, not 6")));
    }
    Ok((s[0], s[4]))
}

/// Downloads `image` (PROTOCOL.md §1.3): DNLOAD blocks of the interface's transfer size, each
/// followed at once by GETSTATUS (status OK, state dfuDNLOAD-IDLE), then a zero-length block that
/// must leave the device in dfuIDLE.
pub fn download(
    io: &mut dyn UsbIo,
    dfu: DfuInterface,
    image: &[u8],
    timeout: Duration,
    progress: Progress,
) -> Result<()> {
    let fail = |io: &dyn UsbIo, block: usize, st: u8, state: u8| {
        dev_err(
            io.info(),
            ErrorKind::DeviceFault,
            format!(
                "firmware download failed at block {block}: DFU status {st}, state {state}; unplug the accelerator, plug \
                 it back in and try again"
            ),
        )
    };
    let total = image.len();
    let mut block = 0usize;
    for chunk in image.chunks(dfu.transfer_size) {
        let setup = Setup { request_type: 0x21, request: 1, value: block as u16, index: dfu.interface as u16 };
        io.control_out(setup, chunk, timeout).map_err(|e| usb(io.info(), e, &format!("DFU_DNLOAD block {block}")))?;
        let (st, state) = status(io, dfu.interface, timeout)?;
        if st != 0 || state != DFU_STATE_DNLOAD_IDLE {
            return Err(fail(io, block, st, state));
        }
        block += 1;
        progress((block * dfu.transfer_size).min(total), total);
    }
    let setup = Setup { request_type: 0x21, request: 1, value: block as u16, index: dfu.interface as u16 };
    io.control_out(setup, &[], timeout).map_err(|e| usb(io.info(), e, "the zero-length DFU_DNLOAD"))?;
    let (st, state) = status(io, dfu.interface, timeout)?;
    if st != 0 || state != DFU_STATE_IDLE {
        return Err(fail(io, block, st, state));
    }
    Ok(())
}

/// Reads the device's memory back with DFU_UPLOAD until a short block and checks that it begins
/// with `image`.
pub fn verify(io: &mut dyn UsbIo, dfu: DfuInterface, image: &[u8], timeout: Duration) -> Result<()> {
    let mut read = Vec::with_capacity(image.len() + dfu.transfer_size);
    let mut buf = vec![0u8; dfu.transfer_size];
    for block in 0..MAX_UPLOAD_BLOCKS {
        let setup = Setup { request_type: 0xA1, request: 2, value: block as u16, index: dfu.interface as u16 };
        let n = io
            .control_in(setup, &mut buf, timeout)
            .map_err(|e| usb(io.info(), e, &format!("DFU_UPLOAD block {block}")))?;
        read.extend_from_slice(&buf[..n]);
        if n < dfu.transfer_size {
            break;
        }
    }
    if read.len() < image.len() || read[..image.len()] != *image {
        let at = read.iter().zip(image).position(|(a, b)| a != b).unwrap_or(read.len());
        return Err(dev_err(
            io.info(),
            ErrorKind::DeviceFault,
            format!(
                "firmware verification failed: the device's memory differs from the image at byte {at} ({} bytes read \
                 back, {} sent); unplug the accelerator, plug it back in and try again",
                read.len(),
                image.len()
            ),
        ));
    }
    Ok(())
}

/// Opens the device at `path`, up to [`OPEN_RETRIES`] times, waiting [`SETTLE`] before each try
/// (libedgetpu waits before the first try too; a device that was not just reset is tried at once
/// when `just_reset` is false).
pub fn open_retry(bus: &dyn UsbBus, path: &UsbPath, just_reset: bool) -> Result<Box<dyn UsbIo>> {
    // Every failure is retried: right after a re-enumeration the device may be missing, or its
    // node may not have its udev permissions yet. The last failure is the one reported.
    let mut last = UsbError::new(UsbErrorKind::NotFound, 0);
    for attempt in 0..OPEN_RETRIES {
        if just_reset || attempt > 0 {
            bus.settle(SETTLE);
        }
        match bus.open(path) {
            Ok(io) => return Ok(io),
            Err(e) => last = e,
        }
    }
    let kind = match last.kind {
        UsbErrorKind::Disconnected | UsbErrorKind::Other => ErrorKind::NotFound,
        k => k.error_kind(),
    };
    Err(Error::usb(
        format!("usb:{path}"),
        kind,
        format!("the device could not be opened at this port after {OPEN_RETRIES} tries ({last})"),
    ))
}

/// Brings the device at `path` into application mode and returns it opened, with interface 0
/// claimed (PROTOCOL.md §1.2): an application-mode device gets a port reset; a DFU-mode device
/// gets `firmware()` downloaded and verified, then a port reset, and must come back as
/// `18d1:9302` at the same port.
pub fn prepare(
    bus: &dyn UsbBus,
    path: &UsbPath,
    firmware: &mut dyn FnMut() -> Result<Vec<u8>>,
    timeout: Duration,
    progress: Progress,
) -> Result<Box<dyn UsbIo>> {
    let mut io = open_retry(bus, path, false)?;
    let ids = read_ids(io.as_mut(), timeout)?;
    if ids == DFU_ID {
        let image = firmware()?;
        io.reset().map_err(|e| usb(io.info(), e, "resetting the port before the firmware download"))?;
        drop(io);
        let mut io = open_retry(bus, path, true)?;
        let mut config = vec![0u8; 9 + 512];
        let setup = Setup { request_type: 0x80, request: 6, value: 0x0200, index: 0 };
        let n = io
            .control_in(setup, &mut config, timeout)
            .map_err(|e| usb(io.info(), e, "reading the configuration descriptor"))?;
        let dfu = parse_dfu_interface(&config[..n]).ok_or_else(|| {
            dev_err(io.info(), ErrorKind::Protocol, "the DFU-mode device has no DFU interface in its configuration")
        })?;
        io.claim_interface(dfu.interface).map_err(|e| usb(io.info(), e, "claiming the DFU interface"))?;
        download(io.as_mut(), dfu, &image, timeout, progress)?;
        verify(io.as_mut(), dfu, &image, timeout)?;
        io.reset().map_err(|e| usb(io.info(), e, "resetting the port to boot the firmware"))?;
    } else if ids == APP_ID {
        io.reset().map_err(|e| usb(io.info(), e, "resetting the port"))?;
        drop(io);
    } else {
        return Err(dev_err(
            io.info(),
            ErrorKind::NotFound,
            format!("unrecognized USB vendor/product id {:04x}:{:04x}", ids.0, ids.1),
        ));
    }
    let mut io = open_retry(bus, path, true)?;
    let info = io.info().clone();
    if (info.vendor, info.product) != APP_ID {
        return Err(dev_err(
            &info,
            ErrorKind::DeviceFault,
            "the accelerator is still in DFU mode after its firmware download (the firmware did not boot: a damaged \
             firmware file, or a device that needs replugging)",
        ));
    }
    io.claim_interface(0).map_err(|e| usb(&info, e, "claiming interface 0"))?;
    Ok(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_dfu_interface_and_block_size() {
        let mut c = vec![9, 2, 27, 0, 1, 1, 0, 0xC0, 0];
        c.extend_from_slice(&[9, 4, 0, 0, 0, 0xFE, 0x01, 0x02, 0]);
        c.extend_from_slice(&[9, 0x21, 0x0b, 0xe8, 0x03, 0x00, 0x01, 0x01, 0x01]);
        assert_eq!(parse_dfu_interface(&c), Some(DfuInterface { interface: 0, transfer_size: 256, attributes: 0x0b }));
        // A vendor interface with endpoints is not DFU.
        let mut v = c.clone();
        v[13] = 6;
        assert_eq!(parse_dfu_interface(&v), None);
        // Truncated and zero-length descriptors end the walk without a panic.
        for n in 0..c.len() {
            let _ = parse_dfu_interface(&c[..n]);
        }
        assert_eq!(parse_dfu_interface(&[0, 0, 0]), None);
    }
}
