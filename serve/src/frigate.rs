//! Frigate's `zmq` detector protocol, one connection at a time.
//!
//! - Handshake: a one-frame JSON `{"model_request": true, "model_name": NAME}` is answered
//!   `{"model_available": bool, "model_loaded": bool}`. When the model is not available, the
//!   client may send `[{"model_data": true, "model_name": NAME}, model bytes]`, answered
//!   `{"model_saved": bool, "model_loaded": bool}`.
//! - Inference: `[{"shape": [...], "dtype": "uint8", "model_type": "ssd"}, raw C-order tensor]`
//!   is answered by 20 × 6 float32 values (480 bytes): rows of `class_id, score, ymin, xmin, ymax,
//!   xmax` (normalised), zero rows after the last detection, as Frigate's own edgetpu detector
//!   computes them from the same outputs. `model_type` `ssd` decodes the outputs of a
//!   `TFLite_Detection_PostProcess` op, `yologeneric` a YOLO model's class logits and DFL boxes
//!   ([`crate::yolo`]).
//! - Inference requests do not name their model: each connection remembers the model of its last
//!   handshake. Frigate opens a new connection (and handshakes again) after every timeout.
//! - An int8-input model gets uint8 frames shifted by 128 (XOR 0x80), as Frigate's edgetpu
//!   detector does.
//!
//! Anything malformed gets a one-frame JSON `{"error": "..."}` reply and the connection goes on.

use crate::models::ModelStore;
use crate::runner::Runner;
use edgetpu::model::TensorType;
use edgetpu::{Interpreter, Model, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

/// Rows of a detection reply.
pub const ROWS: usize = 20;

/// What every connection shares.
pub struct Shared {
    /// The devices, if any (a CPU model runs without).
    pub runtime: Option<Runtime>,
    /// Where models are found and uploads saved.
    pub store: ModelStore,
    /// Detections scoring below this are left out.
    pub threshold: f32,
}

impl Shared {
    /// An interpreter of `model` on the server's devices (a compiled model) or its CPU.
    pub fn interpreter(&self, name: &str, model: Arc<Model>) -> Result<Interpreter, String> {
        let builder = Interpreter::builder(model.clone()).threads(1);
        match (&self.runtime, model.is_compiled()) {
            (Some(rt), true) => builder.runtime(rt).build(),
            (None, true) => {
                return Err(format!("{name} is compiled for the Edge TPU and this server has no Edge TPU device"))
            }
            (_, false) => builder.device(edgetpu::DeviceSpec::cpu()).build(),
        }
        .map_err(|e| e.to_string())
    }

    /// Model `name` from the store, ready to run (`None` when the store has no such model).
    pub fn open(&self, name: &str) -> Result<Option<Runner>, String> {
        let Some(paths) = self.store.find_models(name).map_err(|e| e.to_string())? else { return Ok(None) };
        Runner::new(self, name, &open_models(&paths)?).map(Some)
    }
}

/// Opens the files of one model (itself, or its segments in order, as
/// [`ModelStore::find_models`] gives them).
pub fn open_models(paths: &[std::path::PathBuf]) -> Result<Vec<Arc<Model>>, String> {
    paths.iter().map(|p| Model::open(p).map(Arc::new).map_err(|e| e.to_string())).collect()
}

/// A loaded model of one connection.
struct Loaded {
    name: String,
    it: Runner,
    /// Output tensors of an SSD model (boxes, classes, scores, count), when it is one.
    ssd: bool,
    /// The YOLO layout of its outputs, or why they have none.
    yolo: Result<crate::yolo::Yolo, String>,
}

/// One client connection's state.
pub struct Session {
    shared: Arc<Shared>,
    model: Option<Loaded>,
}

fn error(msg: impl std::fmt::Display) -> Vec<Vec<u8>> {
    vec![json!({ "error": msg.to_string() }).to_string().into_bytes()]
}

fn reply(v: Value) -> Vec<Vec<u8>> {
    vec![v.to_string().into_bytes()]
}

impl Session {
    /// A session on `shared`.
    pub fn new(shared: Arc<Shared>) -> Session {
        Session { shared, model: None }
    }

    /// The reply to one request message.
    pub fn handle(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let Some(first) = frames.first() else { return error("an empty request") };
        let header: Value = match serde_json::from_slice(first) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return error("the first frame is not a JSON object"),
            Err(e) => return error(format!("the first frame is not JSON: {e}")),
        };
        if header["model_request"] == true {
            return self.model_request(&header);
        }
        if header["model_data"] == true {
            return self.model_data(&header, frames.get(1).map(Vec::as_slice));
        }
        if header.get("shape").is_some() {
            return match frames.get(1) {
                Some(tensor) => self.infer(&header, tensor),
                None => error("an inference request needs the tensor as its second frame"),
            };
        }
        error("unknown request: expected model_request, model_data or an inference header with a shape")
    }

    fn model_name(header: &Value) -> Result<&str, Vec<Vec<u8>>> {
        header["model_name"].as_str().ok_or_else(|| error("model_name is missing or not a string"))
    }

    /// Loads model `name`, whose files the store found at `paths`, for this connection.
    fn load(&mut self, name: &str, paths: &[std::path::PathBuf]) -> Result<(), String> {
        if self.model.as_ref().is_some_and(|m| m.name == name) {
            return Ok(());
        }
        let it = Runner::new(&self.shared, name, &open_models(paths)?)?;
        // Frigate's SSD path reads outputs 0-3 as boxes, classes, scores and count: those of a
        // TFLite_Detection_PostProcess op, all float32.
        let has_postprocess = it.has_op("TFLite_Detection_PostProcess");
        let outs = it.outputs();
        let ssd = has_postprocess && outs.len() >= 4 && outs[..4].iter().all(|t| t.dtype == TensorType::FLOAT32);
        let yolo = match it.inputs().first() {
            Some(input) => crate::yolo::Yolo::new(input, &outs, self.shared.threshold),
            None => Err("the model has no input".into()),
        };
        let kind = match (ssd, &yolo) {
            (true, _) => "SSD",
            (false, Ok(_)) => "YOLO",
            _ => "neither SSD nor YOLO outputs",
        };
        log::info!("loaded model {name} ({kind}, {} segment(s))", it.segments());
        drop(outs);
        self.model = Some(Loaded { name: name.to_string(), it, ssd, yolo });
        Ok(())
    }

    fn model_request(&mut self, header: &Value) -> Vec<Vec<u8>> {
        let name = match Self::model_name(header) {
            Ok(n) => n,
            Err(e) => return e,
        };
        match self.shared.store.find_models(name) {
            Err(e) => error(e),
            Ok(None) => reply(json!({"model_available": false, "model_loaded": false})),
            Ok(Some(paths)) => {
                let loaded = self.load(name, &paths);
                if let Err(e) = &loaded {
                    log::warn!("model {name}: {e}");
                }
                reply(json!({"model_available": true, "model_loaded": loaded.is_ok()}))
            }
        }
    }

    fn model_data(&mut self, header: &Value, bytes: Option<&[u8]>) -> Vec<Vec<u8>> {
        let name = match Self::model_name(header) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let Some(bytes) = bytes else { return error("model_data needs the model bytes as its second frame") };
        match self.shared.store.save(name, bytes) {
            Err(e) => {
                log::warn!("refused model upload: {e}");
                reply(json!({"model_saved": false, "model_loaded": false, "error": e.to_string()}))
            }
            Ok(path) => {
                let loaded = self.load(name, &[path]);
                reply(json!({"model_saved": true, "model_loaded": loaded.is_ok()}))
            }
        }
    }

    fn infer(&mut self, header: &Value, tensor: &[u8]) -> Vec<Vec<u8>> {
        match self.try_infer(header, tensor) {
            Ok(v) => vec![v],
            Err(e) => error(e),
        }
    }

    fn try_infer(&mut self, header: &Value, tensor: &[u8]) -> Result<Vec<u8>, String> {
        let threshold = self.shared.threshold;
        let m = self.model.as_mut().ok_or("no model loaded on this connection: send a model_request first")?;
        let shape: Vec<usize> = header["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or("shape must be a list of non-negative integers")?;
        let dtype = header["dtype"].as_str().unwrap_or("uint8");
        let size = match dtype {
            "uint8" | "int8" => 1,
            "float32" => 4,
            other => return Err(format!("dtype {other:?} is not served (uint8, int8 or float32)")),
        };
        let want = shape.iter().try_fold(size, |a: usize, &d| a.checked_mul(d)).ok_or("shape overflows")?;
        if want != tensor.len() {
            return Err(format!("the header says {want} bytes ({shape:?} {dtype}), the tensor has {}", tensor.len()));
        }
        let model_type = header["model_type"].as_str().unwrap_or("ssd");
        match model_type {
            "ssd" if !m.ssd => {
                return Err(format!(
                    "model {} has no SSD post-processing (TFLite_Detection_PostProcess giving its first 4 outputs)",
                    m.name
                ))
            }
            "yologeneric" => {
                if let Err(e) = &m.yolo {
                    return Err(format!("model {} cannot be decoded as yologeneric: {e}", m.name));
                }
            }
            "ssd" => {}
            other => return Err(format!("model_type {other:?} is not decoded by this server (ssd or yologeneric)")),
        }
        let input = m.it.inputs().first().map(|t| (*t).clone()).ok_or("the model has no input")?;
        let input_type = input.dtype;
        let dst = m.it.input_mut(0).map_err(|e| e.to_string())?;
        if dst.len() != tensor.len() {
            return Err(format!(
                "model {} takes {} bytes ({:?}), the request has {} ({shape:?} {dtype})",
                m.name,
                dst.len(),
                input.shape,
                tensor.len()
            ));
        }
        match (dtype, input_type) {
            ("uint8", TensorType::UINT8) | ("int8", TensorType::INT8) | ("float32", TensorType::FLOAT32) => {
                dst.copy_from_slice(tensor)
            }
            // Frigate's edgetpu detector shifts uint8 frames for int8-input models.
            ("uint8", TensorType::INT8) => {
                for (d, s) in dst.iter_mut().zip(tensor) {
                    *d = s ^ 0x80;
                }
            }
            (d, t) => return Err(format!("a {d} tensor for a model whose input is {}", t.name())),
        }
        m.it.invoke().map_err(|e| e.to_string())?;
        let rows = match (&m.yolo, model_type) {
            (Ok(yolo), "yologeneric") => {
                let (s, b) = yolo.outputs();
                let out = |j| m.it.output(j).map_err(|e| e.to_string());
                yolo.decode(out(s)?, out(b)?, ROWS)?
            }
            _ => decode_ssd(&m.it, threshold)?,
        };
        Ok(rows.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// The outputs of a model that ran: an interpreter's, or a [`Runner`]'s (the last segment's).
pub trait Outputs {
    /// Output `j`'s element type, if it exists.
    fn output_type(&self, j: usize) -> Option<TensorType>;
    /// Output `j`'s bytes.
    fn output_bytes(&self, j: usize) -> Result<&[u8], String>;
}

impl Outputs for Interpreter {
    fn output_type(&self, j: usize) -> Option<TensorType> {
        self.outputs().get(j).map(|t| t.dtype)
    }
    fn output_bytes(&self, j: usize) -> Result<&[u8], String> {
        self.output(j).map_err(|e| e.to_string())
    }
}

impl Outputs for Runner {
    fn output_type(&self, j: usize) -> Option<TensorType> {
        self.outputs().get(j).map(|t| t.dtype)
    }
    fn output_bytes(&self, j: usize) -> Result<&[u8], String> {
        self.output(j).map_err(|e| e.to_string())
    }
}

fn floats(it: &dyn Outputs, j: usize) -> Result<Vec<f32>, String> {
    let t = it.output_type(j).ok_or("missing output")?;
    if t != TensorType::FLOAT32 {
        return Err(format!("SSD output {j} is {}, not float32", t.name()));
    }
    let bytes = it.output_bytes(j)?;
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The 20 × 6 rows (row-major) of an SSD model's outputs (boxes, classes, scores, count), as
/// Frigate's edgetpu detector builds it: detections in output order until the first one scoring
/// below `threshold`, at most 20.
pub fn decode_ssd(it: &dyn Outputs, threshold: f32) -> Result<Vec<f32>, String> {
    let (boxes, classes, scores, count) = (floats(it, 0)?, floats(it, 1)?, floats(it, 2)?, floats(it, 3)?);
    let count = count.first().copied().unwrap_or(0.0).max(0.0) as usize;
    let mut out = vec![0f32; ROWS * 6];
    for i in 0..count.min(ROWS).min(scores.len()).min(classes.len()) {
        if scores[i] < threshold {
            break;
        }
        let b = boxes.get(i * 4..i * 4 + 4).ok_or("fewer boxes than detections")?;
        out[i * 6..i * 6 + 6].copy_from_slice(&[classes[i], scores[i], b[0], b[1], b[2], b[3]]);
    }
    Ok(out)
}
