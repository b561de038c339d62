//! Fixed-point arithmetic of TFLite's reference kernels (gemmlowp double rounding).
//!
//! Every function here mirrors one helper of TFLite's `kernels/internal/common.h` or gemmlowp's
//! `fixedpoint.h`, with the same rounding, so that results match the reference bit for bit.

use crate::model::Activation;

/// `frexp`: `x = m * 2^e` with `0.5 <= |m| < 1` (`(0, 0)` for 0, non-finite values unchanged).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, exp - 1022)
}

/// TFLite's `QuantizeMultiplier`: a real multiplier as a Q31 value and a power-of-two exponent.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 {
        return (0, 0);
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    (q_fixed as i32, shift)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`.
#[inline(always)]
pub fn sat_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT` (round half away from zero).
///
/// `exponent` should be in `0..=31`; others (reachable with valid models: a uint8 SOFTMAX over
/// about 500 or more equal logits asks for 32) are undefined in C++, and give what x86 does
/// (shift counts masked to 6 bits for the 64-bit mask, 5 bits for the 32-bit shift), never a
/// panic.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = (1i64.wrapping_shl(exponent as u32) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    x.wrapping_shr(exponent as u32).wrapping_add(i32::from(remainder > threshold))
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding).
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    // Shifts of 32 or more (absurd scales, e.g. 3e-35 in some LSTM models) are undefined in C++;
    // x86 masks the count to 5 bits, which `wrapping_shl` reproduces.
    rounding_divide_by_pot(
        sat_rounding_doubling_high_mul(x.wrapping_mul(1i32.wrapping_shl(left as u32)), multiplier),
        right.min(31),
    )
}

/// TFLite's `MultiplyByQuantizedMultiplierSmallerThanOneExp`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_smaller_than_one_exp(x: i32, multiplier: i32, left_shift: i32) -> i32 {
    rounding_divide_by_pot(sat_rounding_doubling_high_mul(x, multiplier), -left_shift)
}

/// TFLite's `MultiplyByQuantizedMultiplierGreaterThanOne`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_greater_than_one(x: i32, multiplier: i32, left_shift: i32) -> i32 {
    sat_rounding_doubling_high_mul(x.wrapping_mul(1i32.wrapping_shl(left_shift as u32)), multiplier)
}

/// TFLite's `GetInvSqrtQuantizedMultiplierExp(input, reverse_shift)`: `1 / sqrt(input)` as a
/// multiplier and shift (a Newton-Raphson iteration in gemmlowp fixed point with 3 integer bits).
/// Used by L2_NORMALIZATION and the LSTM layer norm.
pub fn inv_sqrt_quantized_multiplier_exp(mut input: i32, reverse_shift: i32) -> (i32, i32) {
    if input <= 1 {
        return (i32::MAX, 0);
    }
    let mut shift = 11i32;
    while input >= 1 << 29 {
        input /= 4;
        shift += 1;
    }
    let max_left_shift_bits = (input as u32).leading_zeros() as i32 - 1;
    let left_shift_bit_pairs = max_left_shift_bits / 2 - 1;
    shift -= left_shift_bit_pairs;
    input <<= 2 * left_shift_bit_pairs;
    // Q3.28 values: F3 * F3 is F6 (raw SaturatingRoundingDoublingHighMul); Rescale<3> from F6 / F9
    // shifts left by 3 / 6.
    let half_input = rounding_divide_by_pot(input >> 1, 1);
    const HALF_THREE: i32 = (1 << 28) + (1 << 27);
    let mut x: i32 = 1 << 28;
    for _ in 0..5 {
        let x3 = fixed::mul_by_pot(sat_rounding_doubling_high_mul(sat_rounding_doubling_high_mul(x, x), x), 6);
        let d =
            sat_rounding_doubling_high_mul(HALF_THREE, x).wrapping_sub(sat_rounding_doubling_high_mul(half_input, x3));
        x = fixed::mul_by_pot(d, 3);
    }
    let mut out = sat_rounding_doubling_high_mul(x, 1518500250); // 1/sqrt(2) in Q0.31
    if shift < 0 {
        out = out.wrapping_shl((-shift) as u32);
        shift = 0;
    }
    (out, shift * reverse_shift)
}

/// Integer range of a quantized type.
pub fn type_range(dtype: crate::model::TensorType) -> (i32, i32) {
    use crate::model::TensorType as T;
    match dtype {
        T::UINT8 => (0, 255),
        T::INT8 => (-128, 127),
        T::INT16 => (-32768, 32767),
        _ => (i32::MIN, i32::MAX),
    }
}

/// TFLite's `CalculateActivationRangeQuantized` for an output with `scale` and `zero_point`.
pub fn activation_range_quantized(act: Activation, scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> (i32, i32) {
    // Saturating: a tiny (absurd) scale must not overflow.
    let q = |f: f32| zero_point.saturating_add((f / scale).round() as i32);
    match act {
        Activation::Relu => (qmin.max(q(0.0)), qmax),
        Activation::Relu6 => (qmin.max(q(0.0)), qmax.min(q(6.0))),
        Activation::ReluN1To1 => (qmin.max(q(-1.0)), qmax.min(q(1.0))),
        _ => (qmin, qmax),
    }
}

/// TFLite's `CalculateActivationRange` for float outputs.
pub fn activation_range_f32(act: Activation) -> (f32, f32) {
    match act {
        Activation::Relu => (0.0, f32::MAX),
        Activation::Relu6 => (0.0, 6.0),
        Activation::ReluN1To1 => (-1.0, 1.0),
        _ => (f32::MIN, f32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_definition() {
        for &x in &[1.0, 0.5, 0.75, 3.0, 1e-300, 5e-324, 123456.789, 0.0039215689] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x}: {m}");
            assert_eq!(m * 2f64.powi(e + 60) * 2f64.powi(-60), x);
        }
    }

    #[test]
    fn quantize_multiplier_known_values() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // Rounds up to 2^31 and renormalises.
        assert_eq!(quantize_multiplier(0.99999999999), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(sat_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 0), 50);
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 2), 200);
        // SaturatingRoundingDoublingHighMul's nudge rounds an exact negative half up (-1.5 -> -1).
        assert_eq!(multiply_by_quantized_multiplier(-3, 1 << 30, 0), -1);
        assert_eq!(multiply_by_quantized_multiplier(3, 1 << 30, 0), 2);
    }

    #[test]
    fn out_of_range_exponents_behave_like_x86() {
        // The 64-bit mask is all ones, the 32-bit shift count is masked to 0: x + 1.
        assert_eq!(rounding_divide_by_pot(1000, 32), 1001);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 32), i32::MIN);
        assert_eq!(rounding_divide_by_pot(1000, 33), 501);
        let _ = rounding_divide_by_pot(-7, -3);
        let _ = rounding_divide_by_pot(i32::MIN, 200);
    }

    #[test]
    fn inv_sqrt_is_close() {
        for &v in &[2, 3, 10, 100, 1000, 12345, 65025, 1 << 20, (1 << 29) + 7, (1 << 30) + 12345, i32::MAX] {
            let (m, s) = inv_sqrt_quantized_multiplier_exp(v, -1);
            let got = m as f64 / 2f64.powi(31) * 2f64.powi(s);
            let want = 1.0 / (v as f64).sqrt();
            assert!((got / want - 1.0).abs() < 1e-3, "{v}: {got} vs {want}");
        }
    }

    /// The vector kernels compute SaturatingRoundingDoublingHighMul as
    /// `floor((a * b + 2^30) / 2^31)`; that equals gemmlowp's nudge-and-truncate for every
    /// non-saturating pair.
    #[test]
    fn doubling_high_mul_is_a_floor() {
        let floor_form = |a: i32, b: i32| ((a as i64 * b as i64 + (1 << 30)) >> 31) as i32;
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let edges =
            [0, 1, -1, 2, -2, 3, -3, i32::MAX, i32::MIN + 1, 1 << 30, -(1 << 30), (1 << 30) + 1, -(1 << 30) - 1];
        for &a in &edges {
            for &b in &edges {
                if !(a == i32::MIN && b == i32::MIN) {
                    assert_eq!(sat_rounding_doubling_high_mul(a, b), floor_form(a, b), "{a} {b}");
                }
            }
        }
        for _ in 0..1_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let (a, b) = (s as i32, (s >> 32) as i32);
            // Small values too, where exact halves occur.
            let (c, d) = (a >> 20, b & 0x7fff_ffff);
            assert_eq!(sat_rounding_doubling_high_mul(a, b), floor_form(a, b), "{a} {b}");
            assert_eq!(sat_rounding_doubling_high_mul(c, d), floor_form(c, d), "{c} {d}");
        }
    }
}

/// gemmlowp fixed-point functions on raw `i32` values; `ib` = integer bits of the operand.
pub mod fixed {
    use super::{rounding_divide_by_pot, sat_rounding_doubling_high_mul as mul};

    /// `SaturatingRoundingMultiplyByPOT<exponent>`.
    pub fn mul_by_pot(x: i32, exponent: i32) -> i32 {
        if exponent > 0 {
            let threshold = ((1i64 << (31 - exponent)) - 1) as i32;
            if x > threshold {
                i32::MAX
            } else if x < -threshold {
                i32::MIN
            } else {
                x.wrapping_shl(exponent as u32)
            }
        } else if exponent < 0 {
            rounding_divide_by_pot(x, -exponent)
        } else {
            x
        }
    }

    /// `Rescale<dst>` of a value with `src` integer bits.
    pub fn rescale(x: i32, src: i32, dst: i32) -> i32 {
        mul_by_pot(x, src - dst)
    }

    /// `exp_on_interval_between_negative_one_quarter_and_0_excl` (Q0.31 in and out).
    pub fn exp_quarter(a: i32) -> i32 {
        let constant_term: i32 = 1895147668;
        let one_third = 715827883;
        let x = a.wrapping_add(1 << 28);
        let x2 = mul(x, x);
        let x3 = mul(x2, x);
        let x4 = mul(x2, x2);
        let x4_over_4 = mul_by_pot(x4, -2);
        let poly = mul_by_pot(mul(x4_over_4.wrapping_add(x3), one_third).wrapping_add(x2), -1);
        constant_term.wrapping_add(mul(constant_term, x.wrapping_add(poly)))
    }

    /// `exp_on_negative_values` of a value with `ib` integer bits; result Q0.31.
    pub fn exp_on_negative_values(a: i32, ib: i32) -> i32 {
        let frac = 31 - ib;
        let one_quarter = 1i32 << (frac - 2);
        let mask = one_quarter - 1;
        let a_mod = (a & mask).wrapping_sub(one_quarter);
        let mut result = exp_quarter(rescale(a_mod, ib, 0));
        let remainder = a_mod.wrapping_sub(a);
        const BARREL: [(i32, i32); 7] =
            [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)];
        for (exp, m) in BARREL {
            if ib > exp {
                let shift = frac + exp;
                if remainder & (1 << shift) != 0 {
                    result = mul(result, m);
                }
            }
        }
        if ib > 5 {
            let clamp = -(1i32 << (36 - ib));
            if a < clamp {
                result = 0;
            }
        }
        if a == 0 {
            result = i32::MAX;
        }
        result
    }

    /// `one_over_one_plus_x_for_x_in_0_1` (Q0.31 in and out).
    pub fn one_over_one_plus_x(a: i32) -> i32 {
        let half_denominator = rounding_half_sum(a, i32::MAX);
        let c48_17 = 1515870810;
        let cn32_17 = -1010580540;
        let one_q2 = 1i32 << 29;
        let mut x = c48_17 + mul(half_denominator, cn32_17);
        for _ in 0..3 {
            let hdx = mul(half_denominator, x);
            let one_minus = one_q2.wrapping_sub(hdx);
            x = x.wrapping_add(rescale(mul(x, one_minus), 4, 2));
        }
        // ExactMulByPot<-1> keeps the raw value as Q1.30; Rescale<0> then doubles it.
        rescale(x, 1, 0)
    }

    /// gemmlowp `RoundingHalfSum`.
    pub fn rounding_half_sum(a: i32, b: i32) -> i32 {
        let sum = a as i64 + b as i64;
        let sign = if sum >= 0 { 1 } else { -1 };
        ((sum + sign) / 2) as i32
    }

    /// TFLite's `GetReciprocal`: returns (Q0.31 reciprocal of the shifted value, bits over unit).
    pub fn reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
        let headroom_plus_one = (x as u32).leading_zeros() as i32;
        let num_bits_over_unit = integer_digits - headroom_plus_one;
        let shifted_minus_one = ((x as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1u32 << 31) as i32;
        (one_over_one_plus_x(shifted_minus_one), num_bits_over_unit)
    }
}
