//! The tensor protocol (`--socket PATH`): applications that want tensors, not boxes, open a
//! model by name or bytes and invoke it with their tensors in shared memory that the server
//! creates and hands over (a `memfd` passed with `SCM_RIGHTS`), so a frame is written once by the
//! client and never travels through the socket. The messages are in [`edgetpu_client::wire`];
//! `edgetpu_client::Client` is the client.
//!
//! Each connection has its own models and memory; both go when it closes, however it closes.
//! The client's shared memory is untrusted input: the server only copies bytes out of it and into
//! it, with bounds checks, and never keeps references to it.

use crate::frigate::Shared;
use crate::{Listener, ServeError};
use edgetpu::Model;
use serde_json::{json, Value};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

/// Binds the tensor protocol's socket (mode 0660, `group` when given).
pub(crate) fn bind(path: &Path, group: Option<&str>) -> Result<Listener, ServeError> {
    crate::bind(&format!("ipc://{}", path.display()), group)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use crate::runner::Runner;
    use edgetpu_client::{wire, Region, RemoteTensor};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// How soon after a reply a request counts as back to back, and how long the server then
    /// polls for the next one.
    const BACK_TO_BACK: Duration = Duration::from_micros(100);

    /// Tensor-protocol connections being served. The server polls for back-to-back requests only
    /// while there are at most half as many connections as cores: with more, the polling would
    /// take cores from the work it waits for.
    static LIVE: AtomicUsize = AtomicUsize::new(0);

    struct Live;
    impl Live {
        fn enter() -> Live {
            LIVE.fetch_add(1, Ordering::Relaxed);
            Live
        }
    }
    impl Drop for Live {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn may_poll() -> bool {
        // Asked once: on Linux the answer reads the cgroup's CPU quota from files.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        LIVE.load(Ordering::Relaxed) * 2 <= cores
    }

    /// A model opened on one connection.
    struct Opened {
        it: Runner,
        region: Region,
        inputs: Vec<RemoteTensor>,
        outputs: Vec<RemoteTensor>,
    }

    fn layout(tensors: &[&edgetpu::TensorInfo], at: &mut usize) -> Result<Vec<RemoteTensor>, String> {
        tensors
            .iter()
            .map(|t| {
                let len = t.checked_byte_len().ok_or_else(|| format!("tensor {:?} is too large", t.name))?;
                let offset = *at;
                *at = offset.checked_add(len).and_then(wire::align).ok_or("the tensors are too large")?;
                let (scale, zero_point) = t.quant.as_ref().map_or((0.0, 0), |q| (q.scale(), q.zero_point()));
                Ok(RemoteTensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    dtype: t.dtype.name().to_lowercase(),
                    scale,
                    zero_point,
                    offset,
                    len,
                })
            })
            .collect()
    }

    fn open(shared: &Shared, header: &Value, payload: &[u8], max_upload: usize) -> Result<Opened, String> {
        let it = match header["model"].as_str() {
            Some(name) => shared.open(name)?.ok_or_else(|| {
                format!("no model {name:?} on this server (its --models directory or the catalog cache)")
            })?,
            None if payload.is_empty() => return Err("open needs a model name or the model's bytes".into()),
            None if payload.len() > max_upload => {
                return Err(format!("a {}-byte model is over the {max_upload}-byte upload limit", payload.len()))
            }
            None => {
                let model = Model::from_bytes(payload.to_vec()).map_err(|e| e.to_string())?;
                Runner::new(shared, "uploaded model", &[Arc::new(model)])?
            }
        };
        let mut size = 0;
        let inputs = layout(&it.inputs(), &mut size)?;
        let outputs = layout(&it.outputs(), &mut size)?;
        let region = Region::create("edgetpu-serve", size).map_err(|e| format!("shared memory: {e}"))?;
        Ok(Opened { it, region, inputs, outputs })
    }

    /// Runs one request; returns the time spent inside the interpreter's invoke, in µs.
    fn invoke(m: &mut Opened) -> Result<f64, String> {
        for (i, t) in m.inputs.iter().enumerate() {
            let dst = m.it.input_mut(i).map_err(|e| e.to_string())?;
            m.region.read(t.offset, dst).map_err(|e| e.to_string())?;
        }
        let start = Instant::now();
        m.it.invoke().map_err(|e| e.to_string())?;
        let invoke_us = start.elapsed().as_secs_f64() * 1e6;
        for (j, t) in m.outputs.iter().enumerate() {
            let src = m.it.output(j).map_err(|e| e.to_string())?;
            m.region.write(t.offset, src).map_err(|e| e.to_string())?;
        }
        Ok(invoke_us)
    }

    /// Serves one connection until the client goes away.
    pub fn serve(sock: UnixStream, shared: Arc<Shared>, limit: usize, max_upload: usize) {
        let mut models: Vec<(u64, Opened)> = Vec::new();
        let mut next = 0u64;
        // A client that sends its next request within BACK_TO_BACK of the last reply is awaited
        // by polling without sleeping, for at most that long, so that its request is read without
        // a thread wake-up (when few connections are live: `may_poll`); any other client is
        // awaited with a blocking read.
        let _live = Live::enter();
        let mut spin = Duration::ZERO;
        loop {
            let waiting = Instant::now();
            let msg = wire::recv_spinning(&sock, limit, if may_poll() { spin } else { Duration::ZERO });
            spin = if waiting.elapsed() <= BACK_TO_BACK { BACK_TO_BACK } else { Duration::ZERO };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        // The rest of the message cannot be skipped: answer, then close.
                        let _ = wire::send(&sock, &json!({"ok": false, "error": e.to_string()}), &[], None);
                    }
                    return;
                }
            };
            let h = &msg.header;
            let id = h["id"].as_u64();
            let find = |models: &mut Vec<(u64, Opened)>| models.iter().position(|(i, _)| Some(*i) == id);
            let (reply, fd) = match h["op"].as_str() {
                Some("open") => match open(&shared, h, &msg.payload, max_upload) {
                    Ok(m) => {
                        next += 1;
                        let list = |ts: &[RemoteTensor]| ts.iter().map(RemoteTensor::to_json).collect::<Vec<_>>();
                        let reply = json!({
                            "ok": true, "id": next, "size": m.region.len(),
                            "inputs": list(&m.inputs), "outputs": list(&m.outputs),
                        });
                        let fd = m.region.fd();
                        models.push((next, m));
                        (reply, Some(fd))
                    }
                    Err(e) => (json!({"ok": false, "error": e}), None),
                },
                Some("invoke") => match find(&mut models) {
                    Some(k) => match invoke(&mut models[k].1) {
                        Ok(invoke_us) => (json!({"ok": true, "invoke_us": invoke_us}), None),
                        Err(e) => (json!({"ok": false, "error": e}), None),
                    },
                    None => (json!({"ok": false, "error": format!("no open model {}", h["id"])}), None),
                },
                Some("close") => match find(&mut models) {
                    Some(k) => {
                        models.swap_remove(k);
                        (json!({"ok": true}), None)
                    }
                    None => (json!({"ok": false, "error": format!("no open model {}", h["id"])}), None),
                },
                _ => (json!({"ok": false, "error": "unknown op: expected open, invoke or close"}), None),
            };
            if wire::send(&sock, &reply, &[], fd).is_err() {
                return;
            }
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) use imp::serve;

/// Without memfd (not Linux), connections are answered with an error.
#[cfg(not(target_os = "linux"))]
pub(crate) fn serve(_sock: UnixStream, _shared: Arc<Shared>, _limit: usize, _max_upload: usize) {
    log::warn!("the tensor protocol needs Linux (memfd); closing a connection");
}
