//! The strided view of the byte-moving shape ops (SLICE, STRIDED_SLICE, TRANSPOSE,
//! SPACE_TO_DEPTH, DEPTH_TO_SPACE), and the operand checks they share with the batch ops.
//!
//! Every output element, in order, is the input element at `base + sum(index[k] * stride[k])`,
//! for any fixed-size element type. The view is resolved at build time (dimensions merged, every
//! offset checked against the input), so running is a nested copy.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::error::{Error, Result};
use crate::model::TensorType;

/// Most dimensions of a view (after merging).
const VD: usize = 8;

/// Input and output of the same type; returns the input and its element size.
pub(super) fn io_types(ctx: &BuildCtx<'_>) -> Result<(TensorInfo, usize)> {
    let x = ctx.input(0)?.clone();
    let y = ctx.output(0)?;
    if x.dtype != y.dtype {
        return Err(ctx.err(format!("input type {} differs from output type {}", x.dtype, y.dtype)));
    }
    let es = x.dtype.size_bytes().filter(|&s| s > 0).ok_or_else(|| ctx.err("elements of unknown size"))?;
    Ok((x, es))
}

/// Row-major element strides of `shape`.
pub(super) fn strides_of(shape: &[usize]) -> Vec<isize> {
    let mut st = vec![1isize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        st[k] = st[k + 1] * shape[k + 1] as isize;
    }
    st
}

/// Integer values of a constant int32 or int64 input.
pub(super) fn const_ints(ctx: &BuildCtx<'_>, i: usize) -> Result<Vec<i64>> {
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
pub(super) fn const_i32(ctx: &BuildCtx<'_>, i: usize) -> Result<Vec<i64>> {
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
pub(super) fn view(
    ctx: &BuildCtx<'_>,
    es: usize,
    in_len: usize,
    base: isize,
    dims: &[usize],
    strides: &[isize],
) -> Result<Built> {
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
