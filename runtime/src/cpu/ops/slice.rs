//! SLICE and STRIDED_SLICE (with TFLite's masks and offset slicing), for any fixed-size element
//! type: strided views of the input.

use super::view::{const_i32, const_ints, io_types, strides_of, view};
use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_slice(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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

pub(crate) fn build_strided_slice(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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
