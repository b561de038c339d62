//! Pieces shared by several kernels: quantized output stages, padding, element access.

use crate::cpu::kernel::{BuildCtx, TensorInfo};
use crate::cpu::quant;
use crate::error::Result;
use crate::model::{Activation, Padding, TensorType};

/// Requantization of an int32 accumulator to the output type, per output channel.
#[derive(Debug, Clone)]
// `left`, `right` and `vector` only feed the vector kernels (x86-64 and aarch64).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) struct OutputStage {
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub offset: i32,
    pub min: i32,
    pub max: i32,
    /// `max(shift, 0)` per channel (vector kernels).
    pub left: Vec<i32>,
    /// `max(-shift, 0)` per channel, at most 31 (vector kernels).
    pub right: Vec<i32>,
    /// Whether the vector kernels apply: the CPU has them (AVX2 on x86-64, NEON on aarch64,
    /// detected when the stage is built), no left shift reaches 31 and no multiplier is negative
    /// (only absurd scales produce those; the vector code does not reproduce x86's masking of
    /// such shifts nor the saturation of a negative multiplier's product).
    pub vector: bool,
}

impl OutputStage {
    pub fn new(multiplier: Vec<i32>, shift: Vec<i32>, offset: i32, min: i32, max: i32) -> OutputStage {
        let left = shift.iter().map(|&s| s.max(0)).collect();
        let right = shift.iter().map(|&s| (-s).clamp(0, 31)).collect();
        let vector = shift.iter().all(|&s| s < 31)
            && multiplier.iter().all(|&m| m >= 0)
            && crate::cpu::gemm::best() != crate::cpu::gemm::Isa::Portable;
        OutputStage { multiplier, shift, offset, min, max, left, right, vector }
    }

    #[inline(always)]
    pub fn apply(&self, acc: i32, channel: usize) -> i32 {
        let v = quant::multiply_by_quantized_multiplier(acc, self.multiplier[channel], self.shift[channel]);
        // Wrapping like TFLite's int32 arithmetic on x86: absurd multipliers must not panic.
        v.wrapping_add(self.offset).clamp(self.min, self.max)
    }
}

/// Output stage of a convolution-like op (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV):
/// `input_scale * filter_scale[c] / output_scale` per channel, computed like TFLite (uint8
/// per-tensor: the float product of the scales; int8: in double). FULLY_CONNECTED takes its
/// activation range and checks from here but requantizes in double precision
/// (`fully_connected::FcStage`).
pub(crate) fn conv_output_stage(
    ctx: &BuildCtx<'_>,
    input: &TensorInfo,
    filter: &TensorInfo,
    output: &TensorInfo,
    channels: usize,
    activation: Activation,
) -> Result<OutputStage> {
    let (in_s, _) = input.qparams()?;
    let (out_s, out_zp) = output.qparams()?;
    let fq = filter.quant.as_ref().ok_or_else(|| ctx.err("the filter has no quantization parameters"))?;
    if fq.scale.len() != 1 && fq.scale.len() != channels {
        return Err(ctx.err(format!("{} filter scales for {channels} output channels", fq.scale.len())));
    }
    let mut multiplier = Vec::with_capacity(channels);
    let mut shift = Vec::with_capacity(channels);
    for c in 0..channels {
        let fs = if fq.scale.len() == 1 { fq.scale[0] } else { fq.scale[c] };
        let real = if input.dtype == TensorType::UINT8 {
            (in_s * fs) as f64 / out_s as f64
        } else {
            in_s as f64 * fs as f64 / out_s as f64
        };
        let (m, s) = quant::quantize_multiplier(real);
        multiplier.push(m);
        shift.push(s);
    }
    let (qmin, qmax) = quant::type_range(output.dtype);
    let (min, max) = quant::activation_range_quantized(activation, out_s, out_zp, qmin, qmax);
    Ok(OutputStage::new(multiplier, shift, out_zp, min, max))
}

/// Output size and leading padding of one spatial dimension (TFLite's `ComputeOutSize` and
/// `ComputePaddingWithOffset`).
pub(crate) fn out_size_and_pad(
    padding: Padding,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    let eff = (filter - 1) * dilation + 1;
    let out = match padding {
        Padding::Same => input.div_ceil(stride),
        Padding::Valid => (input + stride).saturating_sub(eff) / stride,
    };
    let total = ((out.max(1) - 1) * stride + eff).saturating_sub(input);
    (out, total / 2)
}

/// Checks that a positive option (stride, dilation, filter size) is valid.
pub(crate) fn positive(ctx: &BuildCtx<'_>, what: &str, v: i32) -> Result<usize> {
    if v <= 0 {
        return Err(ctx.err(format!("{what} must be positive, the file says {v}")));
    }
    Ok(v as usize)
}

/// Checks that the output shape from the file (if any) equals `shape`, then sets it.
pub(crate) fn set_output_shape(ctx: &mut BuildCtx<'_>, k: usize, shape: Vec<usize>) -> Result<()> {
    let file = &ctx.output(k)?.shape;
    let file_n = file.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if n.is_none() {
        return Err(ctx.err(format!("output {k} would have shape {shape:?}, whose size overflows")));
    }
    if !file.is_empty() && file_n != n {
        return Err(ctx.err(format!("output {k} has shape {file:?} in the file, but the op computes {shape:?}")));
    }
    ctx.outputs[k].shape = shape;
    Ok(())
}

/// Requires a 4-D tensor.
pub(crate) fn dims4(ctx: &BuildCtx<'_>, t: &TensorInfo, what: &str) -> Result<[usize; 4]> {
    match t.shape.as_slice() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => Err(ctx.err(format!("{what} must be 4-D (NHWC), has shape {s:?}"))),
    }
}

/// A quantized 8-bit element type this kernel family handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Q8 {
    U8,
    I8,
}

impl Q8 {
    pub fn of(ctx: &BuildCtx<'_>, t: TensorType) -> Result<Q8> {
        match t {
            TensorType::UINT8 => Ok(Q8::U8),
            TensorType::INT8 => Ok(Q8::I8),
            _ => Err(ctx.err(format!("type {} is not supported here (uint8 or int8 only)", t.name()))),
        }
    }
    /// Reads element `i` of `b` as i32.
    #[inline(always)]
    pub fn get(self, b: &[u8], i: usize) -> i32 {
        match self {
            Q8::U8 => b[i] as i32,
            Q8::I8 => b[i] as i8 as i32,
        }
    }
    /// Stores an already clamped value.
    #[inline(always)]
    pub fn put(self, v: i32) -> u8 {
        match self {
            Q8::U8 => v as u8,
            Q8::I8 => v as i8 as u8,
        }
    }
}

/// The values of constant input `i` as axes: int32, or also int64 with `wide` (where TFLite takes
/// both, as ARG_MAX does; its reducers and SPLIT take int32 only).
pub(crate) fn const_axes(ctx: &BuildCtx<'_>, i: usize, wide: bool) -> Result<Vec<i32>> {
    let t = ctx.input(i)?.dtype;
    if t != TensorType::INT32 && !(wide && t == TensorType::INT64) {
        let want = if wide { "int32 or int64" } else { "int32" };
        return Err(ctx.err(format!("the axis tensor has type {}; this op takes {want} axes", t.name())));
    }
    super::view::const_ints(ctx, i)?
        .into_iter()
        .map(|v| i32::try_from(v).map_err(|_| ctx.err(format!("axis {v} is out of range"))))
        .collect()
}

/// Reads int32 values from little-endian bytes.
pub(crate) fn le_i32(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Normalises a possibly negative axis against `rank`.
pub(crate) fn axis(ctx: &BuildCtx<'_>, axis: i32, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i32 } else { axis };
    if a < 0 || a as usize >= rank {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Index mapping of a two-input broadcast over at most 6 dimensions.
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
    shape: [usize; 6],
    s1: [usize; 6],
    s2: [usize; 6],
    /// Both inputs have the output's shape: indices are equal.
    pub same: bool,
    pub len: usize,
    /// Input a has the output's shape and input b repeats a block of this many elements (b's
    /// leading dimensions are 1, its trailing ones the output's): `index_b = index % period`.
    pub b_period: Option<usize>,
}

impl Broadcast {
    /// Output shape and strides for inputs of shapes `a` and `b` (numpy rules).
    pub fn new(ctx: &BuildCtx<'_>, a: &[usize], b: &[usize]) -> Result<(Broadcast, Vec<usize>)> {
        let rank = a.len().max(b.len());
        if rank > 6 {
            return Err(ctx.err(format!("broadcasting over {rank} dimensions is not supported (at most 6)")));
        }
        let pad =
            |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, rank - s.len()).chain(s.iter().copied()).collect() };
        let (pa, pb) = (pad(a), pad(b));
        let mut out = Vec::with_capacity(rank);
        for d in 0..rank {
            let (x, y) = (pa[d], pb[d]);
            if x != y && x != 1 && y != 1 {
                return Err(ctx.err(format!("shapes {a:?} and {b:?} cannot be broadcast")));
            }
            out.push(if x == 1 { y } else { x });
        }
        let (sa, sb) = (strides(&pa), strides(&pb));
        let b_period = (pa == out && !out.is_empty()).then(|| {
            let lead = pb.iter().take_while(|&&d| d == 1).count();
            (pb[lead..] == out[lead..]).then(|| pb[lead..].iter().product::<usize>())
        });
        let b_period = b_period.flatten().filter(|&p| p > 0);
        let mut bc =
            Broadcast { shape: [1; 6], s1: [0; 6], s2: [0; 6], same: pa == pb, len: out.iter().product(), b_period };
        for d in 0..rank {
            let k = 6 - rank + d;
            bc.shape[k] = out[d];
            bc.s1[k] = if pa[d] == 1 { 0 } else { sa[d] };
            bc.s2[k] = if pb[d] == 1 { 0 } else { sb[d] };
        }
        Ok((bc, out))
    }

    /// Output elements per row of [`Broadcast::for_rows`] (its two innermost dimensions).
    pub fn row_len(&self) -> usize {
        self.shape[4] * self.shape[5]
    }

    /// Calls `f(output, index_a, index_b)` for each element of `part`, the output elements of
    /// rows `first..` (of [`Broadcast::row_len`] elements each), in order: a part of
    /// [`Broadcast::for_each`] that a thread can take.
    #[inline]
    pub fn for_rows<T>(&self, first: usize, part: &mut [T], mut f: impl FnMut(&mut T, usize, usize)) {
        let s = &self.shape;
        let rows = part.len() / self.row_len().max(1);
        let mut outs = part.iter_mut();
        for r in first..first + rows {
            let (i3, q) = (r % s[3], r / s[3]);
            let (i2, q) = (q % s[2], q / s[2]);
            let (i1, i0) = (q % s[1], q / s[1]);
            let base1 = i0 * self.s1[0] + i1 * self.s1[1] + i2 * self.s1[2] + i3 * self.s1[3];
            let base2 = i0 * self.s2[0] + i1 * self.s2[1] + i2 * self.s2[2] + i3 * self.s2[3];
            for i4 in 0..s[4] {
                let (b1, b2) = (base1 + i4 * self.s1[4], base2 + i4 * self.s2[4]);
                for (i5, o) in (0..s[5]).zip(outs.by_ref()) {
                    f(o, b1 + i5 * self.s1[5], b2 + i5 * self.s2[5]);
                }
            }
        }
    }

    /// Calls `f(out_index, index_a, index_b)` for every output element in order.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        if self.same {
            for i in 0..self.len {
                f(i, i, i);
            }
            return;
        }
        let s = &self.shape;
        let mut o = 0;
        for i0 in 0..s[0] {
            for i1 in 0..s[1] {
                for i2 in 0..s[2] {
                    for i3 in 0..s[3] {
                        let base1 = i0 * self.s1[0] + i1 * self.s1[1] + i2 * self.s1[2] + i3 * self.s1[3];
                        let base2 = i0 * self.s2[0] + i1 * self.s2[1] + i2 * self.s2[2] + i3 * self.s2[3];
                        for i4 in 0..s[4] {
                            for i5 in 0..s[5] {
                                f(
                                    o,
                                    base1 + i4 * self.s1[4] + i5 * self.s1[5],
                                    base2 + i4 * self.s2[4] + i5 * self.s2[5],
                                );
                                o += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}
