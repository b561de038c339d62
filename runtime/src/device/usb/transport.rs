//! [`Transport`] over a [`UsbIo`]: CSRs as vendor control requests (PROTOCOL.md §1.6), requests
//! as an 8-byte header then bulk-outs of at most 1 MiB on 0x01 (§1.7), outputs through the
//! bulk-in queue on 0x81 (§1.8), events on 0x82 and interrupts on 0x83 (§1.9).

use super::{Setup, UsbError, UsbIo};
use crate::device::csr::{self, Csr};
use crate::device::usb::frame::{self, Event, InterruptWord, Tag, MAX_BULK_OUT};
use crate::device::usb::sequence;
use crate::error::{Error, Result};
use std::fmt;
use std::time::Duration;

/// What the device logic needs from any Coral (ARCHITECTURE.md): CSR access, sending one DMA
/// request, receiving output bytes, and waiting for events and interrupts. The USB backend is
/// [`UsbTransport`] over any [`UsbIo`].
pub trait Transport: Send + fmt::Debug {
    /// The device, for error messages (e.g. `usb:1-2 (18d1:9302)`).
    fn name(&self) -> String;
    /// Reads a CSR.
    fn read_csr(&mut self, reg: crate::device::csr::Csr) -> crate::Result<u64>;
    /// Writes a CSR.
    fn write_csr(&mut self, reg: crate::device::csr::Csr, value: u64) -> crate::Result<()>;
    /// Sends one host-to-device request of `tag` with these bytes.
    fn send(&mut self, tag: crate::device::usb::frame::Tag, bytes: &[u8]) -> crate::Result<()>;
    /// Receives exactly `buf.len()` output bytes.
    fn recv(&mut self, buf: &mut [u8]) -> crate::Result<()>;
    /// Waits for the next event (or fails with the fatal error the device reported instead).
    fn wait_event(&mut self) -> crate::Result<crate::device::usb::frame::Event>;
    /// Whether the link gets the USB 2 settings (a High-Speed link).
    fn is_usb2(&self) -> bool;
}

/// Bulk-in buffers kept for outputs (`USB_BULK_IN_QUEUE_CAPACITY`).
pub const BULK_IN_QUEUE: usize = 32;
/// Control transfers are retried this many times on a USB error other than a disconnect.
const CONTROL_RETRIES: usize = 5;

/// The output queue: 32 buffers of the device's chunk size (1 KiB, 256 B on USB 2), allocated
/// once. A completed read may finish one output and spill into the next; the spill is kept here.
/// Transfers are synchronous (one read in flight at a time).
#[derive(Debug)]
struct BulkInQueue {
    buffers: Vec<Vec<u8>>,
    next: usize,
    /// The buffer holding unread bytes, and their range.
    spill: Option<(usize, usize, usize)>,
}

impl BulkInQueue {
    fn new(chunk: usize) -> BulkInQueue {
        BulkInQueue { buffers: (0..BULK_IN_QUEUE).map(|_| vec![0; chunk]).collect(), next: 0, spill: None }
    }
}

/// How long output and event reads wait in all by default: ten timeouts of libedgetpu's 6 s
/// (libedgetpu itself waits for ever).
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// The USB transport.
#[derive(Debug)]
pub struct UsbTransport<I: UsbIo> {
    io: I,
    timeout: Duration,
    /// How long an output or event read may wait in all (re-posted after each `timeout`).
    patience: Duration,
    usb2: bool,
    queue: BulkInQueue,
    name: String,
}

impl<I: UsbIo> UsbTransport<I> {
    /// Wraps an opened application-mode device (interface 0 already claimed).
    ///
    /// Only a High-Speed link gets the USB 2 settings (256-byte output chunks), as libedgetpu
    /// decides; a Full-Speed link gets the SuperSpeed ones.
    pub fn new(io: I, timeout: Duration) -> UsbTransport<I> {
        let info = io.info();
        let usb2 = info.speed == super::Speed::High;
        let name = format!("usb:{} ({:04x}:{:04x})", info.path, info.vendor, info.product);
        let chunk = if usb2 { 256 } else { 1024 };
        UsbTransport { io, timeout, patience: DEFAULT_PATIENCE, usb2, queue: BulkInQueue::new(chunk), name }
    }

    /// Sets how long an output (0x81) or event (0x82) read may wait in all. A read that times out
    /// is re-posted, as libedgetpu does (a slow inference is no error), until this much time has
    /// passed; only bulk-out and control transfers fail after one timeout.
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    /// Whether another timed-out read may be posted after `waits` timeouts in a row.
    fn may_wait_again(&self, waits: u32) -> bool {
        self.timeout.saturating_mul(waits) < self.patience
    }

    /// The USB handle.
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// Gives the USB handle back.
    pub fn into_io(self) -> I {
        self.io
    }

    /// Drops output bytes left over from an interrupted run.
    pub fn discard_pending(&mut self) {
        self.queue.spill = None;
    }

    fn usb_err(&self, e: UsbError, what: &str) -> Error {
        Error::usb(self.name.clone(), e.kind.error_kind(), format!("{what}: {e}"))
    }

    fn control_out(&mut self, setup: Setup, data: &[u8], what: &str) -> Result<()> {
        let mut last = None;
        for _ in 0..CONTROL_RETRIES {
            match self.io.control_out(setup, data, self.timeout) {
                Ok(()) => return Ok(()),
                Err(e) if retryable(e) => last = Some(e),
                Err(e) => return Err(self.usb_err(e, what)),
            }
        }
        Err(self.usb_err(last.expect("at least one try"), what))
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8], what: &str) -> Result<usize> {
        let mut last = None;
        for _ in 0..CONTROL_RETRIES {
            match self.io.control_in(setup, buf, self.timeout) {
                Ok(n) => return Ok(n),
                Err(e) if retryable(e) => last = Some(e),
                Err(e) => return Err(self.usb_err(e, what)),
            }
        }
        Err(self.usb_err(last.expect("at least one try"), what))
    }

    /// Reads the interrupt endpoint once (briefly) and handles what it reports.
    fn check_interrupt(&mut self) -> Result<()> {
        let mut w = [0u8; 4];
        match self.io.interrupt_in(0x83, &mut w, Duration::from_millis(10)) {
            Ok(n) => {
                let word = InterruptWord::parse(&w[..n])
                    .map_err(|e| Error::usb(self.name.clone(), crate::ErrorKind::Protocol, e.to_string()))?;
                sequence::handle_interrupt(self, word).map(|_| ())
            }
            Err(e) if e.kind == super::UsbErrorKind::Timeout => Ok(()),
            Err(e) => Err(self.usb_err(e, "reading the interrupt endpoint 0x83")),
        }
    }
}

fn retryable(e: UsbError) -> bool {
    !matches!(
        e.kind,
        super::UsbErrorKind::Disconnected
            | super::UsbErrorKind::NotFound
            | super::UsbErrorKind::PermissionDenied
            | super::UsbErrorKind::ReplayMismatch
    )
}

impl<I: UsbIo> Transport for UsbTransport<I> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read_csr(&mut self, reg: Csr) -> Result<u64> {
        let r = csr::read_request(reg);
        let setup = Setup { request_type: r.request_type, request: r.request, value: r.value, index: r.index };
        let mut buf = [0u8; 8];
        let n = self.control_in(setup, &mut buf[..r.length as usize], reg.name)?;
        csr::read_value(reg, &buf[..n])
            .map_err(|e| Error::usb(self.name.clone(), crate::ErrorKind::Protocol, e.to_string()))
    }

    fn write_csr(&mut self, reg: Csr, value: u64) -> Result<()> {
        let r = csr::write_request(reg, value);
        let setup = Setup { request_type: r.request_type, request: r.request, value: r.value, index: r.index };
        let mut data = [0u8; 8];
        data[..r.data.len()].copy_from_slice(&r.data);
        self.control_out(setup, &data[..r.data.len()], reg.name)
    }

    fn send(&mut self, tag: Tag, bytes: &[u8]) -> Result<()> {
        let header = frame::bulk_out_header(tag, bytes.len())?;
        let what = |_: &Self, sent: usize| format!("sending {tag:?} ({} bytes, {sent} sent)", bytes.len());
        match self.io.bulk_out(0x01, &header, self.timeout) {
            Ok(8) => {}
            Ok(n) => {
                return Err(Error::usb(
                    self.name.clone(),
                    crate::ErrorKind::Protocol,
                    format!("the device took {n} of the 8 header bytes"),
                ))
            }
            Err(e) => return Err(self.usb_err(e, &what(self, 0))),
        }
        let mut sent = 0;
        for chunk in bytes.chunks(MAX_BULK_OUT) {
            match self.io.bulk_out(0x01, chunk, self.timeout) {
                Ok(n) if n == chunk.len() => sent += n,
                Ok(n) => {
                    return Err(Error::usb(
                        self.name.clone(),
                        crate::ErrorKind::Protocol,
                        format!("{}: the device took {n} of {} bytes", what(self, sent), chunk.len()),
                    ))
                }
                Err(e) => return Err(self.usb_err(e, &what(self, sent))),
            }
        }
        Ok(())
    }

    fn recv(&mut self, out: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if let Some((b, start, end)) = self.queue.spill {
                let n = (end - start).min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&self.queue.buffers[b][start..start + n]);
                filled += n;
                self.queue.spill = if start + n < end { Some((b, start + n, end)) } else { None };
                continue;
            }
            let b = self.queue.next;
            self.queue.next = (b + 1) % BULK_IN_QUEUE;
            let mut waits = 0;
            loop {
                let buf = &mut self.queue.buffers[b];
                buf.fill(0);
                match self.io.bulk_in(0x81, buf, self.timeout) {
                    Ok(n) => {
                        self.queue.spill = Some((b, 0, n));
                        break;
                    }
                    Err(e) => {
                        if e.kind == super::UsbErrorKind::Timeout {
                            // No output yet: a fatal error may have been reported instead;
                            // otherwise the inference is slow and the read is posted again.
                            self.check_interrupt()?;
                            waits += 1;
                            if self.may_wait_again(waits) {
                                log::debug!("{}: no output after {waits} timeouts; waiting again", self.name);
                                continue;
                            }
                        }
                        let msg = format!("reading output ({filled} of {} bytes received)", out.len());
                        return Err(self.usb_err(e, &msg));
                    }
                }
            }
        }
        Ok(())
    }

    fn wait_event(&mut self) -> Result<Event> {
        let mut p = [0u8; 16];
        let mut waits = 0;
        loop {
            match self.io.bulk_in(0x82, &mut p, self.timeout) {
                Ok(n) => {
                    return Event::parse(&p[..n])
                        .map_err(|e| Error::usb(self.name.clone(), crate::ErrorKind::Protocol, e.to_string()))
                }
                Err(e) => {
                    if e.kind == super::UsbErrorKind::Timeout {
                        // No event yet: the device may have reported a fatal error instead;
                        // otherwise the read is posted again.
                        self.check_interrupt()?;
                        waits += 1;
                        if self.may_wait_again(waits) {
                            log::debug!("{}: no event after {waits} timeouts; waiting again", self.name);
                            continue;
                        }
                    }
                    return Err(self.usb_err(e, "waiting for an event on 0x82"));
                }
            }
        }
    }

    fn is_usb2(&self) -> bool {
        self.usb2
    }
}
