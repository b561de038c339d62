//! SOFTMAX and LOGISTIC.
//!
//! Quantized SOFTMAX is TFLite's reference fixed-point softmax (gemmlowp `exp_on_negative_values`
//! and a Newton-Raphson reciprocal). Quantized LOGISTIC is a 256-entry table filled like TFLite's
//! `LUTPopulate` (float sigmoid of each dequantized value, rounded to the output scale).

use super::common::Q8;
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant::{self, fixed};
use crate::error::Result;
use crate::model::TensorType;

struct SoftmaxQ {
    q_in: Q8,
    q_out: Q8,
    depth: usize,
    /// By `max - x` (0..=255, all an 8-bit input can give): `exp_on_negative_values` of the
    /// scaled difference, or `None` below `diff_min`, where the reference skips the element.
    exp: [Option<i32>; 256],
}

struct SoftmaxF {
    depth: usize,
    beta: f32,
}

pub(crate) fn build_softmax(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let output = ctx.output(0)?.clone();
    let depth = *input.shape.last().ok_or_else(|| ctx.err("input must have at least one dimension"))?;
    ctx.outputs[0].shape = input.shape.clone();
    if depth == 0 {
        return Err(ctx.err("the last dimension is empty"));
    }
    if input.dtype == TensorType::FLOAT32 {
        return Built::new(SoftmaxF { depth, beta: ctx.options.beta });
    }
    let q_in = Q8::of(ctx, input.dtype)?;
    let q_out = Q8::of(ctx, output.dtype)?;
    let (in_scale, _) = input.qparams()?;
    // PreprocessSoftmaxScaling with 5 integer bits, then CalculateInputRadius.
    let bits = 5;
    let real =
        (ctx.options.beta as f64 * in_scale as f64 * (1i64 << (31 - bits)) as f64).min((1i64 << 31) as f64 - 1.0);
    let (multiplier, left_shift) = quant::quantize_multiplier(real);
    // TFLite's QuantizeMultiplierGreaterThanOne checks the multiplier is above 1 (a NaN or
    // negative beta, or a tiny scale, fails here).
    if real.is_nan() || real <= 1.0 || left_shift < 0 {
        return Err(ctx.err("softmax input scale is too small for the fixed-point kernel"));
    }
    let max_rescaled = ((1i64 << bits) - 1) as f64 * (1i64 << (31 - bits)) as f64 / (1i64 << left_shift) as f64;
    let diff_min = -(max_rescaled.floor() as i32);
    // The reference computes the exponential per element from `x - max`; with 8-bit inputs that
    // difference takes at most 256 values, so they are computed once here.
    let exp = std::array::from_fn(|d| {
        let diff = -(d as i32);
        (diff >= diff_min).then(|| {
            let s = quant::multiply_by_quantized_multiplier_greater_than_one(diff, multiplier, left_shift);
            fixed::exp_on_negative_values(s, 5)
        })
    });
    Built::new(SoftmaxQ { q_in, q_out, depth, exp })
}

impl Kernel for SoftmaxQ {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input = io.ins[0];
        let out = &mut *io.outs[0];
        let (out_min, out_max, out_bits) = match self.q_out {
            Q8::U8 => (0, 255, 8),
            Q8::I8 => (-128, 127, 8),
        };
        for (row_i, row_o) in input.chunks_exact(self.depth).zip(out.chunks_exact_mut(self.depth)) {
            let max = (0..self.depth).map(|c| self.q_in.get(row_i, c)).max().unwrap_or(0);
            let exp = |c: usize| self.exp[(max - self.q_in.get(row_i, c)) as usize];
            let mut sum: i32 = 0;
            for c in 0..self.depth {
                if let Some(e) = exp(c) {
                    sum = sum.wrapping_add(fixed::rescale(e, 0, 12));
                }
            }
            let (recip, bits_over_unit) = fixed::reciprocal(sum, 12);
            for c in 0..self.depth {
                row_o[c] = match exp(c) {
                    Some(e) => {
                        let unsat = quant::rounding_divide_by_pot(
                            quant::sat_rounding_doubling_high_mul(recip, e),
                            bits_over_unit + 31 - out_bits,
                        );
                        self.q_out.put((unsat + out_min).clamp(out_min, out_max))
                    }
                    None => self.q_out.put(out_min),
                };
            }
        }
        Ok(())
    }
}

impl Kernel for SoftmaxF {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input: &[f32] = cast(io.ins[0])?;
        let out: &mut [f32] = cast_mut(io.outs[0])?;
        for (ri, ro) in input.chunks_exact(self.depth).zip(out.chunks_exact_mut(self.depth)) {
            let max = ri.iter().copied().fold(f32::MIN, f32::max);
            let mut sum = 0.0f32;
            for (o, &x) in ro.iter_mut().zip(ri) {
                *o = ((x - max) * self.beta).exp();
                sum += *o;
            }
            for o in ro.iter_mut() {
                *o /= sum;
            }
        }
        Ok(())
    }
}

/// A 256-entry lookup table from input byte to output byte.
pub(crate) struct Lut {
    table: [u8; 256],
    /// `Some(k)` when the table is `b ^ k` (uint8 <-> int8 with zero points 128 apart, the usual
    /// QUANTIZE at a model's edges): a vectorisable loop then replaces the lookups.
    xor: Option<u8>,
}

impl Lut {
    /// A kernel looking bytes up in `table`.
    pub fn new(table: [u8; 256]) -> Lut {
        let k = table[0];
        let xor = (0..256).all(|b| table[b] == b as u8 ^ k).then_some(k);
        Lut { table, xor }
    }

    /// TFLite's `LUTPopulate` for 8-bit types with a float transform.
    pub fn populate(
        q_in: Q8,
        in_scale: f32,
        in_zp: i32,
        q_out: Q8,
        out_scale: f32,
        out_zp: i32,
        f: impl Fn(f32) -> f32,
    ) -> Lut {
        let mut table = [0u8; 256];
        let inverse_scale = 1.0 / out_scale;
        let (lo, hi) = match q_out {
            Q8::U8 => (0, 255),
            Q8::I8 => (-128, 127),
        };
        for byte in 0..256usize {
            let val = q_in.get(&[byte as u8], 0);
            let dequantized = in_scale * (val - in_zp) as f32;
            let transformed = f(dequantized);
            let rescaled = (transformed * inverse_scale).round();
            let quantized = (rescaled + out_zp as f32) as i32;
            table[byte] = q_out.put(quantized.clamp(lo, hi));
        }
        Lut::new(table)
    }
}

impl Kernel for Lut {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        if let Some(k) = self.xor {
            for (o, &i) in io.outs[0].iter_mut().zip(io.ins[0]) {
                *o = i ^ k;
            }
            return Ok(());
        }
        for (o, &i) in io.outs[0].iter_mut().zip(io.ins[0]) {
            *o = self.table[i as usize];
        }
        Ok(())
    }
}

struct LogisticF;

impl Kernel for LogisticF {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input: &[f32] = cast(io.ins[0])?;
        let out: &mut [f32] = cast_mut(io.outs[0])?;
        for (o, &x) in out.iter_mut().zip(input) {
            *o = 1.0 / (1.0 + (-x).exp());
        }
        Ok(())
    }
}

pub(crate) fn build_logistic(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    ctx.outputs[0].shape = input.shape.clone();
    let output = ctx.output(0)?.clone();
    if input.dtype == TensorType::FLOAT32 {
        return Built::new(LogisticF);
    }
    let q_in = Q8::of(ctx, input.dtype)?;
    let q_out = Q8::of(ctx, output.dtype)?;
    let (is, iz) = input.qparams()?;
    let (os, oz) = output.qparams()?;
    Built::new(Lut::populate(q_in, is, iz, q_out, os, oz, |v| 1.0 / (1.0 + (-v).exp())))
}
