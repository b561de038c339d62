//! The CPU interpreter: runs int8/uint8 (and the float/int32 glue ops around them) TFLite graphs
//! bit-exactly like TFLite's reference kernels, without TensorFlow.
//!
//! [`Interpreter::new`] builds an immutable [`Plan`] once: the nodes the requested outputs
//! depend on ([`Options::outputs`], by default the model's) in operator order, one kernel per node
//! chosen by tensor types (never by op version: the Edge TPU compiler rewrites versions to 1),
//! resolved shapes, constant weights pre-packed, and a tensor arena in which tensors whose
//! lifetimes do not overlap share memory. [`Interpreter::invoke`] then runs the nodes on borrowed
//! slices of that arena without heap allocation.
//!
//! ```no_run
//! use edgetpu::{cpu::{Interpreter, Options}, Model};
//! use std::sync::Arc;
//!
//! let model = Arc::new(Model::open("mobilenet_v1_0.25_128_quant.tflite")?);
//! let mut it = Interpreter::new(model, &Options::default())?;
//! it.input_mut(0)?.fill(128);
//! it.invoke()?;
//! let scores: &[u8] = it.output(0)?;
//! println!("{} classes", scores.len());
//! # Ok::<(), edgetpu::Error>(())
//! ```

mod gemm;
mod kernel;
mod ops;
mod par;
mod plan;
pub mod quant;

pub use kernel::{QuantParams, TensorInfo};
pub use plan::Plan;

use crate::error::{Error, Result};
use crate::model::Model;
use kernel::Io;
use par::Par;
use std::sync::Arc;

/// How to build an interpreter.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Threads kernels may use; 0 means all cores.
    pub threads: usize,
    /// Run only the reference kernels (the specification; slow). For debugging and tests.
    pub reference: bool,
    /// Extra tensors to keep after `invoke` (besides the outputs), so that
    /// [`Interpreter::tensor`] can read them: intermediate results for layer-by-layer checks.
    pub keep: Vec<usize>,
    /// The tensors to compute instead of the model outputs (`None`: the model outputs). The plan
    /// holds only the nodes that these, [`Options::keep`] and the stateful nodes they read from
    /// depend on: asking for intermediate tensors skips the rest of the graph, including ops this
    /// runtime has no kernel for. [`Interpreter::outputs`] and [`Interpreter::output`] then
    /// list these tensors, in this order.
    pub outputs: Option<Vec<usize>>,
    /// Subgraph to run.
    pub subgraph: usize,
    /// Most bytes of activation memory (tensor arena plus kernel scratch) the interpreter may
    /// allocate; 0 means the default, 2 GiB. A model that needs more fails to plan with an error
    /// saying how much it needs, instead of allocating it.
    pub max_arena_bytes: usize,
    /// Runs the operators the CPU does not: the Edge TPU steps (`edgetpu-custom-op`). Without
    /// one, a compiled model fails to plan at its Edge TPU step.
    pub delegate: Option<Arc<dyn Delegate>>,
}

/// Something that runs the `edgetpu-custom-op` nodes of a graph for the interpreter: the
/// hybrid CPU + Edge TPU execution of compiled models (see [`crate::sched`]).
pub trait Delegate: Send + Sync + std::fmt::Debug {
    /// Prepares the custom op `op` of subgraph `subgraph` of `model`, once, at plan time.
    fn prepare(
        &self,
        model: &Arc<Model>,
        subgraph: usize,
        op: &crate::model::Operator,
    ) -> Result<Box<dyn DelegateStep>>;
}

/// The tensors of one run of a delegated node.
pub struct DelegateIo<'a, 'b> {
    /// The node's inputs in the operator's order, exactly their TFLite sizes; a variable input
    /// (see `state`) is empty here.
    pub inputs: &'b [&'a [u8]],
    /// The node's variable inputs (state kept across invocations), writable, in input order.
    pub state: &'b mut [&'a mut [u8]],
    /// The input position of each `state` entry.
    pub state_inputs: &'b [usize],
    /// The node's outputs in the operator's order, exactly their TFLite sizes.
    pub outputs: &'b mut [&'a mut [u8]],
}

/// One prepared Edge TPU step.
pub trait DelegateStep: Send + Sync {
    /// Runs it over the node's tensors.
    fn run(&self, io: &mut DelegateIo<'_, '_>) -> Result<()>;
}

struct DelegateKernel {
    step: Box<dyn DelegateStep>,
    state_inputs: Vec<usize>,
}

impl kernel::Kernel for DelegateKernel {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        self.step.run(&mut DelegateIo {
            inputs: io.ins,
            state: io.state,
            state_inputs: &self.state_inputs,
            outputs: io.outs,
        })
    }
}

/// Most inputs / outputs one node may have.
const MAX_INPUTS: usize = 64;
const MAX_OUTPUTS: usize = 32;
const MAX_STATE: usize = 8;

/// A model ready to run on the CPU.
pub struct Interpreter {
    model: Arc<Model>,
    plan: Arc<Plan>,
    slots: Vec<Vec<u64>>,
    owned: Vec<Vec<u64>>,
    scratch: Vec<u64>,
    taken: Vec<Vec<u64>>,
    par: Arc<Par>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("nodes", &self.plan.nodes.len())
            .field("arena_bytes", &self.arena_bytes())
            .field("threads", &self.par.threads())
            .finish_non_exhaustive()
    }
}

/// The threads `options` ask for: `threads`, or every core for 0.
pub(crate) fn kernel_threads(options: &Options) -> usize {
    if options.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        options.threads
    }
}

impl Interpreter {
    /// Plans `model` and allocates its arena. Fails with the op name, version, tensor types and
    /// node index when a node has no kernel.
    pub fn new(model: Arc<Model>, options: &Options) -> Result<Interpreter> {
        let plan = Plan::build(&model, options).map_err(|e| e.with_path(model.path()))?;
        let threads = kernel_threads(options);
        let limit = plan::max_arena_bytes(options);
        let needed = plan
            .slot_bytes
            .iter()
            .try_fold(0usize, |a, &b| a.checked_add(b))
            .and_then(|a| a.checked_add(plan.scratch_bytes.checked_mul(threads.max(1))?));
        if needed.is_none_or(|n| n > limit) {
            let needed = needed.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            // Name the largest tensor of the arena: the first place to look for a shape gone wrong.
            let largest = plan
                .locs
                .iter()
                .enumerate()
                .filter(|(_, l)| matches!(l, plan::Loc::Slot(_)))
                .filter_map(|(t, _)| plan.tensors.get(t))
                .max_by_key(|t| t.byte_len())
                .map_or(String::new(), |t| {
                    format!(
                        "; the largest is tensor {} ({:?}, {} {:?}) of {} bytes",
                        t.index,
                        t.name,
                        t.dtype.name(),
                        t.shape,
                        t.byte_len()
                    )
                });
            let err = Error::unsupported(format!(
                "the model needs {needed} bytes of activations ({} tensor slots, {} bytes of scratch per \
                 thread, {threads} threads){largest}, more than the limit of {limit} (Options::max_arena_bytes)",
                plan.slot_bytes.len(),
                plan.scratch_bytes
            ));
            return Err(err.with_path(model.path()));
        }
        let par = Arc::new(Par::new(threads)?);
        let words = |bytes: usize| bytes.div_ceil(8);
        let mut slots: Vec<Vec<u64>> = plan.slot_bytes.iter().map(|&b| vec![0u64; words(b)]).collect();
        for v in &plan.variables {
            if let plan::Loc::Slot(s) = plan.locs[v.tensor] {
                bytemuck::cast_slice_mut::<u64, u8>(&mut slots[s]).fill(v.fill);
            }
        }
        let owned = plan.owned.to_vec();
        let scratch = vec![0u64; words(plan.scratch_bytes * threads.max(1))];
        Ok(Interpreter {
            model,
            plan: Arc::new(plan),
            slots,
            owned,
            scratch,
            taken: Vec::with_capacity(MAX_OUTPUTS + MAX_STATE),
            par,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Bytes of the tensor arena (activations; weights stay in the mapped file or packed).
    pub fn arena_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.len() * 8).sum::<usize>() + self.scratch.len() * 8
    }

    /// Threads in use.
    pub fn threads(&self) -> usize {
        self.par.threads()
    }

    /// The model inputs.
    pub fn inputs(&self) -> Vec<&TensorInfo> {
        self.plan.inputs.iter().map(|&t| &self.plan.tensors[t]).collect()
    }

    /// The outputs: the model's, or the tensors of [`Options::outputs`].
    pub fn outputs(&self) -> Vec<&TensorInfo> {
        self.plan.outputs.iter().map(|&t| &self.plan.tensors[t]).collect()
    }

    /// Mutable bytes of input `i`.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [u8]> {
        let t = *self.plan.inputs.get(i).ok_or_else(|| {
            Error::argument(format!("input {i} does not exist; the model has {} inputs", self.plan.inputs.len()))
        })?;
        let len = self.plan.tensors[t].byte_len();
        match self.plan.locs[t] {
            plan::Loc::Slot(s) => Ok(&mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.slots[s])[..len]),
            _ => Err(Error::argument(format!("input {i} (tensor {t}) is a constant and cannot be set"))),
        }
    }

    /// Copies `bytes` into input `i`; the length must match the tensor exactly.
    pub fn set_input(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let dst = self.input_mut(i)?;
        if dst.len() != bytes.len() {
            let t = &self.plan.tensors[self.plan.inputs[i]];
            return Err(Error::argument(format!(
                "input {i} ({:?}, {} {:?}) takes {} bytes, got {}",
                t.name,
                t.dtype.name(),
                t.shape,
                t.byte_len(),
                bytes.len()
            )));
        }
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// Bytes of output `j` (valid after [`Interpreter::invoke`]).
    pub fn output(&self, j: usize) -> Result<&[u8]> {
        let t = *self.plan.outputs.get(j).ok_or_else(|| {
            Error::argument(format!("output {j} does not exist; the plan has {} outputs", self.plan.outputs.len()))
        })?;
        self.tensor(t)
    }

    /// Bytes of tensor `t`: model inputs, outputs (see [`Options::outputs`]), constants and
    /// tensors listed in [`Options::keep`]. Other intermediate tensors share memory (or are not
    /// computed at all) and are not readable.
    pub fn tensor(&self, t: usize) -> Result<&[u8]> {
        let info = self.plan.tensors.get(t).ok_or_else(|| {
            Error::argument(format!("tensor {t} does not exist; the subgraph has {} tensors", self.plan.tensors.len()))
        })?;
        if !self.plan.readable[t] {
            return Err(Error::argument(format!(
                "tensor {t} ({:?}) is an intermediate whose memory is reused; list it in Options::keep to read it",
                info.name
            )));
        }
        self.bytes_of(t)
    }

    /// Mutable bytes of tensor `t`, for the readable tensors of [`Interpreter::tensor`] that live
    /// in the arena (inputs, outputs, kept tensors, state); constants are refused. The memory stays where it is for the interpreter's
    /// life (the arena is allocated once), so bindings may hand out views of it.
    pub fn tensor_mut(&mut self, t: usize) -> Result<&mut [u8]> {
        let info = self.plan.tensors.get(t).ok_or_else(|| {
            Error::argument(format!("tensor {t} does not exist; the subgraph has {} tensors", self.plan.tensors.len()))
        })?;
        if !self.plan.readable[t] {
            return Err(Error::argument(format!(
                "tensor {t} ({:?}) is an intermediate whose memory is reused; list it in Options::keep to write it",
                info.name
            )));
        }
        let len = info.byte_len();
        match self.plan.locs[t] {
            plan::Loc::Slot(s) => Ok(&mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.slots[s])[..len]),
            plan::Loc::Empty => Ok(&mut []),
            plan::Loc::Const(_) | plan::Loc::Owned(_) => Err(Error::argument(format!(
                "tensor {t} ({:?}) is a constant of the model and cannot be written",
                info.name
            ))),
        }
    }

    fn bytes_of(&self, t: usize) -> Result<&[u8]> {
        let len = self.plan.tensors[t].byte_len();
        Ok(match &self.plan.locs[t] {
            plan::Loc::Slot(s) => &bytemuck::cast_slice::<u64, u8>(&self.slots[*s])[..len],
            plan::Loc::Const(r) => &self.model.bytes()[r.clone()],
            plan::Loc::Owned(k) => &bytemuck::cast_slice::<u64, u8>(&self.owned[*k])[..len],
            plan::Loc::Empty => &[],
        })
    }

    /// Runs every node once.
    pub fn invoke(&mut self) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        let par = Arc::clone(&self.par);
        par.install(|| {
            for node in &plan.nodes {
                self.run_node(&plan, node).map_err(|e| match e {
                    Error::InvalidArgument { reason } => {
                        Error::argument(format!("{} (node {}): {reason}", node.name, node.index))
                    }
                    e => e,
                })?;
            }
            Ok(())
        })
    }

    /// Runs only the section of the graph between some tensors and others: writes `inputs`
    /// (tensor index, bytes; each must be a graph input or listed in [`Options::keep`]), then
    /// runs the nodes from the first one that reads any of them to the last one that writes any
    /// of `outputs` (which must be readable too). This is how the simulator computes what an Edge
    /// TPU step would from the CPU model it was compiled from, when the step starts in the middle
    /// of that model.
    pub fn invoke_section(&mut self, inputs: &[(usize, &[u8])], outputs: &[usize]) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        for &(t, bytes) in inputs {
            let info = plan.tensors.get(t).ok_or_else(|| Error::argument(format!("tensor {t} does not exist")))?;
            if !plan.readable[t] || bytes.len() != info.byte_len() {
                return Err(Error::argument(format!(
                    "tensor {t} ({:?}) cannot be set: it must be kept (Options::keep) and take {} bytes, {} given",
                    info.name,
                    info.byte_len(),
                    bytes.len()
                )));
            }
            match plan.locs[t] {
                plan::Loc::Slot(s) => {
                    bytemuck::cast_slice_mut::<u64, u8>(&mut self.slots[s])[..bytes.len()].copy_from_slice(bytes)
                }
                _ => return Err(Error::argument(format!("tensor {t} is not in the arena"))),
            }
        }
        let reads = |n: &plan::Node| n.inputs.iter().any(|i| i.is_some_and(|i| inputs.iter().any(|&(t, _)| t == i)));
        let writes = |n: &plan::Node| n.outputs.iter().any(|o| outputs.contains(o));
        let first = plan.nodes.iter().position(reads);
        let last = plan.nodes.iter().rposition(writes);
        let (Some(first), Some(last)) = (first, last) else {
            return Err(Error::argument("no node reads those inputs or writes those outputs"));
        };
        if let Some(&t) = outputs.iter().find(|&&t| !plan.readable.get(t).copied().unwrap_or(false)) {
            return Err(Error::argument(format!("tensor {t} is not kept (Options::keep)")));
        }
        let par = Arc::clone(&self.par);
        par.install(|| {
            for node in plan.nodes.get(first..=last).unwrap_or_default() {
                self.run_node(&plan, node)?;
            }
            Ok(())
        })
    }

    /// Runs every node once and adds each node's wall time to `per_node` (one entry per node,
    /// in [`Plan::node_names`] order): for profiling.
    pub fn invoke_timed(&mut self, per_node: &mut [std::time::Duration]) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        if per_node.len() != plan.nodes.len() {
            return Err(Error::argument(format!("expected {} timing slots, got {}", plan.nodes.len(), per_node.len())));
        }
        let par = Arc::clone(&self.par);
        par.install(|| {
            for (node, slot) in plan.nodes.iter().zip(per_node.iter_mut()) {
                let t = std::time::Instant::now();
                self.run_node(&plan, node)?;
                *slot += t.elapsed();
            }
            Ok(())
        })
    }

    fn run_node(&mut self, plan: &Plan, node: &plan::Node) -> Result<()> {
        if node.empty {
            return Ok(());
        }
        // Take the output and state slots out of the arena so that inputs can be borrowed from
        // the rest.
        self.taken.clear();
        let state_tensors = node.state.iter().filter_map(|&k| node.inputs[k]);
        for o in node.outputs.iter().copied().chain(state_tensors) {
            match plan.locs[o] {
                plan::Loc::Slot(s) => self.taken.push(std::mem::take(&mut self.slots[s])),
                _ => return Err(Error::argument(format!("tensor {o} is not in the arena"))),
            }
        }
        let bytes = self.model.bytes();
        let mut ins: [&[u8]; MAX_INPUTS] = [&[]; MAX_INPUTS];
        for (k, inp) in node.inputs.iter().enumerate() {
            if let Some(t) = *inp {
                if node.state.contains(&k) {
                    continue;
                }
                let len = plan.tensors[t].byte_len();
                ins[k] = match &plan.locs[t] {
                    plan::Loc::Slot(s) => &bytemuck::cast_slice::<u64, u8>(&self.slots[*s])[..len],
                    plan::Loc::Const(r) => &bytes[r.clone()],
                    plan::Loc::Owned(i) => &bytemuck::cast_slice::<u64, u8>(&self.owned[*i])[..len],
                    plan::Loc::Empty => &[],
                };
            }
        }
        let n_out = node.outputs.len();
        let mut outs: [&mut [u8]; MAX_OUTPUTS] = Default::default();
        let mut state: [&mut [u8]; MAX_STATE] = Default::default();
        let tensors = node.outputs.iter().copied().chain(node.state.iter().filter_map(|&k| node.inputs[k]));
        for (i, (buf, t)) in self.taken.iter_mut().zip(tensors).enumerate() {
            let len = plan.tensors[t].byte_len();
            let view = &mut bytemuck::cast_slice_mut::<u64, u8>(buf)[..len];
            if i < n_out {
                outs[i] = view;
            } else {
                state[i - n_out] = view;
            }
        }
        let scratch = bytemuck::cast_slice_mut::<u64, u8>(&mut self.scratch);
        let result = node.kernel.run(&mut Io {
            ins: &ins[..node.inputs.len()],
            outs: &mut outs[..n_out],
            state: &mut state[..node.state.len()],
            scratch,
            par: &self.par,
        });
        // Put the slots back.
        let tensors = node.outputs.iter().copied().chain(node.state.iter().filter_map(|&k| node.inputs[k]));
        for (t, buf) in tensors.zip(self.taken.drain(..)) {
            if let plan::Loc::Slot(s) = plan.locs[t] {
                self.slots[s] = buf;
            }
        }
        result
    }
}
