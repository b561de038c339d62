//! A compiled model's executables prepared for a device: transfer plans, padded input and
//! output buffers, and instruction bitstreams linked once with the buffers' addresses.
//!
//! Over USB the device never dereferences the addresses in the instructions: the data arrives in
//! hint order (libedgetpu links in host virtual addresses, which the chip cannot reach). The
//! runtime links in fixed, distinct, page-aligned addresses in the shape of user-space ones
//! ([`USB_ADDRESS_BASE`] + k·2³² for the k-th buffer), so the bitstreams are linked once here,
//! not per inference, and a session is byte-for-byte reproducible (recorded traces replay).

use super::layout;
use super::plan::{self as usb_plan, Source, Step};
use crate::error::{Error, Result};
use crate::package::{BufferAddresses, Executable, ExecutableType, FieldOffset, Layer, Package, Position};
use crate::Model;
use std::ops::Range;
use std::sync::Arc;

/// Base of the addresses linked into instructions sent over USB (a user-space-like address).
pub const USB_ADDRESS_BASE: u64 = 0x0000_7f00_0000_0000;

/// One executable's buffers.
#[derive(Debug)]
pub struct PreparedExecutable {
    /// Index in the package's multi-executable.
    pub index: usize,
    /// Type.
    pub kind: ExecutableType,
    /// The transfers of one run.
    pub steps: Vec<Step>,
    /// Linked instruction bitstreams.
    pub linked: Vec<Vec<u8>>,
    /// Padded input buffers, one per (batch, input layer).
    pub inputs: Vec<Vec<u8>>,
    /// Padded output buffers, one per (batch, output layer).
    pub outputs: Vec<Vec<u8>>,
    /// Scratch buffer.
    pub scratch: Vec<u8>,
    /// Input layers per batch.
    pub input_layers: usize,
    /// Output layers per batch.
    pub output_layers: usize,
    /// Where the executable's parameters are in the model file.
    pub parameters: Range<usize>,
    /// The addresses linked into the instructions, by which the device names a buffer when it
    /// drives the transfers itself ([`Step::DeviceDriven`]).
    pub addresses: BufferAddresses,
    /// The field offsets of each instruction chunk, to link them again with other addresses
    /// (the PCIe path links in real device addresses).
    pub fields: Vec<Vec<FieldOffset>>,
    /// Per input layer: whether the caller's dense bytes are exactly what the device takes (no
    /// padding, no sign flip, one iteration, batch 1, hint-driven), so a transfer can send them
    /// straight from the caller's buffer instead of a copy in [`Self::inputs`].
    pub direct_inputs: Vec<bool>,
    /// Per step: a hinted transfer or interrupt the device has not announced yet (state of the
    /// run in progress, kept here so that a run allocates nothing).
    pub pending: Vec<bool>,
}

/// A buffer of an executable named by a device-side address ([`PreparedExecutable::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`PreparedExecutable::inputs`]`[index]`, from `offset`.
    Input {
        /// Buffer index.
        index: usize,
        /// Byte offset.
        offset: usize,
    },
    /// [`PreparedExecutable::outputs`]`[index]`, from `offset`.
    Output {
        /// Buffer index.
        index: usize,
        /// Byte offset.
        offset: usize,
    },
    /// The parameters, from `offset`.
    Parameters {
        /// Byte offset.
        offset: usize,
    },
    /// The scratch buffer, from `offset`.
    Scratch {
        /// Byte offset.
        offset: usize,
    },
}

impl PreparedExecutable {
    /// Index of (batch, layer) in [`Self::inputs`].
    pub fn input_index(&self, layer: usize, batch: usize) -> usize {
        batch.saturating_mul(self.input_layers).saturating_add(layer)
    }
    /// Index of (batch, layer) in [`Self::outputs`].
    pub fn output_index(&self, layer: usize, batch: usize) -> usize {
        batch.saturating_mul(self.output_layers).saturating_add(layer)
    }

    /// The instruction chunks linked with `addresses` instead of the USB tags (every field is
    /// rewritten, so relinking a linked chunk gives the same bytes as linking the original).
    pub fn relink(&self, addresses: &BufferAddresses) -> Result<Vec<Vec<u8>>> {
        let mut out = self.linked.clone();
        for (chunk, fields) in out.iter_mut().zip(&self.fields) {
            for f in fields {
                if let Some(a) = addresses.resolve(f)? {
                    let half = match f.position {
                        Position::Lower32 => a as u32,
                        Position::Upper32 => (a >> 32) as u32,
                    };
                    crate::package::write_bits(chunk, f.offset_bit, half)?;
                }
            }
        }
        Ok(out)
    }

    /// The buffer holding `length` bytes at device address `address`, when they lie inside one
    /// (`None` otherwise: the device asked for something this executable does not have).
    pub fn resolve(&self, address: u64, length: usize) -> Option<Target> {
        let within = |base: u64, len: usize| {
            let offset = usize::try_from(address.checked_sub(base)?).ok()?;
            (offset.checked_add(length)? <= len).then_some(offset)
        };
        let a = &self.addresses;
        if let Some(offset) = a.parameters.and_then(|b| within(b, self.parameters.len())) {
            return Some(Target::Parameters { offset });
        }
        if let Some(offset) = a.scratch.and_then(|b| within(b, self.scratch.len())) {
            return Some(Target::Scratch { offset });
        }
        // Addresses are listed batch-major in layer order, as the buffers are.
        for (index, (_, _, base)) in a.inputs.iter().enumerate() {
            if let Some(offset) = self.inputs.get(index).and_then(|b| within(*base, b.len())) {
                return Some(Target::Input { index, offset });
            }
        }
        for (index, (_, _, base)) in a.outputs.iter().enumerate() {
            if let Some(offset) = self.outputs.get(index).and_then(|b| within(*base, b.len())) {
                return Some(Target::Output { index, offset });
            }
        }
        None
    }
}

fn layer_bytes(l: &crate::package::Layer) -> usize {
    l.size_bytes.saturating_mul(l.execution_count.max(1))
}

impl PreparedExecutable {
    /// Plans and links `exe`.
    pub fn new(exe: &Executable<'_>) -> Result<PreparedExecutable> {
        let steps = usb_plan::plan(exe)?;
        let batch = exe.batch_size.max(1);
        let inputs: Vec<Vec<u8>> =
            (0..batch).flat_map(|_| exe.input_layers.iter().map(|l| vec![0u8; layer_bytes(l)])).collect();
        let outputs: Vec<Vec<u8>> =
            (0..batch).flat_map(|_| exe.output_layers.iter().map(|l| vec![0u8; layer_bytes(l)])).collect();
        let scratch = vec![0u8; exe.scratch_size_bytes.saturating_mul(batch)];
        let addresses = exe.tag_addresses(USB_ADDRESS_BASE);
        let linked = exe.link(&addresses)?;
        let hinted = !usb_plan::device_driven(&steps) && batch == 1;
        let direct_inputs = exe
            .input_layers
            .iter()
            .map(|l| {
                hinted
                    && l.execution_count <= 1
                    && !l.data_type.is_signed_fixed_point()
                    && dense_len(l) == layer_bytes(l)
            })
            .collect();
        let p = PreparedExecutable {
            pending: vec![false; steps.len()],
            direct_inputs,
            index: exe.index,
            kind: exe.kind,
            steps,
            linked,
            inputs,
            outputs,
            scratch,
            input_layers: exe.input_layers.len(),
            output_layers: exe.output_layers.len(),
            parameters: exe.parameters_offset..exe.parameters_offset + exe.parameters.len(),
            addresses,
            fields: exe.bitstreams.iter().map(|b| b.field_offsets.clone()).collect(),
        };
        p.check(exe)?;
        Ok(p)
    }

    /// Checks every step's byte range against its buffer once, so that runs cannot fail on it.
    fn check(&self, exe: &Executable<'_>) -> Result<()> {
        for (i, s) in self.steps.iter().enumerate() {
            let (len, offset, size, what) = match s {
                Step::BulkOut { size, source, .. } => match source {
                    Source::Instructions { chunk } => (self.linked[*chunk].len(), 0, *size, "instructions"),
                    Source::Input { layer, batch, offset } => (
                        self.inputs.get(self.input_index(*layer, *batch)).map_or(0, |b| b.len()),
                        *offset,
                        *size,
                        "input",
                    ),
                    Source::Parameters { offset } => (exe.parameters.len(), *offset, *size, "parameters"),
                    Source::Scratch { offset } => (self.scratch.len(), *offset, *size, "scratch"),
                },
                Step::BulkIn { layer, batch, offset, size } => {
                    let len = if *layer == usize::MAX {
                        self.scratch.len()
                    } else {
                        self.outputs.get(self.output_index(*layer, *batch)).map_or(0, |b| b.len())
                    };
                    (len, *offset, *size, "output")
                }
                _ => continue,
            };
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(Error::invalid(
                    exe.offset,
                    format!("executables[{}].dma_hints.hints[{i}]", exe.index),
                    format!("the hint covers bytes {offset}..+{size} of a {len}-byte {what} buffer"),
                ));
            }
        }
        Ok(())
    }
}

/// Every executable of a package, prepared, with the model they come from.
#[derive(Debug)]
pub struct Program {
    model: Arc<Model>,
    /// Unique among the programs of this process (devices key their per-program state by it).
    pub id: u64,
    /// The parameter-caching executable, if the package has one.
    pub caching: Option<PreparedExecutable>,
    /// The executable that runs inferences.
    pub main: PreparedExecutable,
    /// The package's caching token (0: none).
    pub token: u64,
    /// Identifies the parameter-caching executable (a hash of its instructions and parameters):
    /// co-compiled models share a token but each caches its own parameters.
    pub caching_key: u64,
    /// The main executable's input layers, in the custom op's input order.
    pub inputs: Vec<Layer>,
    /// The main executable's output layers, in the custom op's output order.
    pub outputs: Vec<Layer>,
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn dense_len(l: &Layer) -> usize {
    l.num_elements() * l.data_type.size_bytes() * l.execution_count.max(1)
}

impl Program {
    /// Prepares `package`, which must have been decoded from `model`.
    pub fn new(model: &Arc<Model>, package: &Package<'_>) -> Result<Program> {
        package.ensure_runnable()?;
        let bytes = model.bytes();
        for exe in package.parameter_caching().into_iter().chain([package.main()]) {
            let r = exe.parameters_offset..exe.parameters_offset + exe.parameters.len();
            if bytes.get(r.clone()).is_none_or(|b| b.as_ptr() != exe.parameters.as_ptr()) {
                return Err(Error::argument("the package was not decoded from this model"));
            }
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Program {
            model: model.clone(),
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            caching: package.parameter_caching().map(PreparedExecutable::new).transpose()?,
            main: PreparedExecutable::new(package.main())?,
            token: package.caching_token(),
            caching_key: package.parameter_caching().map_or(0, |e| {
                let h = e.bitstreams.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| fnv(b.data, h));
                fnv(&(e.parameters.len() as u64).to_le_bytes(), fnv(e.parameters, h))
            }),
            inputs: package.main().input_layers.clone(),
            outputs: package.main().output_layers.clone(),
        })
    }

    /// Prepares the only Edge TPU package of `model`.
    pub fn for_model(model: &Arc<Model>) -> Result<Program> {
        let pkgs = Package::all(model)?;
        match pkgs.as_slice() {
            [one] => Program::new(model, one),
            _ => Err(Error::argument(format!(
                "the model has {} Edge TPU steps; prepare each with Program::new",
                pkgs.len()
            ))),
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Dense byte size of each input (custom op input order).
    pub fn input_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().map(dense_len)
    }

    /// Whether one of its executables is driven by the device (DMA hints not fully
    /// deterministic), so the device's DMA descriptors must be on.
    pub fn device_driven(&self) -> bool {
        self.caching.iter().chain([&self.main]).any(|e| usb_plan::device_driven(&e.steps))
    }

    /// Dense byte size of each output (custom op output order).
    pub fn output_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.outputs.iter().map(dense_len)
    }

    /// Copies dense inputs (one per input layer of batch 0, in layer order) into the padded
    /// buffers, flipping the MSB of signed layers.
    pub fn set_inputs(&mut self, inputs: &[&[u8]]) -> Result<()> {
        self.stage_inputs(inputs, false)
    }

    /// Checks the dense inputs and copies those into the padded buffers that the transfers
    /// cannot send straight from the caller's memory ([`PreparedExecutable::direct_inputs`]);
    /// with `direct` false, copies them all.
    pub fn stage_inputs(&mut self, inputs: &[&[u8]], direct: bool) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::argument(format!(
                "{} inputs given, the executable has {} ({})",
                inputs.len(),
                self.inputs.len(),
                self.inputs.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let main = &mut self.main;
        for (k, ((l, buf), data)) in self.inputs.iter().zip(main.inputs.iter_mut()).zip(inputs).enumerate() {
            let want = dense_len(l);
            if data.len() != want {
                return Err(Error::argument(format!(
                    "input {:?} has {} bytes, the layer takes {want}",
                    l.name,
                    data.len()
                )));
            }
            if direct && main.direct_inputs.get(k) == Some(&true) {
                continue;
            }
            layout::scatter_input(l, data, buf);
            layout::flip_signed_layer(l, buf);
        }
        Ok(())
    }

    /// Re-lays-out the padded device outputs into dense tensors (one per output layer of batch
    /// 0), flipping the MSB of signed layers.
    pub fn get_outputs(&mut self, outputs: &mut [&mut [u8]]) -> Result<()> {
        if outputs.len() != self.outputs.len() {
            return Err(Error::argument(format!(
                "{} output buffers given, the executable has {} outputs",
                outputs.len(),
                self.outputs.len()
            )));
        }
        for ((l, buf), out) in self.outputs.iter().zip(self.main.outputs.iter_mut()).zip(outputs.iter_mut()) {
            layout::output_from_device(l, buf, out)?;
            layout::flip_signed_layer(l, out);
        }
        Ok(())
    }
}
