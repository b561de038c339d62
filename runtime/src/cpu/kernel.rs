//! What a kernel is: built once from an operator's resolved tensors, then run many times on
//! borrowed byte slices without allocating.

use super::par::Par;
use crate::error::{Error, Result};
use crate::model::{OpOptions, TensorType};

/// Quantization parameters of a tensor (`real = scale * (q - zero_point)`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    /// One scale per tensor, or one per channel along `axis`.
    pub scale: Vec<f32>,
    /// Zero points, as many as scales.
    pub zero_point: Vec<i32>,
    /// Channel axis of per-channel quantization.
    pub axis: usize,
}

impl QuantParams {
    /// The per-tensor scale (the first one).
    pub fn scale(&self) -> f32 {
        self.scale[0]
    }
    /// The per-tensor zero point (the first one, 0 if none).
    pub fn zero_point(&self) -> i32 {
        self.zero_point.first().copied().unwrap_or(0)
    }
}

/// Type, shape and quantization of one tensor, as the plan resolved it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor index in the subgraph.
    pub index: usize,
    /// Tensor name.
    pub name: String,
    /// Resolved shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: TensorType,
    /// Quantization, if any.
    pub quant: Option<QuantParams>,
}

impl TensorInfo {
    /// Number of elements. The plan checks that every tensor's size fits in `usize`; a shape that
    /// does not (possible only before planning) saturates instead of overflowing.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }
    /// Size in bytes (saturating like [`TensorInfo::num_elements`]).
    pub fn byte_len(&self) -> usize {
        self.num_elements().saturating_mul(self.dtype.size_bytes().unwrap_or(0))
    }
    /// Size in bytes, or `None` when the element count or byte length overflows `usize`.
    pub fn checked_byte_len(&self) -> Option<usize> {
        let n = self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
        n.checked_mul(self.dtype.size_bytes().unwrap_or(0))
    }
    /// Per-tensor scale and zero point, or an error naming the tensor.
    pub(crate) fn qparams(&self) -> Result<(f32, i32)> {
        match &self.quant {
            Some(q) => Ok((q.scale(), q.zero_point())),
            None => Err(Error::unsupported(format!(
                "tensor {} ({:?}, {}) has no quantization parameters, but the op needs them",
                self.index,
                self.name,
                self.dtype.name()
            ))),
        }
    }
}

/// Everything a kernel builder may look at.
pub(crate) struct BuildCtx<'m> {
    /// Operator name (builtin name or custom code).
    pub op_name: &'m str,
    /// Operator version from the file.
    pub version: i32,
    /// Node index in the subgraph.
    pub node: usize,
    /// Decoded builtin options.
    pub options: &'m OpOptions,
    /// Custom options bytes, for custom ops.
    pub custom_options: Option<&'m [u8]>,
    /// Resolved inputs (`None` for omitted optional inputs).
    pub inputs: Vec<Option<TensorInfo>>,
    /// Constant data of each input, when the input is constant.
    pub constants: Vec<Option<&'m [u8]>>,
    /// Outputs; builders set shapes the file leaves empty or that depend on inputs.
    pub outputs: Vec<TensorInfo>,
    /// Intermediate tensors of the operator (`Operator::intermediates`; LSTM quantization scales).
    pub intermediates: Vec<TensorInfo>,
    /// Use the reference kernel even when a fast one exists.
    pub reference: bool,
    /// The CPU has the 8-bit dot-product instructions (AVX-512 VNNI, or dotprod on aarch64) the
    /// fast kernels may use.
    pub vnni: bool,
    /// Threads the interpreter runs the kernels on (a kernel may lay its data out for them).
    pub threads: usize,
}

impl<'m> BuildCtx<'m> {
    /// Input `i`, or an error naming the op.
    pub fn input(&self, i: usize) -> Result<&TensorInfo> {
        self.inputs.get(i).and_then(|t| t.as_ref()).ok_or_else(|| self.err(format!("input {i} is missing")))
    }
    /// Output `i`, or an error naming the op.
    pub fn output(&self, i: usize) -> Result<&TensorInfo> {
        self.outputs.get(i).ok_or_else(|| self.err(format!("output {i} is missing")))
    }
    /// Constant data of input `i`, or an error saying it must be constant.
    pub fn constant(&self, i: usize) -> Result<&'m [u8]> {
        self.constants
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.err(format!("input {i} must be a constant tensor in this runtime")))
    }
    /// Constant data of input `i` as i32 values (little-endian), if it is constant.
    pub fn constant_i32(&self, i: usize) -> Result<Vec<i32>> {
        Ok(self.constant(i)?.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    /// An error about this node: names the op, version, node and tensor types.
    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::unsupported(format!("{} (node {}): {what}", self.describe(), self.node))
    }
    /// `OP/vN [in types -> out types]`.
    pub fn describe(&self) -> String {
        let ty = |t: &Option<TensorInfo>| t.as_ref().map_or("none".to_string(), |t| t.dtype.name());
        let ins: Vec<String> = self.inputs.iter().map(ty).collect();
        let outs: Vec<String> = self.outputs.iter().map(|t| t.dtype.name()).collect();
        format!("{}/v{} [{} -> {}]", self.op_name, self.version, ins.join(","), outs.join(","))
    }
    /// Error unless input `i` has dtype `t`.
    pub fn expect_input(&self, i: usize, t: TensorType) -> Result<&TensorInfo> {
        let x = self.input(i)?;
        if x.dtype != t {
            return Err(self.err(format!("input {i} has type {}, expected {}", x.dtype.name(), t.name())));
        }
        Ok(x)
    }
}

/// A built kernel with the scratch memory it needs per invocation.
pub(crate) struct Built {
    pub kernel: Box<dyn Kernel>,
    /// Bytes of scratch memory `run` needs (shared by all nodes, reused).
    pub scratch_bytes: usize,
}

impl Built {
    pub fn new(kernel: impl Kernel + 'static) -> Result<Built> {
        Ok(Built { kernel: Box::new(kernel), scratch_bytes: 0 })
    }
    pub fn with_scratch(kernel: impl Kernel + 'static, scratch_bytes: usize) -> Result<Built> {
        Ok(Built { kernel: Box::new(kernel), scratch_bytes })
    }
}

/// Borrowed tensors of one node run.
pub(crate) struct Io<'a, 'b> {
    /// Input bytes (empty for omitted inputs).
    pub ins: &'b [&'a [u8]],
    /// Output bytes, exactly each output's size.
    pub outs: &'b mut [&'a mut [u8]],
    /// Variable (state) inputs of the node, in input order, writable so that state carries over
    /// to the next invocation; their entries in `ins` are empty.
    pub state: &'b mut [&'a mut [u8]],
    /// Scratch memory (at least what the kernel asked for; 8-byte aligned).
    pub scratch: &'b mut [u8],
    /// Threads.
    pub par: &'b Par,
}

/// A kernel: immutable after build, run with no heap allocation.
pub(crate) trait Kernel: Send + Sync {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()>;
}

/// Views bytes as elements of `T` (all arena and constant slices are suitably aligned).
pub(crate) fn cast<T: bytemuck::Pod>(b: &[u8]) -> Result<&[T]> {
    bytemuck::try_cast_slice(b).map_err(|e| Error::argument(format!("tensor bytes cannot be viewed as elements: {e}")))
}

/// Mutable version of [`cast`].
pub(crate) fn cast_mut<T: bytemuck::Pod>(b: &mut [u8]) -> Result<&mut [T]> {
    bytemuck::try_cast_slice_mut(b)
        .map_err(|e| Error::argument(format!("tensor bytes cannot be viewed as elements: {e}")))
}
