//! The interpreter's delegate: matches each `edgetpu-custom-op` to its executable's layers,
//! prepares a program for every device, and runs the step on the caller's thread through the
//! queue ([`super::queue`]), reading inputs straight from the interpreter's arena and writing
//! outputs straight into it.

use super::queue::{lock, Grant, Shared, StepMeta};
use crate::cpu::{Delegate, DelegateIo, DelegateStep};
use crate::device::program::Program;
use crate::error::{Error, Result};
use crate::model::{Model, Operator};
use crate::package::{Layer, Package};
use std::sync::{Arc, Mutex};

/// Most inputs or outputs of one Edge TPU step.
const MAX_TENSORS: usize = 32;

/// Prepares each Edge TPU step for every device of a runtime.
pub(crate) struct TpuDelegate {
    pub shared: Arc<Shared>,
    /// The device every step must run on (pipeline stages).
    pub device: Option<usize>,
}

impl std::fmt::Debug for TpuDelegate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpuDelegate").field("devices", &self.shared.names).field("device", &self.device).finish()
    }
}

/// How the custom op's tensors map to the executable's layers.
struct Wiring {
    /// Input layers of the executable.
    n_in: usize,
    /// The output layer of each of the op's outputs.
    out_map: Vec<usize>,
    /// (output layer, input position): output layers named `<input>_variable_output` carry the
    /// new value of that input (a variable tensor: recurrent state), written back after each run.
    writeback: Vec<(usize, usize)>,
}

fn wire(model: &Model, subgraph: usize, op: &Operator, package: &Package<'_>) -> Result<Wiring> {
    let sg = model
        .subgraphs()
        .get(subgraph)
        .ok_or_else(|| Error::argument(format!("subgraph {subgraph} does not exist")))?;
    let exe = package.main();
    // The custom op's tensors are the executable's layers, by position and size.
    let tensor = |t: Option<usize>| t.and_then(|t| sg.tensors.get(t));
    let dense = |l: &Layer| l.num_elements() * l.execution_count.max(1);
    let fail = |what: String| Error::unsupported(format!("the Edge TPU step at operator {}: {what}", op.index));
    let mut out_map = Vec::new();
    let mut writeback = Vec::new();
    for (i, l) in exe.output_layers.iter().enumerate() {
        let Some(base) = l.name.strip_suffix("_variable_output") else {
            out_map.push(i);
            continue;
        };
        let k = exe.input_layers.iter().position(|x| x.name == base).ok_or_else(|| {
            fail(format!("output layer {:?} writes back into input layer {base:?}, which does not exist", l.name))
        })?;
        let into = &exe.input_layers[k];
        if !tensor(op.inputs.get(k).copied().flatten()).is_some_and(|t| t.is_variable) {
            return Err(fail(format!(
                "output layer {:?} writes back into input {k}, which is not a variable tensor",
                l.name
            )));
        }
        if dense(l) != dense(into) || l.data_type.size_bytes() != into.data_type.size_bytes() {
            return Err(fail(format!("output layer {:?} and its input layer {base:?} differ in size", l.name)));
        }
        writeback.push((i, k));
    }
    let out_layers: Vec<_> = out_map.iter().map(|&i| exe.output_layers[i].clone()).collect();
    for (what, tensors, layers) in [("input", &op.inputs, &exe.input_layers), ("output", &op.outputs, &out_layers)] {
        if tensors.len() != layers.len() {
            return Err(fail(format!(
                "it has {} {what}s but its executable {} {what} layers",
                tensors.len(),
                layers.len()
            )));
        }
        for (k, (t, l)) in tensors.iter().zip(layers).enumerate() {
            let n = dense(l);
            let have = tensor(*t).map(|t| t.num_elements());
            if have != Some(n) {
                return Err(fail(format!("{what} {k} has {have:?} elements, its layer {:?} {n}", l.name)));
            }
        }
    }
    if exe.input_layers.len() > MAX_TENSORS || exe.output_layers.len() > MAX_TENSORS {
        return Err(fail(format!("more than {MAX_TENSORS} inputs or outputs")));
    }
    Ok(Wiring { n_in: exe.input_layers.len(), out_map, writeback })
}

impl Delegate for TpuDelegate {
    fn prepare(&self, model: &Arc<Model>, subgraph: usize, op: &Operator) -> Result<Box<dyn DelegateStep>> {
        let sg = model
            .subgraphs()
            .get(subgraph)
            .ok_or_else(|| Error::argument(format!("subgraph {subgraph} does not exist")))?;
        let package = Package::decode(model, sg, op)?;
        let wiring = wire(model, subgraph, op, &package)?;
        let programs = (0..self.shared.len())
            .map(|d| self.shared.with_device(d, |acc| acc.prepare(model, &package)).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let first = lock(&programs[0]);
        let (token, key) = (first.token, first.caching_key);
        let state =
            wiring.writeback.iter().map(|&(i, _)| vec![0u8; first.output_sizes().nth(i).unwrap_or(0)]).collect();
        drop(first);
        // Models whose cached parameters fit on the chip are pinned to a device, round-robin in
        // the order they are first seen (co-compiled models, one token, share one); others have
        // no preferred device.
        let affinity =
            if package.fits_on_chip() { self.shared.pin(if token != 0 { token } else { key }) } else { usize::MAX };
        let name = format!(
            "{} operator {}",
            model.path().map_or_else(|| "model".to_string(), |p| p.display().to_string()),
            op.index
        );
        Ok(Box::new(StepHandle {
            shared: self.shared.clone(),
            meta: Arc::new(StepMeta { name, token, key, affinity, pinned: self.device }),
            grant: Arc::default(),
            programs,
            run: Mutex::new(RunState { state }),
            wiring,
        }))
    }
}

/// What one run of a step borrows exclusively.
struct RunState {
    /// The new recurrent state of each write-back layer, until it is copied into its input.
    state: Vec<Vec<u8>>,
}

struct StepHandle {
    shared: Arc<Shared>,
    meta: Arc<StepMeta>,
    grant: Arc<Grant>,
    /// One prepared program per device.
    programs: Vec<Mutex<Program>>,
    /// Held for a whole run, so that runs of one step (which share its grant and programs) never
    /// overlap.
    run: Mutex<RunState>,
    wiring: Wiring,
}

impl DelegateStep for StepHandle {
    fn run(&self, io: &mut DelegateIo<'_, '_>) -> Result<()> {
        let mut run = lock(&self.run);
        let RunState { state } = &mut *run;
        let state_at = |k: usize| io.state_inputs.iter().position(|&s| s == k);
        let n_in = self.wiring.n_in;
        let n_out = self.wiring.out_map.len() + self.wiring.writeback.len();
        {
            let mut ins: [&[u8]; MAX_TENSORS] = [&[]; MAX_TENSORS];
            for (k, slot) in ins.iter_mut().enumerate().take(n_in) {
                *slot = match state_at(k) {
                    Some(p) => io.state.get(p).map_or(&[], |s| &**s),
                    None => io.inputs.get(k).copied().unwrap_or(&[]),
                };
            }
            let mut outs: [&mut [u8]; MAX_TENSORS] = Default::default();
            for (dst, &layer) in io.outputs.iter_mut().zip(&self.wiring.out_map) {
                outs[layer] = dst;
            }
            for (buf, &(layer, _)) in state.iter_mut().zip(&self.wiring.writeback) {
                outs[layer] = buf;
            }
            self.shared.run(&self.meta, &self.grant, &self.programs, &ins[..n_in], &mut outs[..n_out])?;
        }
        for (buf, &(_, k)) in state.iter().zip(&self.wiring.writeback) {
            if let Some(dst) = state_at(k).and_then(|p| io.state.get_mut(p)) {
                if dst.len() != buf.len() {
                    return Err(Error::argument(format!(
                        "{}: state input {k} has {} bytes, its layer {}",
                        self.meta.name,
                        dst.len(),
                        buf.len()
                    )));
                }
                dst.copy_from_slice(buf);
            }
        }
        Ok(())
    }
}
