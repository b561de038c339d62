//! Replay of a recorded trace: every call must repeat the next recorded operation.

use super::format::{Call, Header, Hex, Line, Op, Outcome};
use super::{lock, FORMAT, VERSION};
use crate::device::usb::{Setup, UsbBus, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath};
use crate::{Error, Result};
use std::fmt;
use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A parsed trace and how far a session has come through it; shared by a [`ReplayBus`] and
/// the devices it opened.
struct Replay {
    /// `USB trace <path>` (or `USB trace` for one read from a reader), for messages.
    label: String,
    header_device: Option<UsbDeviceInfo>,
    /// Each operation with its line number.
    ops: Vec<(usize, Op)>,
    /// The number of the last line read.
    last_line: usize,
    cursor: Mutex<Cursor>,
    /// The first mismatch; after it every call fails.
    mismatch: OnceLock<String>,
}

struct Cursor {
    /// Index of the next operation to replay.
    pos: usize,
    /// The device most recently opened (or the header's device).
    last_device: Option<UsbDeviceInfo>,
    /// A bus replay of a single-device trace: the header's device has not been opened yet.
    header_open_pending: bool,
}

impl Replay {
    fn read(mut reader: impl BufRead, label: String, io_path: &Path) -> Result<Replay> {
        let bad = |line: usize, what: String| Error::argument(format!("{label}, line {line}: {what}"));
        let mut header: Option<Header> = None;
        let mut ops = Vec::new();
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| Error::Io { path: io_path.to_path_buf(), source })?;
            if n == 0 {
                break;
            }
            number += 1;
            let text = std::str::from_utf8(&buf).map_err(|_| bad(number, "not UTF-8 text".into()))?.trim();
            if text.is_empty() {
                continue;
            }
            if header.is_none() {
                let h: Header = serde_json::from_str(text).map_err(|e| {
                    bad(number, format!("not an {FORMAT} header ({e}); is this a trace written by the recorder?"))
                })?;
                if h.format != FORMAT {
                    return Err(bad(number, format!("format is {:?}, expected {FORMAT:?}", h.format)));
                }
                if h.version != VERSION {
                    return Err(bad(
                        number,
                        format!("trace version {} is not supported (this runtime reads version {VERSION})", h.version),
                    ));
                }
                header = Some(h);
                continue;
            }
            let line: Line = serde_json::from_str(text)
                .map_err(|e| bad(number, format!("malformed operation ({e}); the trace may be truncated or edited")))?;
            line.op.validate().map_err(|e| bad(number, format!("inconsistent {}: {e}", line.op.describe())))?;
            ops.push((number, line.op));
        }
        let header = header.ok_or_else(|| bad(1, format!("the trace is empty (expected the {FORMAT} header)")))?;
        let cursor =
            Cursor { pos: 0, last_device: header.device.clone(), header_open_pending: header.device.is_some() };
        Ok(Replay {
            label,
            header_device: header.device,
            ops,
            last_line: number,
            cursor: Mutex::new(cursor),
            mismatch: OnceLock::new(),
        })
    }

    fn from_file(path: &Path) -> Result<Replay> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Replay::read(std::io::BufReader::new(file), format!("USB trace {}", path.display()), path)
    }

    fn from_reader(reader: impl BufRead) -> Result<Replay> {
        Replay::read(reader, "USB trace".into(), Path::new("USB trace"))
    }

    fn fail(&self, endpoint: u8, what: String) -> UsbError {
        let _ = self.mismatch.set(what);
        UsbError::new(UsbErrorKind::ReplayMismatch, endpoint)
    }

    /// Replays `call`: checks it against the next operation, consumes that, and returns its
    /// recorded error or the operation (to answer from).
    fn step(&self, call: Call<'_>, endpoint: u8) -> Result<&Op, UsbError> {
        let mut cursor = lock(&self.cursor);
        if self.mismatch.get().is_some() {
            return Err(UsbError::new(UsbErrorKind::ReplayMismatch, endpoint));
        }
        let Some((line, op)) = self.ops.get(cursor.pos) else {
            let end = format!(
                "{}: the recording ends at line {}, but the session went on with {call}",
                self.label, self.last_line
            );
            return Err(self.fail(endpoint, end));
        };
        if let Err(detail) = op.check(&call) {
            return Err(self.fail(
                endpoint,
                format!("{}, line {line}: expected {}, got {call}{detail}", self.label, op.describe()),
            ));
        }
        cursor.pos += 1;
        match op.result() {
            Outcome::Err(e) => Err(e),
            Outcome::Ok => {
                if let Op::Open { device: Some(d), .. } = op {
                    cursor.last_device = Some(d.clone());
                }
                Ok(op)
            }
        }
    }

    fn done(&self) -> Result<(), String> {
        if let Some(m) = self.mismatch.get() {
            return Err(m.clone());
        }
        let cursor = lock(&self.cursor);
        match self.ops.get(cursor.pos) {
            Some((line, op)) => Err(format!(
                "{}: {} recorded operation(s) were not replayed, the first at line {line}: {}",
                self.label,
                self.ops.len() - cursor.pos,
                op.describe()
            )),
            None => Ok(()),
        }
    }
}

/// Copies a read's recorded data into `buf`.
fn give(op: &Op, buf: &mut [u8]) -> usize {
    match op {
        Op::ControlIn { data: Some(Hex(d)), .. }
        | Op::BulkIn { data: Some(Hex(d)), .. }
        | Op::InterruptIn { data: Some(Hex(d)), .. } => {
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            n
        }
        _ => 0,
    }
}

/// A device that answers from a recorded trace ([`RecordingIo`](super::RecordingIo)).
///
/// Each call must repeat the next recorded operation: the same kind, endpoint or setup packet,
/// length, and for outgoing data the same bytes (or, past the recorded data limit, the same
/// length and checksum). Reads get the recorded bytes and recorded failures come back as the
/// same [`UsbError`]. The first call that differs fails with [`UsbErrorKind::ReplayMismatch`],
/// [`mismatch`](ReplayIo::mismatch) says how, and every later call fails the same way.
pub struct ReplayIo {
    info: UsbDeviceInfo,
    replay: Arc<Replay>,
}

impl ReplayIo {
    /// Reads a single-device trace from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ReplayIo> {
        ReplayIo::new(Replay::from_file(path.as_ref())?)
    }

    /// Reads a single-device trace from `reader`.
    pub fn from_reader(reader: impl BufRead) -> Result<ReplayIo> {
        ReplayIo::new(Replay::from_reader(reader)?)
    }

    fn new(replay: Replay) -> Result<ReplayIo> {
        let Some(info) = replay.header_device.clone() else {
            return Err(Error::argument(format!(
                "{}: a bus trace (its header names no device); replay it with ReplayBus",
                replay.label
            )));
        };
        Ok(ReplayIo { info, replay: Arc::new(replay) })
    }

    /// The first mismatch between the session and the trace: the line, what was recorded there
    /// and what came instead.
    pub fn mismatch(&self) -> Option<&str> {
        self.replay.mismatch.get().map(String::as_str)
    }

    /// Whether the session repeated the whole trace: `Err` describes the mismatch or the first
    /// operation left over.
    pub fn done(&self) -> Result<(), String> {
        self.replay.done()
    }
}

impl fmt::Debug for ReplayIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayIo").field("trace", &self.replay.label).field("info", &self.info).finish_non_exhaustive()
    }
}

impl UsbIo for ReplayIo {
    fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }

    fn claim_interface(&mut self, interface: u8) -> Result<(), UsbError> {
        self.replay.step(Call::ClaimInterface(interface), 0).map(|_| ())
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.replay.step(Call::ControlIn(setup, buf.len()), 0).map(|op| give(op, buf))
    }

    fn control_out(&mut self, setup: Setup, data: &[u8], _timeout: Duration) -> Result<(), UsbError> {
        self.replay.step(Call::ControlOut(setup, data), 0).map(|_| ())
    }

    fn bulk_out(&mut self, endpoint: u8, data: &[u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.replay.step(Call::BulkOut(endpoint, data), endpoint).map(|op| match op {
            Op::BulkOut { sent: Some(n), .. } => *n,
            _ => 0,
        })
    }

    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.replay.step(Call::BulkIn(endpoint, buf.len()), endpoint).map(|op| give(op, buf))
    }

    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.replay.step(Call::InterruptIn(endpoint, buf.len()), endpoint).map(|op| give(op, buf))
    }

    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        self.replay.step(Call::ClearHalt(endpoint), endpoint).map(|_| ())
    }

    fn reset(&mut self) -> Result<(), UsbError> {
        self.replay.step(Call::Reset, 0).map(|_| ())
    }
}

/// A bus that serves the opens of a recorded trace ([`RecordingBus`](super::RecordingBus)) in
/// order; the devices it opens replay the operations that follow each open, all against the
/// one trace. A single-device trace ([`RecordingIo`](super::RecordingIo)) replays too: its
/// device is opened once, at the path in its header.
///
/// [`devices`](UsbBus::devices) lists one device, as the session would find it at that point
/// (the other devices of the recording machine are left out): when the next operations are
/// opens, the device of the first that succeeded; else the device opened last.
pub struct ReplayBus {
    replay: Arc<Replay>,
}

impl ReplayBus {
    /// Reads a trace from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ReplayBus> {
        Ok(ReplayBus { replay: Arc::new(Replay::from_file(path.as_ref())?) })
    }

    /// Reads a trace from `reader`.
    pub fn from_reader(reader: impl BufRead) -> Result<ReplayBus> {
        Ok(ReplayBus { replay: Arc::new(Replay::from_reader(reader)?) })
    }

    /// The first mismatch, as [`ReplayIo::mismatch`], on this bus or any device it opened.
    pub fn mismatch(&self) -> Option<&str> {
        self.replay.mismatch.get().map(String::as_str)
    }

    /// Whether the session repeated the whole trace, as [`ReplayIo::done`].
    pub fn done(&self) -> Result<(), String> {
        if lock(&self.replay.cursor).header_open_pending {
            return Err(format!("{}: the recorded device was never opened", self.replay.label));
        }
        self.replay.done()
    }
}

impl fmt::Debug for ReplayBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBus").field("trace", &self.replay.label).finish_non_exhaustive()
    }
}

impl UsbBus for ReplayBus {
    /// A replayed device needs no time to settle.
    fn settle(&self, _: std::time::Duration) {}

    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        let cursor = lock(&self.replay.cursor);
        let ahead = self.replay.ops[cursor.pos.min(self.replay.ops.len())..]
            .iter()
            .map_while(|(_, op)| match op {
                Op::Open { device, result, .. } => Some((device, *result)),
                _ => None,
            })
            .find_map(|(device, result)| device.as_ref().filter(|_| result == Outcome::Ok));
        let next = ahead.or(cursor.last_device.as_ref());
        Ok(next.into_iter().cloned().collect())
    }

    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        {
            let mut cursor = lock(&self.replay.cursor);
            if cursor.header_open_pending && self.replay.mismatch.get().is_none() {
                let Some(info) = self.replay.header_device.clone() else {
                    return Err(UsbError::new(UsbErrorKind::ReplayMismatch, 0));
                };
                if info.path != *path {
                    let what = format!(
                        "{}, line 1: the recorded device is at {}, got open of {path}",
                        self.replay.label, info.path
                    );
                    return Err(self.replay.fail(0, what));
                }
                cursor.header_open_pending = false;
                return Ok(Box::new(ReplayIo { info, replay: Arc::clone(&self.replay) }));
            }
        }
        // Validation keeps ok `open` lines without a device out of the trace.
        let Op::Open { device: Some(info), .. } = self.replay.step(Call::Open(path), 0)? else {
            return Err(UsbError::new(UsbErrorKind::ReplayMismatch, 0));
        };
        let info = info.clone();
        Ok(Box::new(ReplayIo { info, replay: Arc::clone(&self.replay) }))
    }
}
