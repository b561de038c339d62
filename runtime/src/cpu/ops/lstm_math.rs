//! Integer helpers of TFLite's fully-integer LSTM: the portable `tensor_utils` kernels it calls
//! (`reference/portable_tensor_utils.cc`) and gemmlowp's 16-bit fixed-point `tanh` / `logistic`.
//!
//! Also the builder's readers of constant tensors and per-tensor quantization.
//!
//! gemmlowp's generic `FixedPoint<int16_t, N>` arithmetic computes in `int` and stores back to
//! `int16_t`, so plain additions wrap; the helpers below reproduce that with `wrapping_*`.

use crate::cpu::kernel::{BuildCtx, TensorInfo};
use crate::cpu::quant::{multiply_by_quantized_multiplier as mbqm, rounding_divide_by_pot};
use crate::error::Result;
use crate::model::TensorType;

// ---- gemmlowp 16-bit primitives ----

/// `SaturatingRoundingDoublingHighMul` on int16 (VQRDMULH).
#[inline(always)]
fn srdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// `RoundingDivideByPOT` on int16.
#[inline(always)]
fn rdpot16(x: i16, exponent: i32) -> i16 {
    let x = x as i32;
    let mask = (1i32 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    ((x >> exponent) + i32::from(remainder > threshold)) as i16
}

/// `SaturatingRoundingMultiplyByPOT<exponent>` on int16 (saturating left shift, or rounding right
/// shift for a negative exponent).
#[inline(always)]
fn mul_pot16(x: i16, exponent: i32) -> i16 {
    if exponent < 0 {
        return rdpot16(x, -exponent);
    }
    if exponent == 0 {
        return x;
    }
    let threshold = (1i32 << (15 - exponent)) - 1;
    let xi = x as i32;
    if xi > threshold {
        i16::MAX
    } else if xi < -threshold {
        i16::MIN
    } else {
        (xi << exponent) as i16
    }
}

/// `RoundingHalfSum` on int16.
#[inline(always)]
fn rounding_half_sum16(a: i16, b: i16) -> i16 {
    let sum = a as i32 + b as i32;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i16
}

/// `SaturatingAdd` on int16.
#[inline(always)]
fn sat_add16(a: i16, b: i16) -> i16 {
    (a as i32 + b as i32).clamp(-32768, 32767) as i16
}

/// `RescaleConstantInitializer` for int16: a Q31 constant rounded to 16 bits.
#[inline(always)]
const fn c16(v: i32) -> i16 {
    // RoundingDivideByPOT(v, 16), evaluated at compile time.
    let mask = (1i32 << 16) - 1;
    let remainder = v & mask;
    let threshold = (mask >> 1) + if v < 0 { 1 } else { 0 };
    ((v >> 16) + if remainder > threshold { 1 } else { 0 }) as i16
}

/// gemmlowp `exp_on_interval_between_negative_one_quarter_and_0_excl` (Q0.15).
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i16) -> i16 {
    const CONSTANT_TERM: i16 = c16(1895147668);
    const ONE_THIRD: i16 = c16(715827883);
    let x = a.wrapping_add(1 << 12);
    let x2 = srdhm16(x, x);
    let x3 = srdhm16(x2, x);
    let x4 = srdhm16(x2, x2);
    let x4_over_4 = rdpot16(x4, 2);
    let poly = rdpot16(srdhm16(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2), 1);
    sat_add16(CONSTANT_TERM, srdhm16(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp `exp_on_negative_values` for a Q`int_bits`.(15-`int_bits`) input; Q0.15 result.
fn exp_on_negative_values(a: i16, int_bits: i32) -> i16 {
    const BARREL: [(i32, i32); 7] =
        [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)];
    let frac_bits = 15 - int_bits;
    let one_quarter = (1i32 << (frac_bits - 2)) as i16;
    let mask = one_quarter.wrapping_sub(1);
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result =
        exp_on_interval_between_negative_one_quarter_and_0_excl(mul_pot16(a_mod_quarter_minus_one_quarter, int_bits));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    for &(exponent, multiplier) in &BARREL {
        if int_bits > exponent {
            let bit = (1i32 << (frac_bits + exponent)) as i16;
            if remainder & bit != 0 {
                result = srdhm16(result, c16(multiplier));
            }
        }
    }
    if int_bits > 5 {
        let clamp = c16(-(1i32 << (36 - int_bits)));
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i16::MAX;
    }
    result
}

/// Newton-Raphson start and iterations shared by the two `..._for_x_in_0_1` functions; returns
/// the Q2.13 estimate of `1 / (1 + a)` (halved denominator form).
fn reciprocal_iterations(a: i16) -> i16 {
    const C48_OVER_17: i16 = c16(1515870810);
    const CNEG32_OVER_17: i16 = c16(-1010580540);
    const ONE_Q2: i16 = 1 << 13;
    let half_denominator = rounding_half_sum16(a, i16::MAX);
    let mut x = C48_OVER_17.wrapping_add(srdhm16(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm16(half_denominator, x);
        let one_minus = ONE_Q2.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(mul_pot16(srdhm16(x, one_minus), 2));
    }
    x
}

/// gemmlowp `one_minus_x_over_one_plus_x_for_x_in_0_1` on Q0.15.
fn one_minus_x_over_one_plus_x_for_x_in_0_1(a: i16) -> i16 {
    mul_pot16(reciprocal_iterations(a).wrapping_sub(1 << 13), 2)
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1` on Q0.15.
fn one_over_one_plus_x_for_x_in_0_1(a: i16) -> i16 {
    mul_pot16(reciprocal_iterations(a), 1)
}

/// gemmlowp `tanh` of a Q`int_bits`.(15-`int_bits`) value, as Q0.15.
pub(super) fn tanh16(a: i16, int_bits: i32) -> i16 {
    let n = if a < 0 { a } else { a.wrapping_neg() };
    let t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, int_bits + 1));
    if a == 0 {
        0
    } else if a < 0 {
        t.wrapping_neg()
    } else {
        t
    }
}

/// gemmlowp `logistic` of a Q`int_bits`.(15-`int_bits`) value, as Q0.15.
pub(super) fn logistic16(a: i16, int_bits: i32) -> i16 {
    let abs = if a > 0 { a } else { a.wrapping_neg() };
    let positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(abs.wrapping_neg(), int_bits));
    if a == 0 {
        c16(1 << 30)
    } else if a > 0 {
        positive
    } else {
        i16::MAX.wrapping_sub(positive)
    }
}

// ---- 32-bit helpers ----

// ---- portable tensor_utils kernels ----

/// `MatrixBatchVectorMultiplyAccumulate` (int8 x int8 -> int16/int8 with bias, scale and
/// zero point): `out[b][r] = clamp(out[b][r] + zp + scale(bias[r] + sum_c in[b][c] * w[r][c]))`.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_accumulate<T: Copy + Into<i32>>(
    input: &[i8],
    bias: &[i32],
    weights: &[i8],
    (multiplier, shift): (i32, i32),
    n_batch: usize,
    n_input: usize,
    n_output: usize,
    output_zp: i32,
    out: &mut [T],
    (lo, hi): (i32, i32),
    narrow: impl Fn(i32) -> T,
) {
    for b in 0..n_batch {
        let x = &input[b * n_input..(b + 1) * n_input];
        for r in 0..n_output {
            let w = &weights[r * n_input..(r + 1) * n_input];
            let mut acc = bias[r];
            for (&xv, &wv) in x.iter().zip(w) {
                acc = acc.wrapping_add(xv as i32 * wv as i32);
            }
            let o = &mut out[b * n_output + r];
            let acc = mbqm(acc, multiplier, shift).wrapping_add(output_zp).wrapping_add((*o).into());
            *o = narrow(acc.clamp(lo, hi));
        }
    }
}

/// `VectorBatchVectorCwiseProductAccumulate` (int16): `out[i] = sat16(out[i] + scale(v[i % v_size]
/// * batch[i]))` over `n_batch * v_size` contiguous elements.
pub(super) fn vector_batch_product_accumulate(
    vector: &[i16],
    v_size: usize,
    batch: &[i16],
    n_batch: usize,
    (multiplier, shift): (i32, i32),
    out: &mut [i16],
) {
    for i in 0..n_batch * v_size {
        let prod = mbqm(vector[i % v_size] as i32 * batch[i] as i32, multiplier, shift);
        out[i] = prod.wrapping_add(out[i] as i32).clamp(-32768, 32767) as i16;
    }
}

/// Parameters of the integer layer normalisation of one gate.
pub(super) struct LayerNorm {
    /// Coefficients (int16), one per cell.
    pub weights: Vec<i16>,
    /// Gate bias (int32), one per cell.
    pub bias: Vec<i32>,
    /// Quantized layer-norm scale.
    pub scale: (i32, i32),
    /// Variance used when the computed one is below 1.
    pub variance_guard: i32,
}

/// `ApplyLayerNorm` (integer), in place on `n_batch` rows of `n_input` values.
pub(super) fn apply_layer_norm(gate: &mut [i16], ln: &LayerNorm, n_batch: usize, n_input: usize) {
    const TWO_TO_20: i64 = 1 << 20;
    for row in gate.chunks_exact_mut(n_input).take(n_batch) {
        let (mut sum, mut sum_sq) = (0i64, 0i64);
        for &v in row.iter() {
            sum += v as i64;
            sum_sq += (v as i32 * v as i32) as i64;
        }
        let mean = (sum * 1024 / n_input as i64) as i32;
        let temp = (TWO_TO_20 as i32 / n_input as i32) as i64;
        let variance = sum_sq.wrapping_mul(temp).wrapping_sub(mean as i64 * mean as i64);
        let mut variance2 = (variance / TWO_TO_20) as i32;
        if variance2 < 1 {
            variance2 = ln.variance_guard;
        }
        let (inv_a, inv_b) = crate::cpu::quant::inv_sqrt_quantized_multiplier_exp(variance2, -1);
        for (j, v) in row.iter_mut().enumerate() {
            let shifted = (*v as i32).wrapping_mul(1024).wrapping_sub(mean);
            let rescaled = mbqm(shifted, inv_a, inv_b);
            let val3 = rescaled.wrapping_mul(ln.weights[j] as i32).wrapping_add(ln.bias[j]) as i64;
            let val4 = ((if val3 > 0 { val3 + 512 } else { val3 - 512 }) / 1024) as i32;
            let val5 = mbqm(val4, ln.scale.0, ln.scale.1 + 12);
            *v = val5.clamp(-32768, 32767) as i16;
        }
    }
}

/// `UpdateLstmCellInteger`: `c = clip(sat16(c * f >> 15 + (i or 1 - f) * g >> shift))`, using
/// the forget-gate buffer as scratch like TFLite (`CwiseMul` truncates its results to int16).
pub(super) fn update_cell(
    c: &mut [i16],
    input_gate: Option<&[i16]>,
    fg: &mut [i16],
    cg: &[i16],
    shift: i32,
    clip: i16,
) {
    for (cv, &f) in c.iter_mut().zip(fg.iter()) {
        *cv = rounding_divide_by_pot(f as i32 * *cv as i32, 15) as i16;
    }
    for (k, f) in fg.iter_mut().enumerate() {
        let i = match input_gate {
            Some(ig) => ig[k],
            None => 32767i16.wrapping_sub(*f), // Sub1Vector
        };
        *f = rounding_divide_by_pot(i as i32 * cg[k] as i32, shift) as i16;
    }
    for (cv, &u) in c.iter_mut().zip(fg.iter()) {
        *cv = (*cv as i32 + u as i32).clamp(-32768, 32767) as i16;
        if clip > 0 {
            *cv = (*cv).clamp(-clip, clip);
        }
    }
}

/// TFLite's `CheckedLog2`: the rounded base-2 logarithm, if `x` is (nearly) a power of two.
pub(super) fn checked_log2(x: f32) -> Option<i32> {
    let l = x.ln() * (1.0 / 2f32.ln());
    let r = l.round();
    ((l - r).abs() < 1e-3 && r.is_finite()).then_some(r as i32)
}

/// `PrecomputeZeroPointTimesWeightWithBias`: `bias[r] + zero_point * sum_c w[r][c]`.
pub(super) fn effective_bias(w: &[i8], cols: usize, zero_point: i32, bias: Option<&[i32]>) -> Vec<i32> {
    w.chunks_exact(cols)
        .enumerate()
        .map(|(r, row)| {
            let sum = row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
            bias.map_or(0, |b| b[r]).wrapping_add(sum.wrapping_mul(zero_point))
        })
        .collect()
}

/// `CwiseMul` (int16 x int16 -> int8 with a scale), adding `zp` before saturating to int8 (the
/// caller passes the zero point with the sign TFLite's kernel uses).
pub(super) fn cwise_mul_scale(a: &[i16], b: &[i16], (m, s): (i32, i32), zp: i32, out: &mut [i8]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let v = mbqm(x as i32 * y as i32, m, s).wrapping_add(zp);
        *o = v.clamp(-128, 127) as i8;
    }
}

// ---- constant tensors of the builder ----

/// The per-tensor scale and zero point TFLite's `params` would hold.
pub(super) fn per_tensor(ctx: &BuildCtx<'_>, t: &TensorInfo, what: &str) -> Result<(f32, i32)> {
    match &t.quant {
        Some(q) if q.scale.len() == 1 => Ok((q.scale[0], q.zero_point())),
        Some(q) => Err(ctx.err(format!(
            "{what} tensor {} ({:?}) has {} scales; the integer LSTM needs per-tensor quantization",
            t.index,
            t.name,
            q.scale.len()
        ))),
        None => Err(ctx.err(format!("{what} tensor {} ({:?}) has no quantization parameters", t.index, t.name))),
    }
}

/// Constant bytes of input `i`, checked to hold `n` elements of `dtype`.
fn const_bytes<'m>(ctx: &BuildCtx<'m>, i: usize, dtype: TensorType, n: usize) -> Result<&'m [u8]> {
    let t = ctx.expect_input(i, dtype)?;
    let size = dtype.size_bytes().unwrap_or(1);
    let data = ctx.constant(i)?;
    if t.num_elements() != n || data.len() != n * size {
        return Err(ctx.err(format!(
            "input {i} has shape {:?} and {} bytes, expected {n} {} values",
            t.shape,
            data.len(),
            dtype.name()
        )));
    }
    Ok(data)
}

pub(super) fn weights_i8(ctx: &BuildCtx<'_>, i: usize, rows: usize, cols: usize) -> Result<Vec<i8>> {
    let t = ctx.input(i)?;
    if t.shape != [rows, cols] {
        return Err(ctx.err(format!("input {i} has shape {:?}, expected [{rows}, {cols}]", t.shape)));
    }
    Ok(const_bytes(ctx, i, TensorType::INT8, rows * cols)?.iter().map(|&b| b as i8).collect())
}

pub(super) fn const_i16(ctx: &BuildCtx<'_>, i: usize, n: usize) -> Result<Vec<i16>> {
    let d = const_bytes(ctx, i, TensorType::INT16, n)?;
    Ok(d.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
}

pub(super) fn const_i32(ctx: &BuildCtx<'_>, i: usize, n: usize) -> Result<Vec<i32>> {
    let d = const_bytes(ctx, i, TensorType::INT32, n)?;
    Ok(d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_round_like_gemmlowp() {
        assert_eq!(c16(1 << 30), 16384);
        assert_eq!(c16(242), 0);
        assert_eq!(c16(720401), 11);
        assert_eq!(c16(-(1 << 30)), -16384);
    }

    #[test]
    fn tanh_and_logistic_track_the_real_functions() {
        for bits in 0..=6 {
            for raw in (i16::MIN..=i16::MAX).step_by(97) {
                let x = raw as f64 / f64::from(1 << (15 - bits));
                let t = tanh16(raw, bits) as f64 / 32768.0;
                assert!((t - x.tanh()).abs() < 2e-3, "tanh bits {bits} raw {raw}: {t} vs {}", x.tanh());
                let l = logistic16(raw, bits) as f64 / 32768.0;
                let want = 1.0 / (1.0 + (-x).exp());
                assert!((l - want).abs() < 2e-3, "logistic bits {bits} raw {raw}: {l} vs {want}");
            }
        }
        assert_eq!(tanh16(0, 3), 0);
        assert_eq!(logistic16(0, 3), 16384);
    }
}
