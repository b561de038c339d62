//! What the simulated device knows about the programs it runs: the executables registered with
//! it (so that it can check each request against the DMA hints) and the output oracle.

use super::usb::{ExecSink, Violation};
use crate::device::layout;
use crate::device::plan::{self, Source, Step};
use crate::device::usb::frame::Tag;
use crate::package::{Description, ExecutableType, Layer, Package, Position};
use std::sync::{Arc, Mutex, PoisonError};

/// Where the simulated device's output values come from. It cannot execute Edge TPU
/// instructions, so an oracle computes what they would produce.
pub trait Oracle: Send {
    /// Fills `outputs` (dense TFLite bytes of each output layer of the executable, in layer order)
    /// from `inputs` (dense bytes of each input layer, in order). Errors are reported by the
    /// simulator as a device fault.
    fn compute(&mut self, inputs: &[&[u8]], outputs: &mut [Vec<u8>]) -> Result<(), String>;
    /// A short description for logs and CLI output.
    fn describe(&self) -> String;
}

/// Deterministic pseudo-random output bytes (for models without a CPU twin): a function of the
/// seed and the input bytes, so the same inputs always give the same outputs.
#[derive(Debug, Clone)]
pub struct SeededOracle {
    seed: u64,
}

impl SeededOracle {
    /// An oracle whose bytes follow from `seed` and the inputs.
    pub fn new(seed: u64) -> SeededOracle {
        SeededOracle { seed: seed ^ 0x9E37_79B9_7F4A_7C15 }
    }
}

impl Oracle for SeededOracle {
    fn compute(&mut self, inputs: &[&[u8]], outputs: &mut [Vec<u8>]) -> Result<(), String> {
        let mut state = inputs.iter().fold(self.seed, |h, i| fnv(h, i)) | 1;
        for out in outputs {
            for b in out.iter_mut() {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                *b = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "seeded bytes (no CPU twin: output values are not meaningful)".into()
    }
}

/// The CPU twin of a compiled model (the `*_quant.tflite` it was compiled from) run by the CPU
/// interpreter: the executable's input and output layers are the twin's tensors of the same
/// names. When the inputs are the twin's graph inputs the whole twin runs; otherwise (an Edge TPU
/// step in the middle of a model) only the section between those tensors runs.
pub struct CpuTwinOracle {
    interp: crate::cpu::Interpreter,
    /// The twin's graph input index of each layer input, when every layer input is one.
    graph_inputs: Option<Vec<usize>>,
    /// Tensor index of each layer input.
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    path: String,
}

impl CpuTwinOracle {
    /// Prepares the twin `model` for an executable with these input and output layers.
    pub fn new(model: Arc<crate::Model>, inputs: &[Layer], outputs: &[Layer]) -> crate::Result<CpuTwinOracle> {
        let path = model.path().map_or_else(|| "the CPU twin".to_string(), |p| p.display().to_string());
        let sg = model.subgraphs().first().ok_or_else(|| crate::Error::argument(format!("{path} has no subgraph")))?;
        let find = |name: &str| {
            sg.tensors.iter().position(|t| t.name == name).ok_or_else(|| {
                crate::Error::argument(format!(
                    "{path} has no tensor named {name:?}, so it cannot stand in for this executable (is it the \
                     model this one was compiled from?)"
                ))
            })
        };
        let in_idx = inputs.iter().map(|l| find(&l.name)).collect::<crate::Result<Vec<_>>>()?;
        // A `<name>_variable_output` layer is the new value of the twin's variable tensor <name>.
        let out_idx = outputs
            .iter()
            .map(|l| find(l.name.strip_suffix("_variable_output").unwrap_or(&l.name)))
            .collect::<crate::Result<Vec<_>>>()?;
        let graph_inputs: Option<Vec<usize>> = in_idx.iter().map(|&t| sg.inputs.iter().position(|&i| i == t)).collect();
        let mut keep = out_idx.clone();
        keep.extend(&in_idx);
        let options = crate::cpu::Options { threads: 1, keep, ..Default::default() };
        let interp = crate::cpu::Interpreter::new(model, &options)?;
        Ok(CpuTwinOracle { interp, graph_inputs, inputs: in_idx, outputs: out_idx, path })
    }
}

impl Oracle for CpuTwinOracle {
    fn compute(&mut self, inputs: &[&[u8]], outputs: &mut [Vec<u8>]) -> Result<(), String> {
        match &self.graph_inputs {
            Some(positions) => {
                for (&i, bytes) in positions.iter().zip(inputs) {
                    self.interp.set_input(i, bytes).map_err(|e| e.to_string())?;
                }
                self.interp.invoke().map_err(|e| e.to_string())?;
            }
            None => {
                let given: Vec<(usize, &[u8])> = self.inputs.iter().copied().zip(inputs.iter().copied()).collect();
                self.interp.invoke_section(&given, &self.outputs).map_err(|e| e.to_string())?;
            }
        }
        for (&t, out) in self.outputs.iter().zip(outputs.iter_mut()) {
            let v = self.interp.tensor(t).map_err(|e| e.to_string())?;
            if v.len() != out.len() {
                return Err(format!("{}: tensor {t} has {} bytes, the layer {}", self.path, v.len(), out.len()));
            }
            out.copy_from_slice(v);
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("CPU twin {}", self.path)
    }
}

/// 64-bit FNV-1a, to compare parameter streams without keeping them.
pub(crate) fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
pub(crate) const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// One executable as the simulated device knows it.
pub(crate) struct SimExe {
    pub name: String,
    pub kind: ExecutableType,
    pub token: u64,
    /// For an EXECUTION_ONLY executable, the offset (from itself, in the registry) of its
    /// parameter-caching partner, whose parameters must be cached before it runs.
    pub partner: Option<usize>,
    /// Instruction chunks with every linked field zeroed, and the field bit offsets.
    pub chunks: Vec<(Vec<u8>, Vec<usize>)>,
    pub steps: Vec<Step>,
    pub inputs: Vec<Layer>,
    pub outputs: Vec<Layer>,
    pub batch: usize,
    pub param_hash: u64,
    pub instruction_bytes: usize,
    pub oracle: Option<Arc<Mutex<dyn Oracle>>>,
    /// Every linked field: where it is and which buffer's address it holds.
    pub fields: Vec<SimField>,
    /// Bytes of the executable's parameters.
    pub param_len: usize,
}

/// A linked address field of an instruction chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SimField {
    pub chunk: usize,
    pub bit: usize,
    pub upper: bool,
    pub desc: Description,
    /// Buffer index (batch-major) for activations; 0 otherwise.
    pub index: usize,
}

/// Buffer addresses read back from linked instructions.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkedAddresses {
    pub parameters: u64,
    pub scratch: u64,
    pub inputs: Vec<u64>,
    pub outputs: Vec<u64>,
}

impl LinkedAddresses {
    fn slot(&mut self, desc: Description, index: usize) -> &mut u64 {
        let list = match desc {
            Description::Parameter => return &mut self.parameters,
            Description::Scratch => return &mut self.scratch,
            Description::InputActivation => &mut self.inputs,
            Description::OutputActivation => &mut self.outputs,
        };
        if list.len() <= index {
            list.resize(index + 1, 0);
        }
        &mut list[index]
    }
}

fn mask(chunk: &mut [u8], bits: &[usize]) {
    for &b in bits {
        // Field offsets were checked at decode time to lie inside their bitstream.
        let _ = crate::package::write_bits(chunk, b, 0);
    }
}

impl SimExe {
    pub(crate) fn from_package(
        package: &Package<'_>,
        name: &str,
        oracle: Option<Arc<Mutex<dyn Oracle>>>,
    ) -> crate::Result<Vec<SimExe>> {
        let caching = package.parameter_caching().is_some();
        let mut out = Vec::new();
        let exes = package.parameter_caching().into_iter().chain(std::iter::once(package.main()));
        for exe in exes {
            let chunks = exe
                .bitstreams
                .iter()
                .map(|b| {
                    let bits: Vec<usize> = b.field_offsets.iter().map(|f| f.offset_bit).collect();
                    let mut c = b.data.to_vec();
                    mask(&mut c, &bits);
                    (c, bits)
                })
                .collect();
            let is_main = exe.kind != ExecutableType::ParameterCaching;
            let mut fields = Vec::new();
            for (chunk, b) in exe.bitstreams.iter().enumerate() {
                for f in &b.field_offsets {
                    let layers = match f.desc {
                        Description::InputActivation => &exe.input_layers,
                        Description::OutputActivation => &exe.output_layers,
                        _ => {
                            let upper = f.position == Position::Upper32;
                            fields.push(SimField { chunk, bit: f.offset_bit, upper, desc: f.desc, index: 0 });
                            continue;
                        }
                    };
                    if let Some(layer) = layers.iter().position(|l| Some(&l.name) == f.name.as_ref()) {
                        let index = f.batch.saturating_mul(layers.len()).saturating_add(layer);
                        let upper = f.position == Position::Upper32;
                        fields.push(SimField { chunk, bit: f.offset_bit, upper, desc: f.desc, index });
                    }
                }
            }
            out.push(SimExe {
                name: format!("{name} executable {} ({})", exe.index, exe.kind.name()),
                kind: exe.kind,
                token: exe.parameter_caching_token,
                partner: (is_main && caching).then_some(1),
                chunks,
                steps: plan::plan(exe)?,
                inputs: exe.input_layers.clone(),
                outputs: exe.output_layers.clone(),
                batch: exe.batch_size.max(1),
                param_hash: fnv(FNV0, exe.parameters),
                instruction_bytes: exe.bitstreams.iter().map(|b| b.data.len()).sum(),
                oracle: if is_main { oracle.clone() } else { None },
                fields,
                param_len: exe.parameters.len(),
            });
        }
        Ok(out)
    }

    /// Whether linked chunk `i` is this executable's chunk `i` (fields masked).
    pub(crate) fn chunk_matches(&self, i: usize, linked: &mut [u8]) -> bool {
        let Some((want, bits)) = self.chunks.get(i) else { return false };
        if want.len() != linked.len() {
            return false;
        }
        mask(linked, bits);
        want == linked
    }

    /// Reads the buffer addresses linked into received chunk `chunk` into `addr`.
    pub(crate) fn read_addresses(&self, chunk: usize, linked: &[u8], addr: &mut LinkedAddresses) {
        for f in self.fields.iter().filter(|f| f.chunk == chunk) {
            let Ok(v) = crate::package::read_bits(linked, f.bit) else { continue };
            let slot = addr.slot(f.desc, f.index);
            *slot = if f.upper { (*slot & 0xFFFF_FFFF) | (v as u64) << 32 } else { (*slot & !0xFFFF_FFFF) | v as u64 };
        }
    }

    /// Bytes of one padded buffer of input layer `index` (batch-major).
    pub(crate) fn input_len(&self, index: usize) -> usize {
        self.inputs.get(index % self.inputs.len().max(1)).map_or(0, Self::layer_bytes)
    }

    fn layer_bytes(l: &Layer) -> usize {
        l.size_bytes * l.execution_count.max(1)
    }

    /// Padded input buffers, one per (batch, layer).
    pub(crate) fn input_buffers(&self) -> Vec<Vec<u8>> {
        (0..self.batch).flat_map(|_| self.inputs.iter().map(|l| zeroed(Self::layer_bytes(l)))).collect()
    }

    /// Runs the oracle on the received inputs and returns the padded device output buffers, one
    /// per (batch, layer).
    pub(crate) fn compute(&self, inputs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
        let mut device_out = Pooled::default();
        for b in 0..self.batch {
            let (mut padded, mut dense_in) = (Pooled::default(), Pooled::default());
            for (k, l) in self.inputs.iter().enumerate() {
                let n = l.num_elements() * l.data_type.size_bytes() * l.execution_count.max(1);
                // What the chip reads: offset-binary values where the host flipped them (the
                // first y·x·z elements), each iteration of an iterative layer at its multiple of
                // the padded size.
                let given = &inputs[b * self.inputs.len() + k];
                let mut p = spare(given.len());
                p.extend_from_slice(given);
                layout::flip_signed_layer(l, &mut p);
                let mut d = spare(n);
                layout::gather_input(l, &p, n, &mut d);
                padded.0.push(p);
                dense_in.0.push(d);
            }
            let mut dense_out = Pooled(
                self.outputs
                    .iter()
                    .map(|l| zeroed(l.num_elements() * l.data_type.size_bytes() * l.execution_count.max(1)))
                    .collect(),
            );
            let oracle = self.oracle.as_ref().ok_or("this executable has no output oracle")?;
            let refs: Vec<&[u8]> = dense_in.0.iter().map(|v| v.as_slice()).collect();
            oracle.lock().map_err(|_| "the oracle panicked earlier")?.compute(&refs, &mut dense_out.0)?;
            for (l, d) in self.outputs.iter().zip(&mut dense_out.0) {
                let mut dev = zeroed(Self::layer_bytes(l));
                layout::flip_signed_layer(l, d);
                layout::output_to_device(l, d, &mut dev).map_err(|e| e.to_string())?;
                device_out.0.push(dev);
            }
        }
        Ok(std::mem::take(&mut device_out.0))
    }
}

/// Buffers that go back to the pool ([`recycle`]) when dropped, on every path out of a run.
#[derive(Default)]
pub(crate) struct Pooled(pub Vec<Vec<u8>>);

impl Drop for Pooled {
    fn drop(&mut self) {
        self.0.drain(..).for_each(recycle);
    }
}

/// Buffers of finished simulated runs, kept for the next runs. A run needs a few buffers the size
/// of its inputs and outputs; freed after every run, they let glibc hand the top of a small heap
/// back to the kernel and fault it in again at the next run (about 0.4 ms per run of a 300x300x3
/// SSD segment), a cost the host of a real chip does not pay.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// At most this many buffers are kept.
const MAX_SPARE: usize = 32;

/// An empty buffer with room for `len` bytes: the smallest spare one that fits, or a new one.
pub(crate) fn spare(len: usize) -> Vec<u8> {
    let mut pool = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let best = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
    match best.map(|(i, _)| i) {
        Some(i) => {
            let mut b = pool.swap_remove(i);
            b.clear();
            b
        }
        None => Vec::with_capacity(len),
    }
}

/// `len` zero bytes, in a spare buffer where one fits.
pub(crate) fn zeroed(len: usize) -> Vec<u8> {
    let mut b = spare(len);
    b.resize(len, 0);
    b
}

/// Keeps `buf` for a later run; when the pool is full, the smallest buffer goes.
pub(crate) fn recycle(buf: Vec<u8>) {
    if buf.capacity() < 4096 {
        return;
    }
    let mut pool = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < MAX_SPARE {
        pool.push(buf);
    } else if let Some((i, _)) = pool.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
        if pool[i].capacity() < buf.capacity() {
            pool[i] = buf;
        }
    }
}

/// Progress of one run on the simulated device.
pub(crate) struct Run {
    pub exe: usize,
    /// Index of the next step.
    pub step: usize,
    /// The request being received: (tag, total, received so far).
    pub receiving: Option<(Tag, usize, usize)>,
    pub instr: Vec<u8>,
    pub inputs: Vec<Vec<u8>>,
    pub outputs: Option<Vec<Vec<u8>>>,
    pub param_hash: u64,
    pub identified: bool,
    /// Buffer addresses read from the linked instructions.
    pub addr: LinkedAddresses,
}

impl Run {
    /// A run of executable `exe` (whose instructions take `instruction_bytes`) into `inputs`.
    pub(crate) fn new(exe: usize, instruction_bytes: usize, inputs: Vec<Vec<u8>>) -> Run {
        Run {
            exe,
            step: 0,
            receiving: None,
            instr: spare(instruction_bytes),
            inputs,
            outputs: None,
            param_hash: FNV0,
            identified: false,
            addr: LinkedAddresses::default(),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.instr));
        self.inputs.drain(..).chain(self.outputs.take().into_iter().flatten()).for_each(recycle);
    }
}

/// Handles the payload bytes of the request step `step` of `exe`.
pub(crate) fn absorb(exe: &SimExe, run: &mut Run, step: &Step, at: usize, data: &[u8]) {
    if let Step::BulkOut { source, .. } = step {
        match source {
            Source::Instructions { .. } => run.instr.extend_from_slice(data),
            Source::Input { layer, batch, offset } => {
                let k = batch.saturating_mul(exe.inputs.len()).saturating_add(*layer);
                if let Some(buf) = run.inputs.get_mut(k) {
                    let start = (offset + at).min(buf.len());
                    let end = (start + data.len()).min(buf.len());
                    buf[start..end].copy_from_slice(&data[..end - start]);
                }
            }
            Source::Parameters { .. } => run.param_hash = fnv(run.param_hash, data),
            Source::Scratch { .. } => {}
        }
    }
}

/// Announces a completed hinted request as the chip does while `descr_ep` enables its tag: a
/// descriptor with the buffer's linked address and the length. Instructions are never announced.
pub(crate) fn announce(exe: &SimExe, run: &Run, step: &Step, sink: &mut dyn ExecSink) {
    let Step::BulkOut { tag, size, source, .. } = step else { return };
    if *tag == Tag::Instructions || !sink.reports(*tag) {
        return;
    }
    let address = match source {
        Source::Instructions { .. } => return,
        Source::Input { layer, batch, offset } => {
            let k = batch.saturating_mul(exe.inputs.len()).saturating_add(*layer);
            run.addr.inputs.get(k).copied().unwrap_or(0).wrapping_add(*offset as u64)
        }
        Source::Parameters { offset } => run.addr.parameters.wrapping_add(*offset as u64),
        Source::Scratch { offset } => run.addr.scratch.wrapping_add(*offset as u64),
    };
    sink.descriptor(*tag, address, *size);
}

/// Runs the device-side steps (outputs, interrupts, fences) that follow the last completed
/// request, until the next request step or the end.
pub(crate) fn device_steps(exe: &SimExe, run: &mut Run, sink: &mut dyn ExecSink) -> Result<(), Violation> {
    while let Some(step) = exe.steps.get(run.step) {
        match step {
            Step::BulkOut { .. } => return Ok(()),
            Step::BulkIn { layer, batch, offset, size } => {
                if run.outputs.is_none() {
                    sink.compute_time(exe.instruction_bytes);
                    let outs = exe.compute(&run.inputs).map_err(|e| Violation::fault(format!("{}: {e}", exe.name)))?;
                    run.outputs = Some(outs);
                }
                let outs = run.outputs.as_deref().unwrap_or_default();
                if sink.reports(Tag::OutputActivations) {
                    // Hinted outputs are announced too while descriptors are on.
                    let base = if *layer == usize::MAX {
                        run.addr.scratch
                    } else {
                        let k = batch.saturating_mul(exe.outputs.len()).saturating_add(*layer);
                        run.addr.outputs.get(k).copied().unwrap_or(0)
                    };
                    sink.descriptor(Tag::OutputActivations, base.wrapping_add(*offset as u64), *size);
                }
                if *layer == usize::MAX {
                    sink.output(&vec![0u8; *size]);
                } else {
                    let k = batch.saturating_mul(exe.outputs.len()).saturating_add(*layer);
                    let buf = outs.get(k).ok_or_else(|| {
                        Violation::fault(format!("{}: an output hint names batch {batch}, layer {layer}", exe.name))
                    })?;
                    let end = (offset + size).min(buf.len());
                    let start = (*offset).min(end);
                    sink.output(&buf[start..end]);
                    if end - start < *size {
                        sink.output(&vec![0u8; size - (end - start)]);
                    }
                }
            }
            Step::WaitInterrupt { number } => sink.event(Tag::Interrupt(*number)),
            Step::Fence => {}
            Step::DeviceDriven => {
                // Outputs the hints do not name: each announced by a descriptor with the
                // address the instructions were linked with, then the completion interrupt.
                if !sink.reports(Tag::OutputActivations) {
                    return Err(Violation::host(format!(
                        "{}: its DMA hints are not fully deterministic, so its outputs are announced by descriptors, \
                         but descr_ep does not enable output descriptors (the host would wait forever)",
                        exe.name
                    )));
                }
                if run.outputs.is_none() {
                    sink.compute_time(exe.instruction_bytes);
                    let outs = exe.compute(&run.inputs).map_err(|e| Violation::fault(format!("{}: {e}", exe.name)))?;
                    run.outputs = Some(outs);
                }
                for (k, buf) in run.outputs.as_deref().unwrap_or_default().iter().enumerate() {
                    let address = run.addr.outputs.get(k).copied().unwrap_or(0);
                    sink.descriptor(Tag::OutputActivations, address, buf.len());
                    sink.output(buf);
                }
                sink.event(Tag::Interrupt(0));
            }
        }
        run.step += 1;
    }
    Ok(())
}
