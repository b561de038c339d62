//! Byte-moving shape ops: STRIDED_SLICE, SLICE, TRANSPOSE, BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND,
//! SPACE_TO_DEPTH and DEPTH_TO_SPACE, for any fixed-size element type.
//!
//! All but the two batch ops are strided views of the input: every output element, in order, is
//! the input element at `base + sum(index[k] * stride[k])`. The view is resolved at build time
//! (dimensions merged, every offset checked against the input), so running is a nested copy.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::error::{Error, Result};
use crate::model::TensorType;

/// Builds one of the shape ops of this file.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    match ctx.op_name {
        "STRIDED_SLICE" => build_strided_slice(ctx),
        "SLICE" => build_slice(ctx),
        "TRANSPOSE" => build_transpose(ctx),
        "BATCH_TO_SPACE_ND" => build_batch_to_space(ctx),
        "SPACE_TO_BATCH_ND" => build_space_to_batch(ctx),
        "SPACE_TO_DEPTH" | "DEPTH_TO_SPACE" => build_depth_space(ctx),
        _ => Err(ctx.err("not a shape op")),
    }
}

/// Most dimensions of a view (after merging).
const VD: usize = 8;

/// Input and output of the same type; returns the input and its element size.
fn io_types(ctx: &BuildCtx<'_>) -> Result<(TensorInfo, usize)> {
    let x = ctx.input(0)?.clone();
    let y = ctx.output(0)?;
    if x.dtype != y.dtype {
        return Err(ctx.err(format!("input type {} differs from output type {}", x.dtype, y.dtype)));
    }
    let es = x.dtype.size_bytes().filter(|&s| s > 0).ok_or_else(|| ctx.err("elements of unknown size"))?;
    Ok((x, es))
}

/// Row-major element strides of `shape`.
fn strides_of(shape: &[usize]) -> Vec<isize> {
    let mut st = vec![1isize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        st[k] = st[k + 1] * shape[k + 1] as isize;
    }
    st
}

/// Integer values of a constant int32 or int64 input.
fn const_ints(ctx: &BuildCtx<'_>, i: usize) -> Result<Vec<i64>> {
    let t = ctx.input(i)?;
    let data = ctx.constant(i)?;
    let v: Vec<i64> = match t.dtype {
        TensorType::INT32 => {
            data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
        }
        TensorType::INT64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        t => return Err(ctx.err(format!("input {i} has type {t}, expected int32 or int64"))),
    };
    if v.len() != t.num_elements() {
        return Err(ctx.err(format!("constant input {i} has {} values for shape {:?}", v.len(), t.shape)));
    }
    Ok(v)
}

/// Values of a constant int32 input.
fn const_i32(ctx: &BuildCtx<'_>, i: usize) -> Result<Vec<i64>> {
    if ctx.input(i)?.dtype != TensorType::INT32 {
        return Err(ctx.err(format!("input {i} must be int32")));
    }
    const_ints(ctx, i)
}

/// A strided view of the input, copied to the output in order.
struct View {
    es: usize,
    rank: usize,
    dims: [usize; VD],
    strides: [isize; VD],
    base: isize,
    count: usize,
}

/// Builds the view kernel after checking every offset it reads is inside the input.
fn view(ctx: &BuildCtx<'_>, es: usize, in_len: usize, base: isize, dims: &[usize], strides: &[isize]) -> Result<Built> {
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let count = count.ok_or_else(|| ctx.err(format!("the output dimensions {dims:?} overflow")))?;
    let mut merged: Vec<(usize, isize)> = Vec::new();
    if count > 0 {
        let (mut lo, mut hi) = (Some(base), Some(base));
        for (&d, &s) in dims.iter().zip(strides) {
            let span = isize::try_from(d - 1).ok().and_then(|d| d.checked_mul(s));
            match span {
                Some(span) if span < 0 => lo = lo.and_then(|v| v.checked_add(span)),
                Some(span) => hi = hi.and_then(|v| v.checked_add(span)),
                None => (lo, hi) = (None, None),
            }
        }
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(ctx.err(format!("the view {dims:?} with strides {strides:?} overflows")));
        };
        if lo < 0 || hi >= in_len as isize {
            return Err(ctx.err(format!("reads elements {lo}..={hi} of an input with {in_len}")));
        }
        for (&d, &s) in dims.iter().zip(strides) {
            if d == 1 {
                continue;
            }
            match merged.last_mut() {
                Some(l) if l.1 == s * d as isize => *l = (l.0 * d, s),
                _ => merged.push((d, s)),
            }
        }
    }
    if merged.is_empty() {
        merged.push((1, 1));
    }
    if merged.len() > VD {
        return Err(ctx.err(format!("more than {VD} dimensions")));
    }
    let mut v = View { es, rank: merged.len(), dims: [1; VD], strides: [0; VD], base, count };
    for (k, &(d, s)) in merged.iter().enumerate() {
        (v.dims[k], v.strides[k]) = (d, s);
    }
    if !matches!(es, 1 | 2 | 4 | 8) {
        return Err(ctx.err(format!("elements of {es} bytes are not supported")));
    }
    Built::new(v)
}

fn run_view<T: bytemuck::Pod>(v: &View, x: &[T], y: &mut [T]) {
    let last = v.rank - 1;
    let (inner, st) = (v.dims[last], v.strides[last]);
    let mut idx = [0usize; VD];
    let (mut off, mut o) = (v.base, 0usize);
    loop {
        let start = off as usize;
        if st == 1 {
            y[o..o + inner].copy_from_slice(&x[start..start + inner]);
        } else {
            for (i, d) in y[o..o + inner].iter_mut().enumerate() {
                *d = x[(off + i as isize * st) as usize];
            }
        }
        o += inner;
        let mut k = last;
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            off += v.strides[k];
            if idx[k] < v.dims[k] {
                break;
            }
            off -= v.strides[k] * v.dims[k] as isize;
            idx[k] = 0;
        }
    }
}

impl Kernel for View {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let (x, y) = (io.ins[0], &mut *io.outs[0]);
        if y.len() != self.count * self.es {
            return Err(Error::argument(format!("output has {} bytes, expected {}", y.len(), self.count * self.es)));
        }
        match self.es {
            1 => run_view(self, x, y),
            2 => run_view(self, cast::<u16>(x)?, cast_mut::<u16>(y)?),
            4 => run_view(self, cast::<u32>(x)?, cast_mut::<u32>(y)?),
            _ => run_view(self, cast::<u64>(x)?, cast_mut::<u64>(y)?),
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------ TRANSPOSE / SLICE

fn build_transpose(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let perm = const_ints(ctx, 1)?;
    let rank = x.shape.len();
    let mut seen = vec![false; rank];
    for &p in &perm {
        if p < 0 || p as usize >= rank || std::mem::replace(&mut seen[p as usize], true) {
            return Err(ctx.err(format!("perm {perm:?} is not a permutation of the {rank} input dimensions")));
        }
    }
    if perm.len() != rank {
        return Err(ctx.err(format!("perm {perm:?} does not match the input rank {rank}")));
    }
    let st = strides_of(&x.shape);
    let dims: Vec<usize> = perm.iter().map(|&p| x.shape[p as usize]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| st[p as usize]).collect();
    ctx.outputs[0].shape = dims.clone();
    view(ctx, es, x.num_elements(), 0, &dims, &strides)
}

fn build_slice(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let (begin, size) = (const_ints(ctx, 1)?, const_ints(ctx, 2)?);
    let rank = x.shape.len();
    if begin.len() != rank || size.len() != rank {
        return Err(ctx.err(format!("begin {begin:?} and size {size:?} must have {rank} values")));
    }
    let mut dims = Vec::with_capacity(rank);
    for k in 0..rank {
        let (d, b) = (x.shape[k] as i64, begin[k]);
        let s = if size[k] == -1 { d.saturating_sub(b) } else { size[k] };
        if b < 0 || b > d || s < 0 || s > d - b {
            return Err(
                ctx.err(format!("slice begin {} size {} is outside dimension {k} of size {d}", begin[k], size[k]))
            );
        }
        dims.push(s as usize);
    }
    let st = strides_of(&x.shape);
    let base = begin.iter().zip(&st).map(|(&b, &s)| b as isize * s).sum();
    ctx.outputs[0].shape = dims.clone();
    view(ctx, es, x.num_elements(), base, &dims, &st)
}

// ------------------------------------------------------------------------------------------ STRIDED_SLICE

/// One axis of the effective (ellipsis- and new-axis-expanded) slice.
#[derive(Clone, Copy, Default)]
struct Axis {
    size: i64,
    begin: i64,
    end: i64,
    stride: i64,
    begin_mask: bool,
    end_mask: bool,
    shrink: bool,
}

/// TFLite's `StridedSliceStartForAxis`.
fn start_for_axis(a: &Axis) -> i64 {
    if a.begin_mask {
        return if a.stride > 0 { 0 } else { a.size - 1 };
    }
    let mut start = a.begin;
    if start < 0 {
        start += a.size;
    }
    if a.stride > 0 {
        clamp(start, 0, a.size)
    } else {
        clamp(start, -1, a.size - 1)
    }
}

/// TFLite's `StridedSliceEndForAxis`.
fn end_for_axis(a: &Axis, start: i64, offset: bool) -> i64 {
    if a.shrink {
        return if start >= a.size { start } else { start + 1 };
    }
    if a.end_mask {
        return if a.stride > 0 { a.size } else { -1 };
    }
    let mut end = a.end;
    if offset {
        end += start;
    }
    if end < 0 {
        end += a.size;
    }
    if a.stride > 0 {
        clamp(end, 0, a.size)
    } else {
        clamp(end, -1, a.size - 1)
    }
}

/// `strided_slice::Clamp` (upper bound checked first).
fn clamp(v: i64, lo: i64, hi: i64) -> i64 {
    if hi < v {
        hi
    } else if v < lo {
        lo
    } else {
        v
    }
}

/// Iterations of `for (i = start; stride > 0 ? i < stop : i > stop; i += stride)`.
fn loop_count(start: i64, stop: i64, stride: i64) -> i64 {
    let n = if stride > 0 { stop - start } else { start - stop };
    let s = stride.abs();
    if n <= 0 {
        0
    } else {
        (n + s - 1) / s
    }
}

/// Expands ellipsis and new-axis masks like TFLite's `BuildStridedSliceParams`.
fn strided_slice_axes(
    ctx: &BuildCtx<'_>,
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    strides: &[i64],
) -> Result<Vec<Axis>> {
    let o = ctx.options;
    let bit = |mask: i32, i: usize| i < 32 && (mask >> i) & 1 == 1;
    let begin_count = begin.len();
    let num_add_axis = (0..begin_count).filter(|&i| !bit(o.ellipsis_mask, i) && bit(o.new_axis_mask, i)).count();
    let dims = shape.len() + num_add_axis;
    if dims > 31 {
        return Err(ctx.err("too many dimensions"));
    }
    let (mut ellipsis, mut new_axis) = (0u32, 0u32);
    let (mut ellipsis_start, mut expanded) = (dims, 0usize);
    let mut i = 0;
    while i < dims {
        if bit(o.ellipsis_mask, i) {
            ellipsis_start = i;
            let end = (i + 1 + num_add_axis + shape.len()).saturating_sub(begin_count).min(dims).max(i + 1);
            expanded = end - i - 1;
            while i < end {
                ellipsis |= 1 << i;
                i += 1;
            }
            continue;
        }
        if i >= expanded && bit(o.new_axis_mask, i - expanded) {
            new_axis |= 1 << i;
        }
        i += 1;
    }
    let mut axes = Vec::with_capacity(dims);
    let (mut added_ellipsis, mut added_axes) = (0usize, 0usize);
    let in_dim = |i: usize, added: usize| -> Result<i64> {
        shape.get(i.wrapping_sub(added)).map(|&d| d as i64).ok_or_else(|| ctx.err("masks do not fit the input rank"))
    };
    for i in 0..dims {
        let full = |size| Axis { size, begin: 0, end: 0, stride: 1, begin_mask: true, end_mask: true, shrink: false };
        let a = if (ellipsis >> i) & 1 == 1 {
            added_ellipsis = i.saturating_sub(ellipsis_start);
            full(in_dim(i, added_axes)?)
        } else if (new_axis >> i) & 1 == 1 {
            added_axes += 1;
            Axis { size: 1, begin: 0, end: 1, stride: 1, ..Axis::default() }
        } else if i >= begin_count + expanded {
            full(in_dim(i, added_axes)?)
        } else {
            let k = i - added_ellipsis;
            if k >= begin_count {
                return Err(ctx.err("masks do not fit the begin/end/strides values"));
            }
            Axis {
                size: in_dim(i, added_axes)?,
                begin: begin[k],
                end: end[k],
                stride: strides[k],
                begin_mask: bit(o.begin_mask, k),
                end_mask: bit(o.end_mask, k),
                shrink: bit(o.shrink_axis_mask, k),
            }
        };
        if a.stride == 0 {
            return Err(ctx.err("a stride is 0"));
        }
        axes.push(a);
    }
    Ok(axes)
}

fn build_strided_slice(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let (begin, end, strides) = (const_i32(ctx, 1)?, const_i32(ctx, 2)?, const_i32(ctx, 3)?);
    if end.len() != begin.len() || strides.len() != begin.len() {
        return Err(ctx.err("begin, end and strides must have the same length"));
    }
    let offset = ctx.options.offset;
    let axes = strided_slice_axes(ctx, &x.shape, &begin, &end, &strides)?;
    // Output shape as TFLite's ResizeOutputTensor computes it.
    let mut out_shape = Vec::new();
    for (idx, a) in axes.iter().enumerate() {
        if a.shrink {
            continue;
        }
        let span = if offset {
            *end.get(idx).ok_or_else(|| ctx.err("offset slicing needs one end value per axis"))?
        } else {
            let s = start_for_axis(a);
            end_for_axis(a, s, false) - s
        };
        out_shape.push(((span as f32 / a.stride as f32).ceil() as i64).max(0) as usize);
    }
    // The copy, as TFLite's reference loops run it.
    let eff_shape: Vec<usize> = axes.iter().map(|a| a.size as usize).collect();
    let st = strides_of(&eff_shape);
    let (mut base, mut dims, mut vstrides) = (0isize, Vec::new(), Vec::new());
    for (a, &s) in axes.iter().zip(&st) {
        let start = start_for_axis(a);
        let count = loop_count(start, end_for_axis(a, start, offset), a.stride);
        if count > 0 {
            base += start as isize * s;
        }
        dims.push(count as usize);
        vstrides.push(a.stride as isize * s);
    }
    let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if n.is_none() || n != out_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
        return Err(ctx.err(format!("the slice copies {dims:?} elements into an output of shape {out_shape:?}")));
    }
    if dims.contains(&0) {
        base = 0;
    }
    ctx.outputs[0].shape = out_shape;
    view(ctx, es, x.num_elements(), base, &dims, &vstrides)
}

// ------------------------------------------------------------------------------------------ SPACE_TO_DEPTH / DEPTH_TO_SPACE

fn build_depth_space(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let bs = ctx.options.block_size;
    let &[b, h, w, c] = x.shape.as_slice() else {
        return Err(ctx.err(format!("the input must be 4-D, not {:?}", x.shape)));
    };
    if bs < 1 {
        return Err(ctx.err(format!("block size {bs}")));
    }
    let bs = bs as usize;
    let (sb, sh, sw) = ((h * w * c) as isize, (w * c) as isize, c as isize);
    // The output dimensions multiply by the block size (squared): an absurd one must not overflow.
    let grow = |v: usize, by: usize| v.checked_mul(by).ok_or_else(|| ctx.err(format!("block size {bs} is too large")));
    let bs2 = grow(bs, bs)?;
    let (dims, strides, out) = if ctx.op_name == "SPACE_TO_DEPTH" {
        if h % bs != 0 || w % bs != 0 {
            return Err(ctx.err(format!("height {h} and width {w} must be multiples of the block size {bs}")));
        }
        let bsi = bs as isize;
        (
            vec![b, h / bs, w / bs, bs, bs, c],
            vec![sb, bsi * sh, bsi * sw, sh, sw, 1],
            vec![b, h / bs, w / bs, grow(c, bs2)?],
        )
    } else {
        if c % bs2 != 0 {
            return Err(ctx.err(format!("depth {c} must be a multiple of the squared block size {bs}")));
        }
        let co = c / bs2;
        let out = vec![b, grow(h, bs)?, grow(w, bs)?, co];
        (vec![b, h, bs, w, bs, co], vec![sb, sh, (bs * co) as isize, sw, co as isize, 1], out)
    };
    ctx.outputs[0].shape = out;
    view(ctx, es, x.num_elements(), 0, &dims, &strides)
}

// ------------------------------------------------------------------------------------------ BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND

/// NHWC geometry of the batch ops (a 3-D input is N,H,1,C).
#[derive(Clone, Copy)]
struct BatchGeom {
    es: usize,
    in_nhw: [usize; 3],
    out_nhw: [usize; 3],
    depth: usize,
    block: [usize; 2],
    /// Crops (batch-to-space) or paddings (space-to-batch): top, left.
    before: [usize; 2],
}

/// Checks the 3-D/4-D input and the `[M]` block and `[M, 2]` crops/paddings constants.
fn batch_geom(ctx: &BuildCtx<'_>, what: &str) -> Result<(BatchGeom, [[usize; 2]; 2])> {
    let (x, es) = io_types(ctx)?;
    let (block, pads) = (const_i32(ctx, 1)?, const_i32(ctx, 2)?);
    let (n, h, w, depth) = match x.shape.as_slice() {
        &[n, h, w, c] => (n, h, w, c),
        &[n, h, c] => (n, h, 1, c),
        s => return Err(ctx.err(format!("the input must be 3-D or 4-D, not {s:?}"))),
    };
    let m = x.shape.len() - 2;
    if block.len() != m || pads.len() != 2 * m {
        return Err(ctx.err(format!("{m} spatial dimensions need {m} block sizes and {m}x2 {what}")));
    }
    if block.iter().any(|&b| b < 1) || pads.iter().any(|&p| p < 0) {
        return Err(ctx.err(format!("block sizes {block:?} must be >= 1 and {what} {pads:?} >= 0")));
    }
    let get = |v: &[i64], i: usize, default: usize| v.get(i).map_or(default, |&x| x as usize);
    let g = BatchGeom {
        es,
        in_nhw: [n, h, w],
        out_nhw: [0; 3],
        depth,
        block: [block[0] as usize, get(&block, 1, 1)],
        before: [pads[0] as usize, get(&pads, 2, 0)],
    };
    Ok((g, [[pads[0] as usize, pads[1] as usize], [get(&pads, 2, 0), get(&pads, 3, 0)]]))
}

/// Output shape in the input's rank.
fn batch_out_shape(rank: usize, g: &BatchGeom) -> Vec<usize> {
    let [n, h, w] = g.out_nhw;
    if rank == 4 {
        vec![n, h, w, g.depth]
    } else {
        vec![n, h, g.depth]
    }
}

struct BatchToSpace {
    g: BatchGeom,
}

impl Kernel for BatchToSpace {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = &self.g;
        let (x, y) = (io.ins[0], &mut *io.outs[0]);
        let row = g.depth * g.es;
        let ([in_n, in_h, in_w], [out_n, out_h, out_w]) = (g.in_nhw, g.out_nhw);
        for ib in 0..in_n {
            let (ob, spatial) = (ib % out_n, ib / out_n);
            let (dh, dw) = (spatial / g.block[1], spatial % g.block[1]);
            for ih in 0..in_h {
                let Some(oh) = (ih * g.block[0] + dh).checked_sub(g.before[0]).filter(|&v| v < out_h) else {
                    continue;
                };
                for iw in 0..in_w {
                    let Some(ow) = (iw * g.block[1] + dw).checked_sub(g.before[1]).filter(|&v| v < out_w) else {
                        continue;
                    };
                    let src = ((ib * in_h + ih) * in_w + iw) * row;
                    let dst = ((ob * out_h + oh) * out_w + ow) * row;
                    y[dst..dst + row].copy_from_slice(&x[src..src + row]);
                }
            }
        }
        Ok(())
    }
}

fn build_batch_to_space(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (mut g, crops) = batch_geom(ctx, "crops")?;
    let prod = g.block[0].checked_mul(g.block[1]).ok_or_else(|| ctx.err("the block sizes are too large"))?;
    let [n, h, w] = g.in_nhw;
    if n % prod != 0 {
        return Err(ctx.err(format!("batch {n} is not a multiple of the block size product {prod}")));
    }
    let crop = |size: usize, k: usize| size.checked_mul(g.block[k])?.checked_sub(crops[k][0] + crops[k][1]);
    let (Some(oh), Some(ow)) = (crop(h, 0), crop(w, 1)) else {
        return Err(ctx.err(format!("crops {crops:?} exceed the output size")));
    };
    g.out_nhw = [n / prod, oh, ow];
    ctx.outputs[0].shape = batch_out_shape(ctx.input(0)?.shape.len(), &g);
    Built::new(BatchToSpace { g })
}

struct SpaceToBatch {
    g: BatchGeom,
    pad: u8,
}

impl Kernel for SpaceToBatch {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = &self.g;
        let (x, y) = (io.ins[0], &mut *io.outs[0]);
        let row = g.depth * g.es;
        let ([in_n, in_h, in_w], [out_n, out_h, out_w]) = (g.in_nhw, g.out_nhw);
        for ob in 0..out_n {
            let ib = ob % in_n;
            let (sh, sw) = ((ob / in_n) / g.block[1], (ob / in_n) % g.block[1]);
            for oh in 0..out_h {
                for ow in 0..out_w {
                    let dst = ((ob * out_h + oh) * out_w + ow) * row;
                    let out = &mut y[dst..dst + row];
                    let h = (oh * g.block[0] + sh).checked_sub(g.before[0]).filter(|&v| v < in_h);
                    let w = (ow * g.block[1] + sw).checked_sub(g.before[1]).filter(|&v| v < in_w);
                    match (h, w) {
                        (Some(h), Some(w)) => {
                            let src = ((ib * in_h + h) * in_w + w) * row;
                            out.copy_from_slice(&x[src..src + row]);
                        }
                        _ => out.fill(self.pad),
                    }
                }
            }
        }
        Ok(())
    }
}

fn build_space_to_batch(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (mut g, pads) = batch_geom(ctx, "paddings")?;
    let [n, h, w] = g.in_nhw;
    let batch = n.checked_mul(g.block[0]).and_then(|b| b.checked_mul(g.block[1]));
    let mut out = [batch.ok_or_else(|| ctx.err(format!("block sizes {:?} are too large", g.block)))?, 0, 0];
    for (k, size) in [h, w].into_iter().enumerate() {
        let padded = size + pads[k][0] + pads[k][1];
        if padded % g.block[k] != 0 {
            return Err(ctx.err(format!("padded size {padded} is not a multiple of the block size {}", g.block[k])));
        }
        out[k + 1] = padded / g.block[k];
    }
    g.out_nhw = out;
    let y = ctx.output(0)?;
    // TFLite pads quantized 8-bit tensors with the output zero point, everything else with zeros.
    let pad = match (y.dtype, &y.quant) {
        (TensorType::UINT8 | TensorType::INT8, Some(q)) => q.zero_point() as u8,
        _ => 0,
    };
    ctx.outputs[0].shape = batch_out_shape(ctx.input(0)?.shape.len(), &g);
    Built::new(SpaceToBatch { g, pad })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_counts() {
        assert_eq!(loop_count(0, 5, 2), 3);
        assert_eq!(loop_count(5, -1, -2), 3);
        assert_eq!(loop_count(3, 3, 1), 0);
        assert_eq!(loop_count(4, 1, 1), 0);
        assert_eq!(loop_count(-1, 2, -1), 0);
    }

    #[test]
    fn axis_bounds() {
        let a = Axis { size: 5, begin: -1, end: 0, stride: -2, ..Axis::default() };
        let s = start_for_axis(&a);
        assert_eq!((s, end_for_axis(&a, s, false)), (4, 0));
        let m = Axis { size: 5, begin: 9, end: 0, stride: -1, begin_mask: true, end_mask: true, shrink: false };
        let s = start_for_axis(&m);
        assert_eq!((s, end_for_axis(&m, s, false)), (4, -1));
    }
}
