//! Building the immutable plan: kernels, resolved tensors and the arena layout.

use super::kernel::{BuildCtx, Kernel, QuantParams, TensorInfo};
use super::{ops, Options, MAX_INPUTS, MAX_OUTPUTS, MAX_STATE};
use crate::error::{Error, Result};
use crate::model::{Model, TensorType};
use std::ops::Range;
use std::sync::Arc;

/// Ops whose kernels update their variable inputs in place (`Io::state`, carried over to the next
/// invocation). Other ops read variable tensors like any input.
const STATEFUL_OPS: &[&str] = &["UNIDIRECTIONAL_SEQUENCE_LSTM", "edgetpu-custom-op"];

/// Where a tensor's bytes live.
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    /// In arena slot `n`.
    Slot(usize),
    /// Constant data borrowed from the model file.
    Const(Range<usize>),
    /// Constant data copied into an aligned buffer (the file's copy was misaligned).
    Owned(usize),
    /// No bytes (unused tensor).
    Empty,
}

pub(crate) struct Node {
    pub index: usize,
    pub name: String,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    /// Positions in `inputs` of variable tensors (passed to the kernel as writable state).
    pub state: Vec<usize>,
    /// Every output has zero elements: running the node would compute nothing (and a kernel
    /// might still loop over the other, possibly huge, dimensions), so it is skipped.
    pub empty: bool,
    pub kernel: Box<dyn Kernel>,
}

pub(crate) struct Variable {
    pub tensor: usize,
    pub fill: u8,
}

/// The immutable result of planning a model: what runs in which order, where each tensor lives.
pub struct Plan {
    pub(crate) nodes: Vec<Node>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) locs: Vec<Loc>,
    pub(crate) readable: Vec<bool>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    pub(crate) slot_bytes: Vec<usize>,
    pub(crate) owned: Vec<Vec<u64>>,
    pub(crate) scratch_bytes: usize,
    pub(crate) variables: Vec<Variable>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("nodes", &self.nodes.len())
            .field("slots", &self.slot_bytes)
            .field("scratch_bytes", &self.scratch_bytes)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }
    /// Kernel names in execution order (`OP/vN` per node).
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }
    /// Resolved info of every tensor of the subgraph.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// Bytes of all arena slots (without scratch).
    pub fn arena_bytes(&self) -> usize {
        self.slot_bytes.iter().sum()
    }

    pub(crate) fn build(model: &Arc<Model>, options: &Options) -> Result<Plan> {
        let sg = model.subgraphs().get(options.subgraph).ok_or_else(|| {
            Error::argument(format!(
                "subgraph {} does not exist; the model has {}",
                options.subgraph,
                model.subgraphs().len()
            ))
        })?;
        let n = sg.tensors.len();
        let limit = max_arena_bytes(options);
        let mut tensors: Vec<TensorInfo> = sg.tensors.iter().map(info_of).collect::<Result<_>>()?;
        let mut locs = vec![Loc::Empty; n];
        let mut owned: Vec<Vec<u64>> = Vec::new();
        let bytes = model.bytes();
        for (t, tensor) in sg.tensors.iter().enumerate() {
            let data = model.tensor_data(tensor);
            let size =
                check_size(&tensors[t], if data.is_some() { usize::MAX } else { limit }).map_err(Error::unsupported)?;
            match data {
                None => {}
                Some(d) if tensor.dtype.size_bytes().is_some() && d.len() != size => {
                    return Err(Error::unsupported(format!(
                        "constant tensor {t} ({:?}, {} {:?}) has {} bytes of data, but its shape needs {size}",
                        tensors[t].name,
                        tensors[t].dtype.name(),
                        tensors[t].shape,
                        d.len()
                    )));
                }
                Some(_) => {}
            }
            if let Some(data) = data {
                let start = crate::fb::offset_in(bytes, data);
                let elem = tensor.dtype.size_bytes().unwrap_or(1);
                if start.is_multiple_of(elem.max(1)) {
                    locs[t] = Loc::Const(start..start + data.len());
                } else {
                    let mut buf = vec![0u64; data.len().div_ceil(8)];
                    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..data.len()].copy_from_slice(data);
                    owned.push(buf);
                    locs[t] = Loc::Owned(owned.len() - 1);
                }
            }
        }

        // The tensors the caller will read, and the nodes they depend on.
        let roots: Vec<usize> =
            options.outputs.as_ref().unwrap_or(&sg.outputs).iter().chain(&options.keep).copied().collect();
        if let Some(&t) = roots.iter().find(|&&t| t >= n) {
            return Err(Error::argument(format!("tensor {t} does not exist; the subgraph has {n} tensors")));
        }
        let needed = needed_nodes(model, sg, &roots);

        // Build kernels in order, resolving shapes as we go.
        let mut nodes = Vec::with_capacity(sg.operators.len());
        let mut scratch_bytes = 0usize;
        let mut writer: Vec<Option<usize>> = vec![None; n];
        let threads = super::kernel_threads(options);
        for (pos, op) in sg.operators.iter().enumerate() {
            if !needed[pos] {
                continue;
            }
            let code = model.opcode(op);
            let outputs: Vec<usize> = op
                .outputs
                .iter()
                .map(|o| o.ok_or_else(|| Error::unsupported(format!("node {}: an output is omitted (-1)", op.index))))
                .collect::<Result<_>>()?;
            let mut ctx = BuildCtx {
                op_name: model.op_name(op),
                version: code.version,
                node: op.index,
                options: &op.options,
                custom_options: model.custom_options(op),
                inputs: op.inputs.iter().map(|i| i.map(|t| tensors[t].clone())).collect(),
                constants: op.inputs.iter().map(|i| i.and_then(|t| model.tensor_data(&sg.tensors[t]))).collect(),
                outputs: outputs.iter().map(|&t| tensors[t].clone()).collect(),
                intermediates: op.intermediates.iter().map(|&t| tensors[t].clone()).collect(),
                reference: options.reference,
                vnni: !options.reference && super::gemm::vnni(),
                threads,
            };
            if outputs.is_empty() {
                return Err(ctx.err("the node has no outputs"));
            }
            if op.inputs.len() > MAX_INPUTS || outputs.len() > MAX_OUTPUTS {
                return Err(ctx.err(format!(
                    "{} inputs and {} outputs; this runtime handles at most {MAX_INPUTS} and {MAX_OUTPUTS}",
                    op.inputs.len(),
                    outputs.len()
                )));
            }
            // A node's outputs are taken out of the arena while it runs: they must be distinct and
            // not among its own inputs.
            for (k, &t) in outputs.iter().enumerate() {
                if outputs[..k].contains(&t) || op.inputs.contains(&Some(t)) {
                    return Err(
                        ctx.err(format!("output {k} (tensor {t}) is also another output or an input of the node"))
                    );
                }
            }
            // Variable inputs of stateful ops are passed to the kernel as writable state; they are
            // taken out of the arena while the node runs, so there may be a few, each once.
            let state = state_inputs(model, sg, op);
            for (i, &k) in state.iter().enumerate() {
                if state[..i].iter().any(|&j| op.inputs[j] == op.inputs[k]) || i >= MAX_STATE {
                    return Err(ctx.err(format!(
                        "variable input {k} (tensor {:?}) repeats another or is one too many (at most {MAX_STATE})",
                        op.inputs[k]
                    )));
                }
            }
            let built = match (&options.delegate, ctx.op_name) {
                (Some(d), "edgetpu-custom-op") => {
                    let step = d.prepare(model, options.subgraph, op).map_err(|e| e.with_path(model.path()))?;
                    super::kernel::Built::new(super::DelegateKernel { step, state_inputs: state.clone() })?
                }
                _ => ops::build(&mut ctx)?,
            };
            for (k, &t) in outputs.iter().enumerate() {
                if matches!(locs[t], Loc::Const(_) | Loc::Owned(_)) {
                    return Err(ctx.err(format!("output {k} (tensor {t}) is a constant")));
                }
                if let Some(w) = writer[t] {
                    return Err(ctx.err(format!("output {k} (tensor {t}) is also written by node {w}")));
                }
                if sg.inputs.contains(&t) || sg.tensors[t].is_variable {
                    return Err(ctx.err(format!("output {k} (tensor {t}) is a model input or a variable tensor")));
                }
                writer[t] = Some(op.index);
                let info = &ctx.outputs[k];
                check_size(info, limit).map_err(|e| ctx.err(e))?;
                tensors[t] = ctx.outputs[k].clone();
            }
            scratch_bytes = scratch_bytes.max(built.scratch_bytes);
            nodes.push(Node {
                index: op.index,
                name: format!("{}/v{}", ctx.op_name, ctx.version),
                state,
                inputs: op.inputs.clone(),
                empty: outputs.iter().all(|&t| tensors[t].byte_len() == 0),
                outputs,
                kernel: built.kernel,
            });
        }

        // Lifetimes: first definition and last use of every arena tensor, in node positions.
        let never = usize::MAX;
        let end = nodes.len();
        let mut first = vec![never; n];
        let mut last = vec![0usize; n];
        let mut readable = vec![false; n];
        let mut variables = Vec::new();
        let is_arena = |t: usize, locs: &[Loc]| matches!(locs[t], Loc::Empty);
        for &t in &sg.inputs {
            first[t] = 0;
            last[t] = end;
            readable[t] = true;
        }
        for (t, tensor) in sg.tensors.iter().enumerate() {
            if tensor.is_variable && is_arena(t, &locs) {
                first[t] = 0;
                last[t] = end;
                let fill = match (&tensors[t].quant, tensors[t].dtype) {
                    (Some(q), TensorType::INT8) => q.zero_point() as i8 as u8,
                    _ => 0,
                };
                variables.push(Variable { tensor: t, fill });
            }
        }
        for (pos, node) in nodes.iter().enumerate() {
            for &t in node.inputs.iter().flatten() {
                if is_arena(t, &locs) {
                    if first[t] == never {
                        return Err(Error::unsupported(format!(
                            "node {} ({}) reads tensor {t} ({:?}) before any node writes it",
                            node.index, node.name, tensors[t].name
                        )));
                    }
                    last[t] = last[t].max(pos);
                }
            }
            for &t in &node.outputs {
                if first[t] == never {
                    first[t] = pos;
                }
                last[t] = last[t].max(pos);
            }
        }
        for &t in &roots {
            last[t] = end;
            readable[t] = true;
        }
        for (t, loc) in locs.iter().enumerate() {
            if !matches!(loc, Loc::Empty) {
                readable[t] = true;
            }
        }

        // Greedy slot assignment in order of definition: a slot is free once its last tensor's
        // last use is before the defining node.
        let mut order: Vec<usize> = (0..n).filter(|&t| first[t] != never && is_arena(t, &locs)).collect();
        order.sort_by_key(|&t| (first[t], t));
        let mut slot_bytes: Vec<usize> = Vec::new();
        let mut slot_free_after: Vec<usize> = Vec::new(); // last use of the slot's current tensor
        let mut slot_of = vec![never; n];
        let pinned = |t: usize| first[t] == 0 && last[t] == end;
        for &t in &order {
            let size = tensors[t].byte_len();
            let fits = |s: usize| slot_free_after[s] < first[t] || (slot_free_after[s] == never);
            // Best fit among free slots: the smallest that holds it, else the largest (grown).
            let free: Vec<usize> =
                if pinned(t) { Vec::new() } else { (0..slot_bytes.len()).filter(|&s| fits(s)).collect() };
            let pick = free
                .iter()
                .copied()
                .filter(|&s| slot_bytes[s] >= size)
                .min_by_key(|&s| slot_bytes[s])
                .or_else(|| free.iter().copied().max_by_key(|&s| slot_bytes[s]));
            let s = match pick {
                Some(s) => s,
                None => {
                    slot_bytes.push(0);
                    slot_free_after.push(0);
                    slot_bytes.len() - 1
                }
            };
            slot_bytes[s] = slot_bytes[s].max(size);
            slot_free_after[s] = if pinned(t) { usize::MAX - 1 } else { last[t] };
            slot_of[t] = s;
            locs[t] = Loc::Slot(s);
        }
        Ok(Plan {
            nodes,
            tensors,
            locs,
            readable,
            inputs: sg.inputs.clone(),
            outputs: options.outputs.clone().unwrap_or_else(|| sg.outputs.clone()),
            slot_bytes,
            owned,
            scratch_bytes,
            variables,
        })
    }
}

/// Positions in `op.inputs` of the variable tensors a stateful op updates in place.
fn state_inputs(model: &Model, sg: &crate::model::Subgraph, op: &crate::model::Operator) -> Vec<usize> {
    if !STATEFUL_OPS.contains(&model.op_name(op)) {
        return Vec::new();
    }
    op.inputs
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_some_and(|t| sg.tensors[t].is_variable && model.tensor_data(&sg.tensors[t]).is_none()))
        .map(|(k, _)| k)
        .collect()
}

/// Which operators (by position) the tensors `roots` depend on: their writers, the writers of
/// those writers' inputs, and so on; and, for every variable tensor such a node reads, the
/// stateful nodes that update it (whose effect carries over between invocations). Others are
/// left out of the plan: they are neither built nor run, so an op this runtime cannot run does
/// not stop a caller who asks only for tensors before it.
fn needed_nodes(model: &Model, sg: &crate::model::Subgraph, roots: &[usize]) -> Vec<bool> {
    let n = sg.tensors.len();
    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (pos, op) in sg.operators.iter().enumerate() {
        for &t in op.outputs.iter().flatten() {
            if t < n {
                writers[t].push(pos);
            }
        }
        for k in state_inputs(model, sg, op) {
            if let Some(t) = op.inputs[k] {
                writers[t].push(pos);
            }
        }
    }
    let mut needed = vec![false; sg.operators.len()];
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = roots.to_vec();
    while let Some(t) = stack.pop() {
        if t >= n || std::mem::replace(&mut seen[t], true) {
            continue;
        }
        for &pos in &writers[t] {
            if !std::mem::replace(&mut needed[pos], true) {
                stack.extend(sg.operators[pos].inputs.iter().flatten().copied());
            }
        }
    }
    needed
}

fn info_of(t: &crate::model::Tensor) -> Result<TensorInfo> {
    let shape = t
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Error::unsupported(format!(
                    "tensor {} ({:?}) has dynamic shape {:?}; this runtime needs static shapes",
                    t.index, t.name, t.shape
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quant = t.quantization.as_ref().map(|q| QuantParams {
        scale: q.scale.clone(),
        zero_point: if q.zero_point.is_empty() {
            vec![0; q.scale.len()]
        } else {
            q.zero_point.iter().map(|&z| z.clamp(i32::MIN as i64, i32::MAX as i64) as i32).collect()
        },
        axis: q.quantized_dimension.max(0) as usize,
    });
    if let Some(q) = &t.quantization {
        // Kernels subtract zero points and divide by scales in 32-bit arithmetic: values no
        // converter writes (NaN, negative scales, zero points outside the type) are refused here.
        if let Some(s) = q.scale.iter().find(|s| !s.is_finite() || s.is_sign_negative()) {
            return Err(Error::unsupported(format!(
                "tensor {} ({:?}) has quantization scale {s}; scales must be finite and not negative",
                t.index, t.name
            )));
        }
        let (lo, hi) = match t.dtype {
            TensorType::UINT8 => (0, 255),
            TensorType::INT8 => (-128, 127),
            TensorType::INT16 => (-32768, 32767),
            _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
        };
        if let Some(z) = q.zero_point.iter().find(|&&z| z < lo || z > hi) {
            return Err(Error::unsupported(format!(
                "tensor {} ({:?}, {}) has zero point {z}, outside the type's range {lo}..={hi}",
                t.index,
                t.name,
                t.dtype.name()
            )));
        }
    }
    Ok(TensorInfo { index: t.index, name: t.name.clone(), shape, dtype: t.dtype, quant })
}

/// Activation memory an interpreter may allocate when [`Options::max_arena_bytes`] is 0: 2 GiB
/// (1 GiB on 32-bit targets).
pub(crate) const DEFAULT_MAX_ARENA_BYTES: usize = if usize::BITS > 32 { 1 << 31 } else { 1 << 30 };

/// The activation memory limit of `options`.
pub(crate) fn max_arena_bytes(options: &Options) -> usize {
    if options.max_arena_bytes == 0 {
        DEFAULT_MAX_ARENA_BYTES
    } else {
        // Offsets into tensors are also computed as isize.
        options.max_arena_bytes.min(isize::MAX as usize)
    }
}

/// The byte length of a tensor, or what is wrong when its size overflows or is over `limit`.
fn check_size(t: &TensorInfo, limit: usize) -> std::result::Result<usize, String> {
    let what = || format!("tensor {} ({:?}, {} {:?})", t.index, t.name, t.dtype.name(), t.shape);
    let size = t.checked_byte_len().ok_or_else(|| format!("{}: its size overflows the address space", what()))?;
    if size > limit {
        return Err(format!(
            "{} takes {size} bytes: the model needs at least {size} bytes of activations, more than the limit \
             of {limit} (Options::max_arena_bytes)",
            what()
        ));
    }
    // Kernels compute strides and partial products of shapes: those must fit too when a zero
    // dimension makes the tensor empty.
    let elem = t.dtype.size_bytes().unwrap_or(1).max(1);
    let span = t.shape.iter().try_fold(elem, |n, &d| n.checked_mul(d.max(1)));
    if span.is_none_or(|s| s > limit) {
        return Err(format!(
            "{}: its nonzero dimensions span {} bytes, more than the limit of {limit} (Options::max_arena_bytes)",
            what(),
            span.map_or("more than usize::MAX".to_string(), |s| s.to_string())
        ));
    }
    Ok(size)
}
