//! What CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED share at build time: operand checks,
//! output geometry, bias, filter zero points and the `i16` weight packing.
//!
//! Packed weights are `i16` values with the filter zero point already subtracted,
//! `[out_channel][k]` with `k` padded to a multiple of 16: the layout the reference kernels of
//! CONV_2D and FULLY_CONNECTED read directly.

use super::common::{le_i32, out_size_and_pad, positive, set_output_shape, Q8};
use crate::cpu::kernel::{BuildCtx, TensorInfo};
use crate::error::Result;
use crate::model::TensorType;

/// K padding of packed weights (one AVX2 `madd` step).
pub(super) const KPAD: usize = 16;

pub(super) struct Geometry {
    pub(super) batches: usize,
    pub(super) in_h: usize,
    pub(super) in_w: usize,
    pub(super) in_c: usize,
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    pub(super) out_c: usize,
    pub(super) k_h: usize,
    pub(super) k_w: usize,
    pub(super) stride_h: usize,
    pub(super) stride_w: usize,
    pub(super) dil_h: usize,
    pub(super) dil_w: usize,
    pub(super) pad_h: usize,
    pub(super) pad_w: usize,
}

impl Geometry {
    /// Calls `f(tap, base)` for every filter tap of output pixel (b, oy, ox) in tap order:
    /// `base` is the byte offset of the input pixel under the tap, `None` when it falls in the
    /// padding.
    #[inline(always)]
    pub(super) fn taps(&self, b: usize, oy: usize, ox: usize, mut f: impl FnMut(usize, Option<usize>)) {
        for ky in 0..self.k_h {
            let iy = (oy * self.stride_h + ky * self.dil_h) as isize - self.pad_h as isize;
            let y_in = iy >= 0 && iy < self.in_h as isize;
            for kx in 0..self.k_w {
                let ix = (ox * self.stride_w + kx * self.dil_w) as isize - self.pad_w as isize;
                let base = (y_in && ix >= 0 && ix < self.in_w as isize)
                    .then(|| ((b * self.in_h + iy as usize) * self.in_w + ix as usize) * self.in_c);
                f(ky * self.k_w + kx, base);
            }
        }
    }
}

/// Input 0 and the constant weights (input 1) of a convolution-like op, with their 8-bit
/// input and output types; hybrid (float/int mixed) weights are refused.
pub(super) fn operands(ctx: &BuildCtx<'_>, what: &str) -> Result<(TensorInfo, TensorInfo, Q8, Q8)> {
    let input = ctx.input(0)?.clone();
    let filter = ctx.input(1)?.clone();
    let q_in = Q8::of(ctx, input.dtype)?;
    let q_out = Q8::of(ctx, ctx.output(0)?.dtype)?;
    if filter.dtype != input.dtype {
        return Err(ctx.err(format!("{what} and input types differ (hybrid operations are not supported)")));
    }
    Ok((input, filter, q_in, q_out))
}

/// Strides, dilations and padding from the options; output spatial size; sets the output shape.
pub(super) fn geometry(
    ctx: &mut BuildCtx<'_>,
    [n, ih, iw, ic]: [usize; 4],
    kh: usize,
    kw: usize,
    oc: usize,
) -> Result<Geometry> {
    let o = ctx.options.clone();
    let (sh, sw) = (positive(ctx, "stride_h", o.stride_h)?, positive(ctx, "stride_w", o.stride_w)?);
    let (dh, dw) = (positive(ctx, "dilation_h", o.dilation_h)?, positive(ctx, "dilation_w", o.dilation_w)?);
    let (oh, pad_h) = out_size_and_pad(o.padding, ih, kh, sh, dh);
    let (ow, pad_w) = out_size_and_pad(o.padding, iw, kw, sw, dw);
    set_output_shape(ctx, 0, vec![n, oh, ow, oc])?;
    Ok(Geometry {
        batches: n,
        in_h: ih,
        in_w: iw,
        in_c: ic,
        out_h: oh,
        out_w: ow,
        out_c: oc,
        k_h: kh,
        k_w: kw,
        stride_h: sh,
        stride_w: sw,
        dil_h: dh,
        dil_w: dw,
        pad_h,
        pad_w,
    })
}

pub(super) fn pack_weights(q: Q8, data: &[u8], rows: usize, k: usize, zp: &[i32], kp: usize) -> Vec<i16> {
    let mut w = vec![0i16; rows * kp];
    for r in 0..rows {
        let z = if zp.len() == 1 { zp[0] } else { zp.get(r).copied().unwrap_or(0) };
        for i in 0..k {
            w[r * kp + i] = (q.get(data, r * k + i) - z) as i16;
        }
    }
    w
}

pub(super) fn bias_of(ctx: &BuildCtx<'_>, index: usize, channels: usize) -> Result<Vec<i32>> {
    match ctx.inputs.get(index).and_then(|b| b.as_ref()) {
        None => Ok(vec![0; channels]),
        Some(b) => {
            if b.dtype != TensorType::INT32 {
                return Err(ctx.err(format!("bias has type {}, expected int32", b.dtype.name())));
            }
            let v = le_i32(ctx.constant(index)?);
            if v.len() != channels {
                return Err(ctx.err(format!("bias has {} values for {channels} output channels", v.len())));
            }
            Ok(v)
        }
    }
}

pub(super) fn filter_zero_points(ctx: &BuildCtx<'_>, index: usize) -> Result<Vec<i32>> {
    let f = ctx.input(index)?;
    let q = f.quant.as_ref().ok_or_else(|| ctx.err("the filter has no quantization parameters"))?;
    Ok(q.zero_point.clone())
}
