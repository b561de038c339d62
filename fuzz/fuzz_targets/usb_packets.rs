//! Fuzz target: what a buggy or hostile USB device sends the host: event and interrupt packets,
//! configuration descriptors (the DFU interface), and the control-transfer replies of the DFU
//! firmware download (device descriptor, GETSTATUS, UPLOAD).
//!
//! Input: a selector byte, then the data. For the DFU exchange the data is the device's script:
//! each control-in reply is a length byte and that many bytes (cut to the host's buffer).
#![no_main]

use edgetpu::device::usb::dfu::{self, DfuInterface};
use edgetpu::device::usb::frame::{Event, InterruptWord};
use edgetpu::device::usb::{Setup, Speed, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// A device that answers every control-in with the next reply of its script.
#[derive(Debug)]
struct Scripted<'a> {
    info: UsbDeviceInfo,
    script: &'a [u8],
}

impl UsbIo for Scripted<'_> {
    fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }
    fn claim_interface(&mut self, _: u8) -> Result<(), UsbError> {
        Ok(())
    }
    fn control_in(&mut self, _: Setup, buf: &mut [u8], _: Duration) -> Result<usize, UsbError> {
        let Some((&n, rest)) = self.script.split_first() else {
            return Err(UsbError::new(UsbErrorKind::Timeout, 0));
        };
        let n = (n as usize).min(rest.len());
        let (reply, rest) = rest.split_at(n);
        let k = n.min(buf.len());
        buf[..k].copy_from_slice(&reply[..k]);
        self.script = rest;
        Ok(k)
    }
    fn control_out(&mut self, _: Setup, _: &[u8], _: Duration) -> Result<(), UsbError> {
        Ok(())
    }
    fn bulk_out(&mut self, _: u8, data: &[u8], _: Duration) -> Result<usize, UsbError> {
        Ok(data.len())
    }
    fn bulk_in(&mut self, endpoint: u8, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
        Err(UsbError::new(UsbErrorKind::Timeout, endpoint))
    }
    fn interrupt_in(&mut self, endpoint: u8, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
        Err(UsbError::new(UsbErrorKind::Timeout, endpoint))
    }
    fn clear_halt(&mut self, _: u8) -> Result<(), UsbError> {
        Ok(())
    }
    fn reset(&mut self) -> Result<(), UsbError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let _ = Event::parse(data);
    let _ = InterruptWord::parse(data);
    for chunk in data.chunks(16) {
        let _ = Event::parse(chunk);
    }
    let _ = dfu::parse_dfu_interface(data);
    let info = UsbDeviceInfo {
        vendor: 0x1a6e,
        product: 0x089a,
        path: UsbPath { bus: 1, ports: vec![1] },
        address: 2,
        speed: Speed::High,
        node: None,
    };
    let mut io = Scripted { info, script: data };
    let timeout = Duration::from_millis(1);
    let transfer_size = 1 + (selector as usize & 0x3f) * 4;
    let iface = DfuInterface { interface: 0, transfer_size, attributes: selector >> 4 };
    let image: Vec<u8> = (0..(selector as usize % 5) * transfer_size).map(|i| i as u8).collect();
    match selector % 3 {
        0 => {
            let _ = dfu::read_ids(&mut io, timeout);
        }
        1 => {
            let _ = dfu::download(&mut io, iface, &image, timeout, &mut |_, _| {});
        }
        _ => {
            let _ = dfu::verify(&mut io, iface, &image, timeout);
        }
    }
});
