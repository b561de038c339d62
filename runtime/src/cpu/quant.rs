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
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=31).contains(&exponent));
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding).
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rounding_divide_by_pot(sat_rounding_doubling_high_mul(x.wrapping_mul(1 << left), multiplier), right)
}

/// TFLite's `MultiplyByQuantizedMultiplierSmallerThanOneExp`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_smaller_than_one_exp(x: i32, multiplier: i32, left_shift: i32) -> i32 {
    rounding_divide_by_pot(sat_rounding_doubling_high_mul(x, multiplier), -left_shift)
}

/// TFLite's `MultiplyByQuantizedMultiplierGreaterThanOne`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_greater_than_one(x: i32, multiplier: i32, left_shift: i32) -> i32 {
    sat_rounding_doubling_high_mul(x.wrapping_mul(1 << left_shift), multiplier)
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
    let q = |f: f32| zero_point + (f / scale).round() as i32;
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
            assert_eq!(m * 2f64.powi(e), x);
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
        assert_eq!(multiply_by_quantized_multiplier(-3, 1 << 30, 0), -2);
    }
}
