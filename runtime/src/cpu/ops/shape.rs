//! Data movement: RESHAPE, SQUEEZE, CONCATENATION, SPLIT, PACK, UNPACK, PAD, GATHER_ND.

use super::common::{axis, le_i32, set_output_shape, strides, Q8};
use crate::cpu::kernel::{cast, BuildCtx, Built, Io, Kernel};
use crate::error::{Error, Result};
use crate::model::TensorType;

/// The element size of `t`, after checking every output has that type (the kernels copy bytes).
fn elem_size(ctx: &BuildCtx<'_>, t: TensorType) -> Result<usize> {
    if let Some(o) = ctx.outputs.iter().find(|o| o.dtype != t) {
        return Err(ctx.err(format!("output tensor {} has type {}, the input {}", o.index, o.dtype.name(), t.name())));
    }
    t.size_bytes().ok_or_else(|| ctx.err(format!("type {} has no fixed element size", t.name())))
}

struct Copy;

impl Kernel for Copy {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        io.outs[0].copy_from_slice(&io.ins[0][..io.outs[0].len()]);
        Ok(())
    }
}

pub(crate) fn build_reshape(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let n = input.num_elements();
    let out = ctx.output(0)?.clone();
    if out.dtype != input.dtype {
        return Err(ctx.err("input and output types differ"));
    }
    // The file's output shape is authoritative when it has the right element count; otherwise
    // derive it from the shape input or the options (one -1 allowed).
    let mut shape: Vec<i64> = out.shape.iter().map(|&d| d as i64).collect();
    if out.shape.is_empty() || out.num_elements() != n {
        let wanted = match ctx.constants.get(1).copied().flatten() {
            Some(b) => le_i32(b),
            None => ctx.options.new_shape.clone().unwrap_or_default(),
        };
        shape = wanted.iter().map(|&d| d as i64).collect();
        let known = shape.iter().filter(|&&d| d >= 0).try_fold(1i64, |a, &d| a.checked_mul(d));
        let known = known.ok_or_else(|| ctx.err(format!("the new shape {wanted:?} overflows")))?;
        if let Some(p) = shape.iter().position(|&d| d < 0) {
            if known == 0 || n as i64 % known != 0 {
                return Err(ctx.err(format!("cannot reshape {} elements into {wanted:?}", n)));
            }
            shape[p] = n as i64 / known;
        }
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(n) {
        return Err(ctx.err(format!("cannot reshape {:?} ({n} elements) into {shape:?}", input.shape)));
    }
    ctx.outputs[0].shape = shape;
    Built::new(Copy)
}

/// Copies `parts` tensors, each seen as `[outer][len_i]`, into or out of one tensor seen as
/// `[outer][sum len_i]`.
struct Join {
    outer: usize,
    /// Byte length of each part's inner block.
    lens: Vec<usize>,
    /// Requantization of each input (CONCATENATION of differently scaled uint8/int8 inputs).
    rescale: Vec<Option<(f32, f32)>>,
    out_zp: i32,
    q: Option<Q8>,
}

impl Kernel for Join {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let total: usize = self.lens.iter().sum();
        let out = &mut *io.outs[0];
        for o in 0..self.outer {
            let mut at = o * total;
            for (i, &len) in self.lens.iter().enumerate() {
                let src = &io.ins[i][o * len..(o + 1) * len];
                let dst = &mut out[at..at + len];
                match (self.rescale[i], self.q) {
                    (Some((scale, bias)), Some(q)) => {
                        let (lo, hi) = if q == Q8::U8 { (0, 255) } else { (-128, 127) };
                        for (j, d) in dst.iter_mut().enumerate() {
                            let x = q.get(src, j) as f32;
                            // Saturating: a huge scale ratio (absurd, but finite) must not overflow.
                            let v = ((x * scale + bias).round() as i32).saturating_add(self.out_zp);
                            *d = q.put(v.clamp(lo, hi));
                        }
                    }
                    _ => dst.copy_from_slice(src),
                }
                at += len;
            }
        }
        Ok(())
    }
}

pub(crate) fn build_concatenation(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let first = ctx.input(0)?.clone();
    let rank = first.shape.len();
    let ax = axis(ctx, ctx.options.axis, rank)?;
    let es = elem_size(ctx, first.dtype)?;
    let mut shape = first.shape.clone();
    shape[ax] = 0;
    let outer: usize = first.shape[..ax].iter().product();
    let inner: usize = first.shape[ax + 1..].iter().product();
    let mut lens = Vec::new();
    for i in 0..ctx.inputs.len() {
        let t = ctx.input(i)?;
        if t.dtype != first.dtype || t.shape.len() != rank {
            return Err(ctx.err(format!("input {i} has a different type or rank than input 0")));
        }
        for d in 0..rank {
            if d != ax && t.shape[d] != first.shape[d] {
                return Err(ctx.err(format!("input {i} shape {:?} does not match {:?}", t.shape, first.shape)));
            }
        }
        shape[ax] += t.shape[ax];
        lens.push(t.shape[ax] * inner * es);
    }
    if ctx.options.activation != crate::model::Activation::None {
        return Err(ctx.err("fused activations on CONCATENATION are not supported"));
    }
    set_output_shape(ctx, 0, shape)?;
    let out = ctx.output(0)?.clone();
    let q = match first.dtype {
        TensorType::UINT8 => Some(Q8::U8),
        TensorType::INT8 => Some(Q8::I8),
        _ => None,
    };
    let mut rescale = Vec::new();
    let mut out_zp = 0;
    for i in 0..ctx.inputs.len() {
        let t = ctx.input(i)?;
        rescale.push(match (q, &t.quant, &out.quant) {
            (Some(_), Some(a), Some(b)) if a.scale() != b.scale() || a.zero_point() != b.zero_point() => {
                out_zp = b.zero_point();
                let scale = a.scale() * (1.0 / b.scale());
                let bias = -(a.zero_point() as f32) * scale;
                Some((scale, bias))
            }
            (_, _, Some(b)) => {
                out_zp = b.zero_point();
                None
            }
            _ => None,
        });
    }
    Built::new(Join { outer, lens, rescale, out_zp, q })
}

/// The inverse of [`Join`]: one input cut into several outputs.
struct Cut {
    input: usize,
    outer: usize,
    lens: Vec<usize>,
}

impl Kernel for Cut {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let total: usize = self.lens.iter().sum();
        let src = io.ins[self.input];
        for o in 0..self.outer {
            let mut at = o * total;
            for (k, &len) in self.lens.iter().enumerate() {
                io.outs[k][o * len..(o + 1) * len].copy_from_slice(&src[at..at + len]);
                at += len;
            }
        }
        Ok(())
    }
}

pub(crate) fn build_split(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let axis_v =
        *super::common::const_axes(ctx, 0, false)?.first().ok_or_else(|| ctx.err("the axis tensor is empty"))?;
    let input = ctx.input(1)?.clone();
    let rank = input.shape.len();
    let ax = axis(ctx, axis_v, rank)?;
    let parts = ctx.outputs.len();
    if parts == 0 || input.shape[ax] % parts != 0 {
        return Err(ctx.err(format!("dimension {} of size {} does not split into {parts}", ax, input.shape[ax])));
    }
    let es = elem_size(ctx, input.dtype)?;
    let mut shape = input.shape.clone();
    shape[ax] /= parts;
    let inner: usize = input.shape[ax + 1..].iter().product();
    for k in 0..parts {
        set_output_shape(ctx, k, shape.clone())?;
    }
    let outer = input.shape[..ax].iter().product();
    Built::new(Cut { input: 1, outer, lens: vec![shape[ax] * inner * es; parts] })
}

pub(crate) fn build_pack(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let first = ctx.input(0)?.clone();
    let rank = first.shape.len() + 1;
    let ax = axis(ctx, ctx.options.axis, rank)?;
    let es = elem_size(ctx, first.dtype)?;
    for i in 1..ctx.inputs.len() {
        let t = ctx.input(i)?;
        if t.shape != first.shape || t.dtype != first.dtype {
            return Err(ctx.err(format!("input {i} differs in shape or type from input 0")));
        }
    }
    let mut shape = first.shape.clone();
    shape.insert(ax, ctx.inputs.len());
    set_output_shape(ctx, 0, shape)?;
    let outer: usize = first.shape[..ax].iter().product();
    let inner: usize = first.shape[ax..].iter().product();
    let n = ctx.inputs.len();
    Built::new(Join { outer, lens: vec![inner * es; n], rescale: vec![None; n], out_zp: 0, q: None })
}

pub(crate) fn build_unpack(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let rank = input.shape.len();
    let ax = axis(ctx, ctx.options.axis, rank)?;
    let n = input.shape[ax];
    if n != ctx.outputs.len() {
        return Err(ctx.err(format!("dimension {ax} has {n} entries but the op has {} outputs", ctx.outputs.len())));
    }
    let es = elem_size(ctx, input.dtype)?;
    let mut shape = input.shape.clone();
    shape.remove(ax);
    for k in 0..n {
        set_output_shape(ctx, k, shape.clone())?;
    }
    let outer = input.shape[..ax].iter().product();
    let inner: usize = input.shape[ax + 1..].iter().product();
    Built::new(Cut { input: 0, outer, lens: vec![inner * es; n] })
}

struct Pad {
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    before: Vec<usize>,
    es: usize,
    value: Vec<u8>,
}

impl Kernel for Pad {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let out = &mut *io.outs[0];
        for chunk in out.chunks_exact_mut(self.es) {
            chunk.copy_from_slice(&self.value);
        }
        let input = io.ins[0];
        let rank = self.in_shape.len();
        let inner = self.in_shape[rank - 1] * self.es;
        let rows = input.len() / inner.max(1);
        let os = {
            let mut s = [0usize; 8];
            let mut acc = self.es;
            for d in (0..rank).rev() {
                s[d] = acc;
                acc *= self.out_shape[d];
            }
            s
        };
        // Copy the input row by row (rows along the last dimension).
        let mut idx = [0usize; 8];
        for r in 0..rows {
            let mut off = self.before[rank - 1] * self.es;
            for d in 0..rank - 1 {
                off += (idx[d] + self.before[d]) * os[d];
            }
            out[off..off + inner].copy_from_slice(&input[r * inner..(r + 1) * inner]);
            for d in (0..rank - 1).rev() {
                idx[d] += 1;
                if idx[d] < self.in_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(())
    }
}

pub(crate) fn build_pad(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let rank = input.shape.len();
    if rank == 0 || rank > 8 {
        return Err(ctx.err(format!("rank {rank} is not supported (1 to 8)")));
    }
    // int32 or int64 paddings, as in TFLite.
    let pads = super::view::const_ints(ctx, 1)?;
    if pads.len() != rank * 2 || pads.iter().any(|&p| !(0..=i64::from(i32::MAX)).contains(&p)) {
        return Err(ctx.err(format!("paddings {pads:?} do not fit rank {rank} (non-negative, 2 per dimension)")));
    }
    let es = elem_size(ctx, input.dtype)?;
    let before: Vec<usize> = (0..rank).map(|d| pads[2 * d] as usize).collect();
    let out_shape: Vec<usize> =
        (0..rank).map(|d| input.shape[d] + pads[2 * d] as usize + pads[2 * d + 1] as usize).collect();
    set_output_shape(ctx, 0, out_shape.clone())?;
    let out = ctx.output(0)?.clone();
    let value = match ctx.inputs.get(2).and_then(|v| v.as_ref()) {
        Some(_) => {
            let v = ctx.constant(2)?;
            if v.len() != es {
                return Err(ctx.err("the constant value must be a single element"));
            }
            v.to_vec()
        }
        None => match (&out.quant, input.dtype) {
            (Some(q), TensorType::UINT8 | TensorType::INT8) => vec![q.zero_point() as u8],
            _ => vec![0u8; es],
        },
    };
    Built::new(Pad { in_shape: input.shape.clone(), out_shape, before, es, value })
}

struct GatherNd {
    params_shape: Vec<usize>,
    params_strides: Vec<usize>,
    depth: usize,
    slice: usize,
    es: usize,
}

impl Kernel for GatherNd {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let params = io.ins[0];
        let indices: &[i32] = cast(io.ins[1])?;
        let out = &mut *io.outs[0];
        let bytes = self.slice * self.es;
        for (n, idx) in indices.chunks_exact(self.depth).enumerate() {
            let mut off = 0;
            for (d, &i) in idx.iter().enumerate() {
                if i < 0 || i as usize >= self.params_shape[d] {
                    return Err(Error::argument(format!(
                        "index {i} is out of range for dimension {d} of size {}",
                        self.params_shape[d]
                    )));
                }
                off += i as usize * self.params_strides[d];
            }
            out[n * bytes..(n + 1) * bytes].copy_from_slice(&params[off * self.es..off * self.es + bytes]);
        }
        Ok(())
    }
}

pub(crate) fn build_gather_nd(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let params = ctx.input(0)?.clone();
    let indices = ctx.input(1)?.clone();
    if indices.dtype != TensorType::INT32 {
        return Err(ctx.err("indices must be int32"));
    }
    let depth = *indices.shape.last().ok_or_else(|| ctx.err("indices must have at least one dimension"))?;
    if depth == 0 || depth > params.shape.len() {
        return Err(ctx.err(format!("index depth {depth} does not fit params of rank {}", params.shape.len())));
    }
    let mut shape: Vec<usize> = indices.shape[..indices.shape.len() - 1].to_vec();
    shape.extend_from_slice(&params.shape[depth..]);
    set_output_shape(ctx, 0, shape)?;
    let es = elem_size(ctx, params.dtype)?;
    Built::new(GatherNd {
        params_strides: strides(&params.shape),
        slice: params.shape[depth..].iter().product(),
        params_shape: params.shape,
        depth,
        es,
    })
}

/// GATHER: slices of `params` along `axis` picked by `indices` (int32 or int64), with
/// `batch_dims` leading dimensions shared by both, as TFLite's reference `Gather`.
pub(crate) fn build_gather(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let params = ctx.input(0)?.clone();
    let indices = ctx.input(1)?.clone();
    let wide = match indices.dtype {
        TensorType::INT32 => false,
        TensorType::INT64 => true,
        t => return Err(ctx.err(format!("indices have type {}; expected int32 or int64", t.name()))),
    };
    let (rank, irank) = (params.shape.len() as i32, indices.shape.len() as i32);
    let axis = if ctx.options.axis < 0 { ctx.options.axis + rank } else { ctx.options.axis };
    let batch_dims = if ctx.options.batch_dims < 0 { ctx.options.batch_dims + irank } else { ctx.options.batch_dims };
    if !(0..rank).contains(&axis) {
        return Err(ctx.err(format!("axis {} is out of range for params of rank {rank}", ctx.options.axis)));
    }
    if batch_dims < 0 || batch_dims > axis || batch_dims > irank {
        return Err(ctx.err(format!(
            "batch_dims {} must be at most the axis {axis} and the indices' rank {irank}",
            ctx.options.batch_dims
        )));
    }
    let (axis, batch_dims) = (axis as usize, batch_dims as usize);
    if params.shape[..batch_dims] != indices.shape[..batch_dims] {
        return Err(ctx.err(format!(
            "the first {batch_dims} dimensions of params {:?} and indices {:?} differ",
            params.shape, indices.shape
        )));
    }
    let mut shape = params.shape[..axis].to_vec();
    shape.extend_from_slice(&indices.shape[batch_dims..]);
    shape.extend_from_slice(&params.shape[axis + 1..]);
    set_output_shape(ctx, 0, shape)?;
    let es = elem_size(ctx, params.dtype)?;
    Built::new(Gather {
        batches: params.shape[..batch_dims].iter().product(),
        outer: params.shape[batch_dims..axis].iter().product(),
        axis_size: params.shape[axis],
        inner: params.shape[axis + 1..].iter().product(),
        coords: indices.shape[batch_dims..].iter().product(),
        wide,
        es,
    })
}

struct Gather {
    batches: usize,
    outer: usize,
    axis_size: usize,
    inner: usize,
    coords: usize,
    wide: bool,
    es: usize,
}

impl Kernel for Gather {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let params = io.ins[0];
        let (wide, narrow): (&[i64], &[i32]) =
            if self.wide { (cast(io.ins[1])?, &[]) } else { (&[], cast(io.ins[1])?) };
        let index = |i: usize| if self.wide { wide[i] } else { i64::from(narrow[i]) };
        let out = &mut *io.outs[0];
        let bytes = self.inner * self.es;
        for b in 0..self.batches {
            for o in 0..self.outer {
                for i in 0..self.coords {
                    let x = index(b * self.coords + i);
                    if x < 0 || x as usize >= self.axis_size {
                        return Err(Error::argument(format!(
                            "GATHER index {x} is out of range for an axis of size {}",
                            self.axis_size
                        )));
                    }
                    let dst = ((b * self.outer + o) * self.coords + i) * bytes;
                    let src = ((b * self.outer + o) * self.axis_size + x as usize) * bytes;
                    out[dst..dst + bytes].copy_from_slice(&params[src..src + bytes]);
                }
            }
        }
        Ok(())
    }
}
