//! Record and replay of USB sessions.
//!
//! [`RecordingIo`] wraps any [`UsbIo`] and writes every operation as one JSON object per line
//! (JSON lines); [`ReplayIo`] reads such a trace back and answers a session that repeats it,
//! call for call, without a device. [`RecordingBus`] and [`ReplayBus`] do the same for a whole
//! bus, so that a session which resets the device and opens it again is one trace.
//!
//! The first line is a header, `{"format":"edgetpu-usb-trace","version":1,"device":{..}}` (the
//! device is `null` for a bus trace). Each following line is one operation:
//!
//! ```text
//! {"op":"open","path":{"bus":2,"ports":[1]},"device":{..},"result":"ok"}
//! {"op":"claim_interface","interface":0,"result":"ok","t_us":5}
//! {"op":"control_in","setup":{..},"length":4,"data":"00010203","result":"ok","t_us":9}
//! {"op":"control_out","setup":{..},"length":2,"data":"abcd","fnv1a64":"..","result":"ok"}
//! {"op":"bulk_out","endpoint":1,"length":70000,"fnv1a64":"..","sent":70000,"result":"ok"}
//! {"op":"bulk_in","endpoint":129,"length":64,"result":{"error":"Timeout","endpoint":129}}
//! {"op":"interrupt_in","endpoint":131,"length":16,"data":"..","result":"ok"}
//! {"op":"clear_halt","endpoint":129,"result":"ok"}
//! {"op":"reset","result":"ok"}
//! ```
//!
//! Outgoing data (`control_out`, `bulk_out`) always carries its length and its FNV-1a 64
//! checksum; the bytes themselves are kept up to a limit ([`DEFAULT_DATA_LIMIT`] per transfer by
//! default) so that traces of big transfers stay small while replay still checks them. Incoming
//! data is always kept whole: replay must hand it back. `t_us` (microseconds since the recording
//! started) is informative and optional.

use super::{Setup, UsbBus, UsbDeviceInfo, UsbError, UsbIo, UsbPath};
use format::{Fnv, Header, Hex, Line, Op};
use serde::Serialize;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod format;
mod replay;
#[cfg(test)]
mod tests;

pub use replay::{ReplayBus, ReplayIo};

/// The `format` of a trace's header line.
pub const FORMAT: &str = "edgetpu-usb-trace";
/// The trace format version written and read.
pub const VERSION: u32 = 1;
/// How many bytes of one outgoing transfer are stored by default (64 KiB); longer payloads keep
/// only their length and checksum.
pub const DEFAULT_DATA_LIMIT: usize = 64 * 1024;

/// FNV-1a (64 bit) of `data`: the cheap checksum that stands for outgoing payloads in a trace.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a recording goes: one writer, shared by a [`RecordingBus`] and the devices it opened.
struct Sink {
    out: Box<dyn Write + Send>,
    start: Instant,
    limit: usize,
    /// The first write failure; nothing more is written after it.
    error: Option<io::Error>,
}

impl Sink {
    fn start(out: Box<dyn Write + Send>, device: Option<&UsbDeviceInfo>) -> io::Result<Arc<Mutex<Sink>>> {
        let mut sink = Sink { out, start: Instant::now(), limit: DEFAULT_DATA_LIMIT, error: None };
        sink.write(&Header { format: FORMAT.into(), version: VERSION, device: device.cloned() });
        match sink.error.take() {
            Some(e) => Err(e),
            None => Ok(Arc::new(Mutex::new(sink))),
        }
    }

    fn write(&mut self, value: &impl Serialize) {
        if self.error.is_some() {
            return;
        }
        let written = serde_json::to_vec(value).map_err(io::Error::from).and_then(|mut bytes| {
            bytes.push(b'\n');
            self.out.write_all(&bytes)?;
            self.out.flush()
        });
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

/// Records every operation on a [`UsbIo`] as a JSON-lines trace while passing it through.
///
/// Recording never changes what the session sees: the wrapped device's answers are returned as
/// they are. A failure to write the trace stops the recording and is reported by
/// [`finish`](RecordingIo::finish).
pub struct RecordingIo<T: UsbIo> {
    inner: T,
    sink: Arc<Mutex<Sink>>,
}

impl<T: UsbIo> RecordingIo<T> {
    /// Starts a trace of `inner` on `out`, writing its header line (with the device's info).
    pub fn new(inner: T, out: Box<dyn Write + Send>) -> io::Result<RecordingIo<T>> {
        let sink = Sink::start(out, Some(inner.info()))?;
        Ok(RecordingIo { inner, sink })
    }

    /// Keeps at most `bytes` bytes of each outgoing transfer in the trace (longer ones keep
    /// their length and checksum only). The default is [`DEFAULT_DATA_LIMIT`].
    pub fn with_data_limit(self, bytes: usize) -> RecordingIo<T> {
        lock(&self.sink).limit = bytes;
        self
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Flushes the trace and returns the wrapped device, or the first error met writing it.
    pub fn finish(self) -> io::Result<T> {
        lock(&self.sink).finish()?;
        Ok(self.inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(lock(&self.sink).start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn log(&self, t_us: u64, op: Op) {
        lock(&self.sink).write(&Line { op, t_us: Some(t_us) });
    }

    /// Length, stored bytes (up to the limit) and checksum of outgoing data.
    fn payload(&self, data: &[u8]) -> (usize, Option<Hex>, Fnv) {
        let keep = data.len() <= lock(&self.sink).limit;
        (data.len(), keep.then(|| Hex(data.to_vec())), Fnv(fnv1a64(data)))
    }
}

impl<T: UsbIo> fmt::Debug for RecordingIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingIo").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// The bytes a read returned, for the trace.
fn received(buf: &[u8], r: &std::result::Result<usize, UsbError>) -> Option<Hex> {
    r.as_ref().ok().map(|&n| Hex(buf[..n.min(buf.len())].to_vec()))
}

impl<T: UsbIo> UsbIo for RecordingIo<T> {
    fn info(&self) -> &UsbDeviceInfo {
        self.inner.info()
    }

    fn claim_interface(&mut self, interface: u8) -> std::result::Result<(), UsbError> {
        let t = self.now();
        let r = self.inner.claim_interface(interface);
        self.log(t, Op::ClaimInterface { interface, result: (&r).into() });
        r
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> std::result::Result<usize, UsbError> {
        let t = self.now();
        let r = self.inner.control_in(setup, buf, timeout);
        self.log(t, Op::ControlIn { setup, length: buf.len(), data: received(buf, &r), result: (&r).into() });
        r
    }

    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> std::result::Result<(), UsbError> {
        let t = self.now();
        let r = self.inner.control_out(setup, data, timeout);
        let (length, data, fnv1a64) = self.payload(data);
        self.log(t, Op::ControlOut { setup, length, data, fnv1a64, result: (&r).into() });
        r
    }

    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> std::result::Result<usize, UsbError> {
        let t = self.now();
        let r = self.inner.bulk_out(endpoint, data, timeout);
        let (length, data, fnv1a64) = self.payload(data);
        self.log(
            t,
            Op::BulkOut { endpoint, length, data, fnv1a64, sent: r.as_ref().ok().copied(), result: (&r).into() },
        );
        r
    }

    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> std::result::Result<usize, UsbError> {
        let t = self.now();
        let r = self.inner.bulk_in(endpoint, buf, timeout);
        self.log(t, Op::BulkIn { endpoint, length: buf.len(), data: received(buf, &r), result: (&r).into() });
        r
    }

    fn interrupt_in(
        &mut self,
        endpoint: u8,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, UsbError> {
        let t = self.now();
        let r = self.inner.interrupt_in(endpoint, buf, timeout);
        self.log(t, Op::InterruptIn { endpoint, length: buf.len(), data: received(buf, &r), result: (&r).into() });
        r
    }

    fn clear_halt(&mut self, endpoint: u8) -> std::result::Result<(), UsbError> {
        let t = self.now();
        let r = self.inner.clear_halt(endpoint);
        self.log(t, Op::ClearHalt { endpoint, result: (&r).into() });
        r
    }

    fn reset(&mut self) -> std::result::Result<(), UsbError> {
        let t = self.now();
        let r = self.inner.reset();
        self.log(t, Op::Reset { result: (&r).into() });
        r
    }
}

/// Records a whole bus: every device opened through it is recorded into one trace, after an
/// `open` line naming its path and the device found there (so a session that resets the device
/// and opens it again stays one file). Listing devices is passed through and not recorded.
pub struct RecordingBus<B: UsbBus> {
    inner: B,
    sink: Arc<Mutex<Sink>>,
}

impl<B: UsbBus> RecordingBus<B> {
    /// Starts a trace of the devices opened on `inner`, writing its header line.
    pub fn new(inner: B, out: Box<dyn Write + Send>) -> io::Result<RecordingBus<B>> {
        Ok(RecordingBus { inner, sink: Sink::start(out, None)? })
    }

    /// Like [`RecordingIo::with_data_limit`], for every device opened.
    pub fn with_data_limit(self, bytes: usize) -> RecordingBus<B> {
        lock(&self.sink).limit = bytes;
        self
    }

    /// The wrapped bus.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Flushes the trace, or returns the first error met writing it.
    pub fn finish(&self) -> io::Result<()> {
        lock(&self.sink).finish()
    }
}

impl<B: UsbBus> fmt::Debug for RecordingBus<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingBus").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<B: UsbBus> UsbBus for RecordingBus<B> {
    fn devices(&self) -> std::result::Result<Vec<UsbDeviceInfo>, UsbError> {
        self.inner.devices()
    }

    fn settle(&self, d: Duration) {
        self.inner.settle(d);
    }

    fn open(&self, path: &UsbPath) -> std::result::Result<Box<dyn UsbIo>, UsbError> {
        let t_us = u64::try_from(lock(&self.sink).start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let r = self.inner.open(path);
        let device = r.as_ref().ok().map(|io| io.info().clone());
        let op = Op::Open { path: path.clone(), device, result: (&r).into() };
        lock(&self.sink).write(&Line { op, t_us: Some(t_us) });
        let io = r?;
        Ok(Box::new(RecordingIo { inner: io, sink: Arc::clone(&self.sink) }))
    }
}
