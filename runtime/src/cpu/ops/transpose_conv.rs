//! TRANSPOSE_CONV: uint8 (per-tensor), int8 (per-channel or per-tensor) and float32.
//!
//! TFLite's reference kernel scatters every input element into the outputs it touches; this one
//! gathers, for each output element, the same products (the integer sums are order-independent,
//! the float sum is taken in the reference's order: input row, column, channel).
//! Inputs: 0 the output shape (constant int32 `[4]`), 1 the weights `[Cout, KH, KW, Cin]`
//! (constant), 2 the input `[N, H, W, Cin]`, 3 the optional bias `[Cout]`.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant::{
    activation_range_f32, activation_range_quantized, multiply_by_quantized_multiplier, quantize_multiplier, type_range,
};
use crate::error::{Error, Result};
use crate::model::{Padding, TensorType};

/// Geometry shared by all element types.
#[derive(Clone, Copy)]
struct Geom {
    batch: usize,
    in_h: usize,
    in_w: usize,
    cin: usize,
    out_h: usize,
    out_w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride_h: usize,
    stride_w: usize,
    pad_h: usize,
    pad_w: usize,
}

impl Geom {
    /// The input rows (or columns) feeding output row `o`, with their filter row, ascending:
    /// `i * stride - pad + f = o`.
    fn taps(o: usize, stride: usize, pad: usize, k: usize, n_in: usize) -> impl Iterator<Item = (usize, usize)> {
        let t = o + pad; // i * stride + f = t
        let first = (t + 1).saturating_sub(k).div_ceil(stride);
        let last = (t / stride).min(n_in.saturating_sub(1));
        (first..=last).filter(move |_| n_in > 0).map(move |i| (i, t - i * stride))
    }
}

/// TFLite's `ComputePaddingHeightWidth` with the transposed roles (the "input" is the output):
/// the padding, and the input size a convolution of the output would have.
fn padding(p: Padding, size: usize, filter: usize, stride: usize) -> (usize, i64) {
    let (size, filter, stride) = (size as i64, filter as i64, stride as i64);
    let out = match p {
        Padding::Same => (size + stride - 1) / stride,
        Padding::Valid => (size + stride - filter) / stride,
    };
    ((((out - 1) * stride + filter - size).max(0) / 2) as usize, out)
}

/// Quantized kernel: `T` is u8 or i8.
struct Quant {
    g: Geom,
    /// Weights with their zero point removed, `[Cout, KH, KW, Cin]` (8-bit values minus an 8-bit
    /// zero point fit in 16 bits, and so do the inputs: the products are exact in 32 bits).
    weights: Vec<i16>,
    in_zp: i32,
    out_zp: i32,
    mult: Vec<(i32, i32)>,
    act: (i32, i32),
    has_bias: bool,
    signed: bool,
}

struct Float {
    g: Geom,
    act: (f32, f32),
    has_bias: bool,
}

fn check_len(got: usize, want: usize, what: &str) -> Result<()> {
    if got != want {
        return Err(Error::argument(format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}

impl Kernel for Quant {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = self.g;
        let x_bytes = io.ins[2];
        check_len(x_bytes.len(), g.batch * g.in_h * g.in_w * g.cin, "input")?;
        let bias = if self.has_bias { Some(cast::<i32>(io.ins[3])?) } else { None };
        if let Some(b) = bias {
            check_len(b.len(), g.cout, "bias")?;
        }
        // The input with its zero point removed, in scratch memory shared by the threads.
        if io.scratch.len() < x_bytes.len() * 2 {
            return Err(Error::argument("TRANSPOSE_CONV: scratch memory too small"));
        }
        let (xs, rest) = io.scratch.split_at_mut(x_bytes.len() * 2);
        let xs = cast_mut::<i16>(xs)?;
        for (d, &b) in xs.iter_mut().zip(x_bytes) {
            *d = (if self.signed { b as i8 as i32 } else { b as i32 } - self.in_zp) as i16;
        }
        let xs = &*xs;
        let out = &mut *io.outs[0];
        check_len(out.len(), g.batch * g.out_h * g.out_w * g.cout, "output")?;
        let row = g.out_w * g.cout;
        io.par.rows(out, row, 2, rest, |first, rows, _| {
            for (r, orow) in rows.chunks_exact_mut(row).enumerate() {
                let (b, oy) = ((first + r) / g.out_h, (first + r) % g.out_h);
                for ox in 0..g.out_w {
                    for oc in 0..g.cout {
                        let mut acc = 0i32;
                        for (iy, fy) in Geom::taps(oy, g.stride_h, g.pad_h, g.kh, g.in_h) {
                            for (ix, fx) in Geom::taps(ox, g.stride_w, g.pad_w, g.kw, g.in_w) {
                                let xo = ((b * g.in_h + iy) * g.in_w + ix) * g.cin;
                                let wo = ((oc * g.kh + fy) * g.kw + fx) * g.cin;
                                let dot = xs[xo..xo + g.cin]
                                    .iter()
                                    .zip(&self.weights[wo..wo + g.cin])
                                    .fold(0i32, |s, (&a, &w)| s.wrapping_add(a as i32 * w as i32));
                                acc = acc.wrapping_add(dot);
                            }
                        }
                        if let Some(bias) = bias {
                            acc = acc.wrapping_add(bias[oc]);
                        }
                        let (m, s) = self.mult[oc];
                        let v = multiply_by_quantized_multiplier(acc, m, s)
                            .wrapping_add(self.out_zp)
                            .clamp(self.act.0, self.act.1);
                        orow[ox * g.cout + oc] = if self.signed { v as i8 as u8 } else { v as u8 };
                    }
                }
            }
        });
        Ok(())
    }
}

impl Kernel for Float {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = self.g;
        let (w, x) = (cast::<f32>(io.ins[1])?, cast::<f32>(io.ins[2])?);
        check_len(w.len(), g.cout * g.kh * g.kw * g.cin, "weights")?;
        check_len(x.len(), g.batch * g.in_h * g.in_w * g.cin, "input")?;
        let bias = if self.has_bias { Some(cast::<f32>(io.ins[3])?) } else { None };
        if let Some(b) = bias {
            check_len(b.len(), g.cout, "bias")?;
        }
        let out = cast_mut::<f32>(io.outs[0])?;
        check_len(out.len(), g.batch * g.out_h * g.out_w * g.cout, "output")?;
        let row = g.out_w * g.cout;
        io.par.rows(out, row, 2, io.scratch, |first, rows, _| {
            for (r, orow) in rows.chunks_exact_mut(row).enumerate() {
                let (b, oy) = ((first + r) / g.out_h, (first + r) % g.out_h);
                for ox in 0..g.out_w {
                    for oc in 0..g.cout {
                        // Same order of additions as the reference scatter: iy, ix, then channel.
                        let mut acc = 0f32;
                        for (iy, fy) in Geom::taps(oy, g.stride_h, g.pad_h, g.kh, g.in_h) {
                            for (ix, fx) in Geom::taps(ox, g.stride_w, g.pad_w, g.kw, g.in_w) {
                                let xo = ((b * g.in_h + iy) * g.in_w + ix) * g.cin;
                                let wo = ((oc * g.kh + fy) * g.kw + fx) * g.cin;
                                for (&a, &f) in x[xo..xo + g.cin].iter().zip(&w[wo..wo + g.cin]) {
                                    acc += a * f;
                                }
                            }
                        }
                        if let Some(bias) = bias {
                            acc += bias[oc];
                        }
                        orow[ox * g.cout + oc] = acc.max(self.act.0).min(self.act.1);
                    }
                }
            }
        });
        Ok(())
    }
}

/// Builds TRANSPOSE_CONV.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let shape_t = ctx.expect_input(0, TensorType::INT32)?.clone();
    let w = ctx.input(1)?.clone();
    let x = ctx.input(2)?.clone();
    let y = ctx.output(0)?.clone();
    let bias = ctx.inputs.get(3).cloned().flatten();
    let out_shape = ctx.constant_i32(0)?;
    if shape_t.num_elements() != 4 || out_shape.len() != 4 || out_shape.iter().any(|&d| d < 0) {
        return Err(ctx.err(format!("the output shape {out_shape:?} must be 4 sizes")));
    }
    let out_shape: Vec<usize> = out_shape.iter().map(|&d| d as usize).collect();
    let (&[n, in_h, in_w, cin], &[cout, kh, kw, wcin]) = (x.shape.as_slice(), w.shape.as_slice()) else {
        return Err(ctx.err(format!("input {:?} and weights {:?} must be 4-D", x.shape, w.shape)));
    };
    if wcin != cin || out_shape[0] != n || out_shape[3] != cout {
        return Err(ctx.err(format!(
            "input {:?}, weights {:?} (OHWI) and output shape {out_shape:?} do not match",
            x.shape, w.shape
        )));
    }
    let o = ctx.options;
    if o.stride_h < 1 || o.stride_w < 1 {
        return Err(ctx.err(format!("strides {}x{}", o.stride_h, o.stride_w)));
    }
    let (stride_h, stride_w) = (o.stride_h as usize, o.stride_w as usize);
    let (out_h, out_w) = (out_shape[1], out_shape[2]);
    let ((pad_h, conv_h), (pad_w, conv_w)) =
        (padding(o.padding, out_h, kh, stride_h), padding(o.padding, out_w, kw, stride_w));
    if conv_h != in_h as i64 || conv_w != in_w as i64 {
        return Err(ctx.err(format!(
            "input {in_h}x{in_w} does not match the output {out_h}x{out_w}: \
             a convolution of the output with this filter, stride and padding gives {conv_h}x{conv_w}"
        )));
    }
    let g = Geom { batch: n, in_h, in_w, cin, out_h, out_w, cout, kh, kw, stride_h, stride_w, pad_h, pad_w };
    if y.dtype != x.dtype {
        return Err(ctx.err("the output type must be the input type"));
    }
    ctx.outputs[0].shape = out_shape;
    if let Some(b) = &bias {
        if b.num_elements() != cout {
            return Err(ctx.err(format!("bias has {} values for {cout} output channels", b.num_elements())));
        }
    }
    let has_bias = bias.is_some();
    match x.dtype {
        TensorType::FLOAT32 => {
            if w.dtype != TensorType::FLOAT32 || bias.as_ref().is_some_and(|b| b.dtype != TensorType::FLOAT32) {
                return Err(ctx.err("float32 input needs float32 weights and bias"));
            }
            Built::new(Float { g, act: activation_range_f32(o.activation), has_bias })
        }
        TensorType::UINT8 | TensorType::INT8 => build_quant(ctx, g, has_bias),
        t => Err(ctx.err(format!("TRANSPOSE_CONV does not support {t} inputs"))),
    }
}

fn build_quant(ctx: &BuildCtx<'_>, g: Geom, has_bias: bool) -> Result<Built> {
    let (w, x, y) = (ctx.input(1)?, ctx.input(2)?, ctx.output(0)?);
    let signed = x.dtype == TensorType::INT8;
    if w.dtype != x.dtype {
        return Err(ctx.err("weights must have the input type"));
    }
    if let Some(Some(b)) = ctx.inputs.get(3) {
        if b.dtype != TensorType::INT32 {
            return Err(ctx.err("a quantized TRANSPOSE_CONV needs an int32 bias"));
        }
    }
    let ((in_scale, in_zp), (out_scale, out_zp)) = (x.qparams()?, y.qparams()?);
    let wq = w.quant.as_ref().ok_or_else(|| ctx.err("the weights have no quantization"))?;
    if wq.scale.len() != 1 && wq.scale.len() != g.cout {
        return Err(ctx.err(format!("{} weight scales for {} output channels", wq.scale.len(), g.cout)));
    }
    if wq.scale.len() > 1 && wq.axis != 0 {
        return Err(ctx.err("per-channel weights must be quantized along dimension 0"));
    }
    // TFLite's int8 kernel ignores the weight zero point (it must be 0); uint8 subtracts it.
    let w_zp = if signed { 0 } else { wq.zero_point() };
    let data = ctx.constant(1)?;
    if data.len() != w.num_elements() {
        return Err(ctx.err("the weights' data does not match their shape"));
    }
    if (!signed && !(0..=255).contains(&w_zp)) || in_zp.abs() > 255 {
        return Err(ctx.err("zero points out of the 8-bit range"));
    }
    let weights = data.iter().map(|&b| (if signed { b as i8 as i32 } else { b as i32 } - w_zp) as i16).collect();
    let mult = (0..g.cout)
        .map(|c| {
            let ws = wq.scale[if wq.scale.len() == 1 { 0 } else { c }];
            quantize_multiplier(in_scale as f64 * ws as f64 / out_scale as f64)
        })
        .collect();
    let (qmin, qmax) = type_range(x.dtype);
    let act = activation_range_quantized(ctx.options.activation, out_scale, out_zp, qmin, qmax);
    let scratch = x.num_elements() * 2;
    Built::with_scratch(Quant { g, weights, in_zp, out_zp, mult, act, has_bias, signed }, scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_invert_the_scatter() {
        for &(stride, pad, k, n_in) in &[(2usize, 1usize, 3usize, 4usize), (1, 0, 3, 4), (3, 2, 2, 3), (2, 0, 1, 5)] {
            let n_out = n_in * stride + k;
            for o in 0..n_out {
                let got: Vec<_> = Geom::taps(o, stride, pad, k, n_in).collect();
                let want: Vec<_> = (0..n_in)
                    .flat_map(|i| (0..k).map(move |f| (i, f)))
                    .filter(|&(i, f)| (i * stride + f) as isize - pad as isize == o as isize)
                    .collect();
                assert_eq!(got, want, "o={o} stride={stride} pad={pad} k={k}");
            }
        }
    }
}
