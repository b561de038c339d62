//! Client of `edgetpu serve`'s tensor protocol: the same interpreter-shaped API as in-process
//! use (open a model, fill its inputs, invoke, read its outputs), with the model running in the
//! server that owns the Corals. Tensors live in shared memory that the server hands over when
//! the model is opened, so a frame is written once, in place, and never goes through the socket.
//!
//! ```no_run
//! let mut client = edgetpu_client::Client::connect("/run/edgetpu/tensor.sock")?;
//! let mut model = client.open("ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite")?;
//! model.input_mut(0)?.fill(128);
//! model.invoke()?;
//! let boxes = model.output(0)?;
//! # Ok::<(), edgetpu_client::ClientError>(())
//! ```
//!
//! The protocol is in [`wire`]. It runs on Linux (the shared memory is a `memfd`).
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
pub mod wire;

#[cfg(target_os = "linux")]
pub use sys::Region;

use serde_json::{json, Value};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Largest reply the client reads.
const REPLY_LIMIT: usize = 16 << 20;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket or the shared memory failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error.
    #[error("the server: {0}")]
    Server(String),
    /// The server's reply is not what the protocol says.
    #[error("malformed reply: {0}")]
    Protocol(String),
    /// An input or output index out of range.
    #[error("{kind} {index} does not exist: the model has {count}")]
    NoTensor {
        /// "input" or "output".
        kind: &'static str,
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
}

/// A tensor of a remote model: what it is and where its bytes live in the shared memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteTensor {
    /// Its name in the model.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type, as TFLite names it (`uint8`, `int8`, `float32`, ...).
    pub dtype: String,
    /// Quantization scale (0 when none).
    pub scale: f32,
    /// Quantization zero point.
    pub zero_point: i32,
    /// Offset of its bytes in the shared memory.
    pub offset: usize,
    /// Its size in bytes.
    pub len: usize,
}

impl RemoteTensor {
    /// Reads one from a reply (or, on the server, checks one it wrote).
    pub fn from_json(v: &Value) -> Result<RemoteTensor, ClientError> {
        let bad = |what: &str| ClientError::Protocol(format!("tensor {v}: {what}"));
        let usize_of = |k: &str| v[k].as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| bad(k));
        Ok(RemoteTensor {
            name: v["name"].as_str().ok_or_else(|| bad("name"))?.to_string(),
            shape: v["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
                .ok_or_else(|| bad("shape"))?,
            dtype: v["dtype"].as_str().ok_or_else(|| bad("dtype"))?.to_string(),
            scale: v["scale"].as_f64().ok_or_else(|| bad("scale"))? as f32,
            zero_point: v["zero_point"]
                .as_i64()
                .and_then(|z| i32::try_from(z).ok())
                .ok_or_else(|| bad("zero_point"))?,
            offset: usize_of("offset")?,
            len: usize_of("len")?,
        })
    }

    /// Its JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "shape": self.shape, "dtype": self.dtype, "scale": self.scale,
            "zero_point": self.zero_point, "offset": self.offset, "len": self.len,
        })
    }
}

/// A connection to `edgetpu serve --socket PATH`.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    busy_poll: std::time::Duration,
    predictive_wake: bool,
}

impl Client {
    /// Connects to the server's socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Ok(Client { sock: UnixStream::connect(path)?, busy_poll: std::time::Duration::ZERO, predictive_wake: true })
    }

    /// Waits for each reply by polling the socket without sleeping for up to `budget` before
    /// blocking (zero, the default, blocks at once). A reply that arrives within the budget is
    /// read without a thread wake-up, which on some machines costs tens of microseconds; the
    /// price is a busy core while waiting. Worth it for short models invoked back to back.
    pub fn set_busy_poll(&mut self, budget: std::time::Duration) {
        self.busy_poll = budget;
    }

    /// Whether to wait for each invoke's reply by sleeping until shortly before it is due (the
    /// last round trip of that model), then polling for it. On by default;
    /// [`Client::set_busy_poll`], when set, takes precedence, and `false` makes the client block
    /// until the reply arrives. It saves most of the wake-up cost that busy-polling saves, for a
    /// short poll per invoke instead of a busy core throughout: at most twice 100 µs plus twice
    /// the recent jitter, and none while round trips vary by more than 150 µs on average (many
    /// clients sharing the server) or take under 300 µs.
    pub fn set_predictive_wake(&mut self, on: bool) {
        self.predictive_wake = on;
    }

    /// Opens a model the server has (in its `--models` directory or catalog cache), by file name.
    #[cfg(target_os = "linux")]
    pub fn open(&mut self, name: &str) -> Result<RemoteModel<'_>, ClientError> {
        self.open_with(&json!({"op": "open", "model": name}), &[])
    }

    /// Opens a model from its bytes (kept by the server for this connection only).
    #[cfg(target_os = "linux")]
    pub fn open_bytes(&mut self, model: &[u8]) -> Result<RemoteModel<'_>, ClientError> {
        self.open_with(&json!({"op": "open"}), model)
    }

    #[cfg(target_os = "linux")]
    fn open_with(&mut self, header: &Value, payload: &[u8]) -> Result<RemoteModel<'_>, ClientError> {
        let reply = self.call(header, payload)?;
        let h = &reply.header;
        let id = h["id"].as_u64().ok_or_else(|| ClientError::Protocol(format!("no model id in {h}")))?;
        let size = h["size"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ClientError::Protocol(format!("no size in {h}")))?;
        let list = |k: &str| -> Result<Vec<RemoteTensor>, ClientError> {
            h[k].as_array()
                .ok_or_else(|| ClientError::Protocol(format!("no {k} in {h}")))?
                .iter()
                .map(RemoteTensor::from_json)
                .collect()
        };
        let (inputs, outputs) = (list("inputs")?, list("outputs")?);
        let fd = reply.fd.ok_or_else(|| ClientError::Protocol("the open reply carries no shared memory".into()))?;
        let region = Region::map(fd, size)?;
        for t in inputs.iter().chain(&outputs) {
            if t.offset.checked_add(t.len).is_none_or(|end| end > size) {
                return Err(ClientError::Protocol(format!("tensor {:?} lies outside the shared memory", t.name)));
            }
        }
        Ok(RemoteModel { client: self, id, region, inputs, outputs, server_invoke: None, wake: Wake::default() })
    }

    #[cfg(target_os = "linux")]
    fn call(&mut self, header: &Value, payload: &[u8]) -> Result<wire::Message, ClientError> {
        wire::send(&self.sock, header, payload, None)?;
        self.reply()
    }

    /// Reads the reply to the request just sent.
    #[cfg(target_os = "linux")]
    fn reply(&mut self) -> Result<wire::Message, ClientError> {
        let reply = wire::recv_spinning(&self.sock, REPLY_LIMIT, self.busy_poll)?;
        if reply.header["ok"] != true {
            let e = reply.header["error"].as_str().unwrap_or("an error reply without a message");
            return Err(ClientError::Server(e.to_string()));
        }
        Ok(reply)
    }
}

/// A model opened on the server, used like an interpreter.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct RemoteModel<'c> {
    client: &'c mut Client,
    id: u64,
    region: Region,
    inputs: Vec<RemoteTensor>,
    outputs: Vec<RemoteTensor>,
    server_invoke: Option<std::time::Duration>,
    wake: Wake,
}

/// With [`Client::set_predictive_wake`]: wakes a client waiting for an invoke's reply shortly
/// before the reply is due, so that the reply finds it awake (polling) instead of having to wake
/// it: on some machines a thread blocked on a socket takes tens of microseconds to run again once
/// the reply arrives. The due time is the last round trip; the thread sleeps until
/// [`Wake::LEAD`] (plus twice the recent jitter) before it, then polls for at most twice that,
/// then blocks. It does so only while round trips are steady and long enough: a waiting thread
/// never polls for more than a few hundred microseconds, and not at all when several clients
/// make the round trips vary.
#[cfg(target_os = "linux")]
#[derive(Debug, Default)]
struct Wake {
    /// The expected round trip.
    due: Option<std::time::Duration>,
    /// Average difference between successive round trips.
    jitter: std::time::Duration,
}

#[cfg(target_os = "linux")]
impl Wake {
    /// How long before the reply is due the thread wakes (with no jitter): the kernel's default
    /// timer slack (50 µs) and a thread's wake-up.
    const LEAD: std::time::Duration = std::time::Duration::from_micros(100);
    /// Above this jitter, round trips are not predictable enough: the thread just blocks.
    const MAX_JITTER: std::time::Duration = std::time::Duration::from_micros(150);
    /// Round trips shorter than this are not worth a sleep and a poll: the thread just blocks.
    const MIN_ROUND_TRIP: std::time::Duration = std::time::Duration::from_micros(300);

    /// Waits until the reply to a request sent at `sent` is readable, or until polling for it
    /// is given up; then the caller reads it (blocking if need be). Returns whether it polled:
    /// then the round trip measured is close to the reply's arrival, not to a wake-up after it.
    fn wait(&self, sock: &std::os::unix::net::UnixStream, sent: std::time::Instant) -> bool {
        let Some(due) = self.due else { return false };
        if self.jitter > Self::MAX_JITTER || due < Self::MIN_ROUND_TRIP {
            return false;
        }
        let lead = Self::LEAD + 2 * self.jitter;
        if sys::sleep_until_readable(sock, sent + due.saturating_sub(lead)) {
            return false;
        }
        sys::spin_until_readable(sock, 2 * lead);
        true
    }

    /// Learns from a round trip: `polled` is what [`Wake::wait`] returned.
    fn learn(&mut self, round_trip: std::time::Duration, polled: bool) {
        if let Some(due) = self.due {
            self.jitter = (self.jitter * 3 + round_trip.abs_diff(due)) / 4;
        }
        // A reply found by a blocked thread arrived up to a wake-up earlier than measured: aim
        // earlier next time.
        self.due = Some(if polled { round_trip } else { round_trip.saturating_sub(Self::LEAD / 2) });
    }
}

#[cfg(target_os = "linux")]
impl RemoteModel<'_> {
    /// Its inputs.
    pub fn inputs(&self) -> &[RemoteTensor] {
        &self.inputs
    }

    /// Its outputs.
    pub fn outputs(&self) -> &[RemoteTensor] {
        &self.outputs
    }

    /// Input `i`'s bytes, to fill in place.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [u8], ClientError> {
        let t =
            self.inputs.get(i).ok_or(ClientError::NoTensor { kind: "input", index: i, count: self.inputs.len() })?;
        Ok(self.region.slice_mut(t.offset, t.len)?)
    }

    /// Copies `bytes` into input `i` (they must be its size).
    pub fn set_input(&mut self, i: usize, bytes: &[u8]) -> Result<(), ClientError> {
        let dst = self.input_mut(i)?;
        if dst.len() != bytes.len() {
            return Err(ClientError::Protocol(format!("input {i} takes {} bytes, not {}", dst.len(), bytes.len())));
        }
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// Runs the model on the server; the outputs are ready when it returns.
    pub fn invoke(&mut self) -> Result<(), ClientError> {
        let sent = std::time::Instant::now();
        wire::send(&self.client.sock, &json!({"op": "invoke", "id": self.id}), &[], None)?;
        let polled =
            self.client.predictive_wake && self.client.busy_poll.is_zero() && self.wake.wait(&self.client.sock, sent);
        let reply = self.client.reply();
        self.wake.learn(sent.elapsed(), polled);
        let reply = reply?;
        self.server_invoke =
            reply.header["invoke_us"].as_f64().and_then(|us| std::time::Duration::try_from_secs_f64(us / 1e6).ok());
        Ok(())
    }

    /// How long the last [`invoke`](Self::invoke) spent inside the server's interpreter, as the
    /// server reported it (`None` before the first invoke, or from a server that does not say).
    /// The round trip minus this is what the protocol cost.
    pub fn server_invoke_time(&self) -> Option<std::time::Duration> {
        self.server_invoke
    }

    /// Output `j`'s bytes, as the last invoke left them.
    pub fn output(&self, j: usize) -> Result<&[u8], ClientError> {
        let t =
            self.outputs.get(j).ok_or(ClientError::NoTensor { kind: "output", index: j, count: self.outputs.len() })?;
        Ok(self.region.slice(t.offset, t.len)?)
    }
}

#[cfg(target_os = "linux")]
impl Drop for RemoteModel<'_> {
    fn drop(&mut self) {
        // The server also frees it when the connection ends.
        let _ = self.client.call(&json!({"op": "close", "id": self.id}), &[]);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::Wake;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    #[test]
    fn a_new_client_waits_predictively_unless_told_to_block() {
        let dir = std::env::temp_dir().join(format!("edgetpu-client-default-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut client = super::Client::connect(&path).unwrap();
        assert!(client.predictive_wake && client.busy_poll.is_zero());
        client.set_predictive_wake(false);
        assert!(!client.predictive_wake);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn predictive_wake_polls_only_for_steady_long_round_trips() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut w = Wake::default();
        // No round trip yet: nothing to predict, the caller blocks.
        assert!(!w.wait(&a, Instant::now()));
        // Steady 1 ms round trips: it sleeps, then polls (here for its whole budget: no reply).
        for _ in 0..4 {
            w.learn(Duration::from_millis(1), true);
        }
        let start = Instant::now();
        assert!(w.wait(&a, start));
        assert!(start.elapsed() >= Duration::from_micros(900), "{:?}", start.elapsed());
        // A reply already there is found by the sleep: no polling.
        use std::io::Write;
        (&b).write_all(&[1]).unwrap();
        assert!(!w.wait(&a, Instant::now()));
        // Round trips that vary by more than the limit: the caller blocks.
        let mut v = Wake::default();
        for k in 0..8 {
            v.learn(Duration::from_micros(if k % 2 == 0 { 1000 } else { 1600 }), true);
        }
        assert!(!v.wait(&a, Instant::now()));
        // Short round trips are not worth it either.
        let mut s = Wake::default();
        s.learn(Duration::from_micros(100), true);
        assert!(!s.wait(&a, Instant::now()));
    }
}
