//! Streaming many inferences through a runtime: [`Pool`] runs one model data-parallel (several
//! interpreters, any free device), [`Pipeline`] runs a model compiled into segments with each
//! segment's Edge TPU steps on its own device. Both take inputs through a bounded queue (sending
//! blocks while it is full) and return outputs in the order the inputs went in.

use super::Runtime;
use crate::cpu::{Interpreter, Options};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The tensors of one inference, by position.
pub type Tensors = Vec<Vec<u8>>;

fn closed() -> Error {
    Error::runtime(ErrorKind::Disconnected, "the pool or pipeline has stopped")
}

/// Runs `it` on `inputs` and returns copies of its outputs.
fn infer(it: &mut Interpreter, inputs: &[Vec<u8>]) -> Result<Tensors> {
    if inputs.len() != it.inputs().len() {
        return Err(Error::argument(format!("{} inputs given, the model has {}", inputs.len(), it.inputs().len())));
    }
    for (i, b) in inputs.iter().enumerate() {
        it.set_input(i, b)?;
    }
    it.invoke()?;
    (0..it.outputs().len()).map(|j| it.output(j).map(|o| o.to_vec())).collect()
}

/// One model run by several interpreters in parallel, each of whose Edge TPU steps goes to any
/// free device.
pub struct Pool {
    input: Option<SyncSender<(u64, Tensors)>>,
    output: Receiver<(u64, Result<Tensors>)>,
    workers: Vec<JoinHandle<()>>,
    next_in: u64,
    next_out: u64,
    early: BTreeMap<u64, Result<Tensors>>,
}

impl Pool {
    /// `workers` interpreters of `model` on `runtime`, taking inputs from a queue of `capacity`.
    pub fn new(
        runtime: &Runtime,
        model: Arc<Model>,
        workers: usize,
        capacity: usize,
        options: &Options,
    ) -> Result<Pool> {
        let (in_tx, in_rx) = mpsc::sync_channel::<(u64, Tensors)>(capacity.max(1));
        let (out_tx, out_rx) = mpsc::channel();
        let in_rx = Arc::new(Mutex::new(in_rx));
        let mut handles = Vec::new();
        for w in 0..workers.max(1) {
            let mut it = runtime.interpreter(model.clone(), options)?;
            let (rx, tx) = (in_rx.clone(), out_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("edgetpu-pool-{w}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((seq, inputs)) = job else { break };
                    if tx.send((seq, infer(&mut it, &inputs))).is_err() {
                        break;
                    }
                })
                .map_err(|e| Error::runtime(ErrorKind::Io, format!("starting a pool thread: {e}")))?;
            handles.push(h);
        }
        Ok(Pool {
            input: Some(in_tx),
            output: out_rx,
            workers: handles,
            next_in: 0,
            next_out: 0,
            early: BTreeMap::new(),
        })
    }

    /// Queues one inference; blocks while the queue is full.
    pub fn send(&mut self, inputs: Tensors) -> Result<()> {
        let tx = self.input.as_ref().ok_or_else(closed)?;
        tx.send((self.next_in, inputs)).map_err(|_| closed())?;
        self.next_in += 1;
        Ok(())
    }

    /// The outputs of the oldest inference not yet returned (waits for it).
    pub fn recv(&mut self) -> Result<Tensors> {
        if self.next_out >= self.next_in {
            return Err(Error::argument("recv without a pending inference"));
        }
        loop {
            if let Some(r) = self.early.remove(&self.next_out) {
                self.next_out += 1;
                return r;
            }
            let (seq, r) = self.output.recv().map_err(|_| closed())?;
            self.early.insert(seq, r);
        }
    }

    /// Inferences sent and not yet received.
    pub fn pending(&self) -> u64 {
        self.next_in - self.next_out
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.input = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// A model compiled into segments (`edgetpu_compiler -n N`), run as a pipeline: stage `k` runs
/// segment `k` with its Edge TPU steps on device `k % devices`, so with as many devices as
/// segments every segment has its own device; with fewer it still runs. A segment's inputs are
/// taken by tensor name from the outputs of the earlier segments (or from the pipeline's inputs);
/// the pipeline's outputs are the last segment's.
pub struct Pipeline {
    input: Option<SyncSender<Result<Stage>>>,
    output: Option<Receiver<Result<Stage>>>,
    workers: Vec<JoinHandle<()>>,
    pending: u64,
}

/// What flows between stages: every tensor produced so far, by name.
type Stage = Vec<(String, Vec<u8>)>;

impl Pipeline {
    /// Builds the stages; `capacity` bounds each queue between them.
    pub fn new(runtime: &Runtime, segments: &[Arc<Model>], capacity: usize, options: &Options) -> Result<Pipeline> {
        if segments.is_empty() {
            return Err(Error::argument("a pipeline needs at least one segment"));
        }
        let n = runtime.devices().len();
        let (first_tx, mut rx) = mpsc::sync_channel::<Result<Stage>>(capacity.max(1));
        let mut workers = Vec::new();
        for (k, seg) in segments.iter().enumerate() {
            let mut it = runtime.interpreter_on(seg.clone(), options, Some(k % n))?;
            let names_in: Vec<String> = it.inputs().iter().map(|t| t.name.clone()).collect();
            let names_out: Vec<String> = it.outputs().iter().map(|t| t.name.clone()).collect();
            let last = k + 1 == segments.len();
            let (tx, next_rx) = mpsc::sync_channel::<Result<Stage>>(capacity.max(1));
            let stage_rx = std::mem::replace(&mut rx, next_rx);
            let h = std::thread::Builder::new()
                .name(format!("edgetpu-stage-{k}"))
                .spawn(move || {
                    for item in stage_rx {
                        let out = item.and_then(|mut tensors| {
                            let mut inputs = Vec::with_capacity(names_in.len());
                            for name in &names_in {
                                let t = tensors.iter().find(|(n, _)| n == name).ok_or_else(|| {
                                    Error::argument(format!(
                                        "segment {k} needs tensor {name:?}, which no earlier segment makes"
                                    ))
                                })?;
                                inputs.push(t.1.clone());
                            }
                            let outs = infer(&mut it, &inputs)?;
                            if last {
                                tensors.clear();
                            }
                            tensors.extend(names_out.iter().cloned().zip(outs));
                            Ok(tensors)
                        });
                        if tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::runtime(ErrorKind::Io, format!("starting a pipeline thread: {e}")))?;
            workers.push(h);
        }
        Ok(Pipeline { input: Some(first_tx), output: Some(rx), workers, pending: 0 })
    }

    /// Queues one inference: the first segment's inputs, by name. Blocks while the first queue
    /// is full.
    pub fn send(&mut self, inputs: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.input.as_ref().ok_or_else(closed)?.send(Ok(inputs)).map_err(|_| closed())?;
        self.pending += 1;
        Ok(())
    }

    /// Inferences sent and not yet received.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The last segment's outputs (name, bytes) of the oldest inference not yet returned.
    pub fn recv(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        if self.pending == 0 {
            return Err(Error::argument("recv without a pending inference"));
        }
        self.pending -= 1;
        self.output.as_ref().ok_or_else(closed)?.recv().map_err(|_| closed())?
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Closing both ends stops every stage: the first sees its input end, the last fails to
        // send, and each stage's exit closes the queue of its neighbours.
        self.input = None;
        self.output = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}
