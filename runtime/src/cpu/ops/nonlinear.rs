//! HARD_SWISH, TANH, LEAKY_RELU and PRELU: the activations besides the RELUs, SOFTMAX and
//! LOGISTIC that a user's own quantized model commonly contains.
//!
//! The quantized unary ones depend only on the input byte, so each builds a 256-entry table with
//! exactly the arithmetic of TFLite's reference kernel (`reference_ops::HardSwish`, the
//! `LUTPopulate` table of TANH, `reference_ops::QuantizeLeakyRelu`) and runs as a lookup. PRELU
//! broadcasts its alpha like MAXIMUM and MINIMUM do (see `minmax`).

use super::minmax::{binary_broadcast, broadcast_apply, Broadcast};
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::cpu::quant::{multiply_by_quantized_multiplier as mbqm, quantize_multiplier, rounding_divide_by_pot};
use crate::error::Result;
use crate::model::TensorType;

/// Checks one input and one output of the same type; the output takes the input's shape.
pub(super) fn unary_io(ctx: &mut BuildCtx<'_>) -> Result<(TensorInfo, TensorInfo)> {
    let x = ctx.input(0)?.clone();
    let y = ctx.output(0)?.clone();
    if x.dtype != y.dtype {
        return Err(ctx.err(format!("input type {} differs from output type {}", x.dtype, y.dtype)));
    }
    ctx.outputs[0].shape = x.shape.clone();
    Ok((x, y))
}

fn is_q8(t: TensorType) -> bool {
    t == TensorType::UINT8 || t == TensorType::INT8
}

/// The 8-bit values of a type, as (byte, value) pairs.
fn q8_values(t: TensorType) -> impl Iterator<Item = (u8, i32)> {
    let signed = t == TensorType::INT8;
    (0u8..=255).map(move |b| (b, if signed { b as i8 as i32 } else { b as i32 }))
}

/// A value clamped to the type's range, as its byte.
fn q8_byte(t: TensorType, v: i32) -> u8 {
    if t == TensorType::INT8 {
        v.clamp(-128, 127) as i8 as u8
    } else {
        v.clamp(0, 255) as u8
    }
}

fn lut(t: TensorType, f: impl Fn(i32) -> i32) -> Result<Built> {
    let mut table = [0u8; 256];
    for (b, v) in q8_values(t) {
        table[b as usize] = q8_byte(t, f(v));
    }
    Built::new(super::activation::Lut::new(table))
}

/// A float element-wise function.
struct FloatMap {
    f: fn(f32, f32) -> f32,
    param: f32,
}

impl Kernel for FloatMap {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let x = cast::<f32>(io.ins[0])?;
        let y = cast_mut::<f32>(io.outs[0])?;
        for (o, &i) in y.iter_mut().zip(x) {
            *o = (self.f)(i, self.param);
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------ HARD_SWISH

/// TFLite's `DownScaleInt32ToInt16Multiplier`.
fn downscale_multiplier(m: i32) -> i32 {
    if m >= i32::MAX - (1 << 15) {
        i16::MAX as i32
    } else {
        (m + (1 << 15)) >> 16
    }
}

fn sat_i16(v: i64) -> i32 {
    v.clamp(i16::MIN as i64, i16::MAX as i64) as i32
}

/// gemmlowp `SaturatingRoundingDoublingHighMul` of int16 values.
fn srdhm16(a: i32, b: i32) -> i32 {
    if a == b && a == i16::MIN as i32 {
        return i16::MAX as i32;
    }
    let ab = a * b;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16 as i32
}

/// `SaturatingDoublingHighMul` of int16 values (rounds toward zero).
fn sat_doubling_high_mul_i16(a: i32, b: i32) -> i32 {
    if a == b && a == i16::MIN as i32 {
        return i16::MAX as i32;
    }
    ((a * b) / (1 << 15)) as i16 as i32
}

pub(crate) fn build_hard_swish(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, y) = unary_io(ctx)?;
    if x.dtype == TensorType::FLOAT32 {
        return Built::new(FloatMap { f: |v, _| v * 6f32.min(0f32.max(v + 3.0)) / 6.0, param: 0.0 });
    }
    if !is_q8(x.dtype) {
        return Err(ctx.err("HARD_SWISH supports float32, uint8 and int8"));
    }
    let ((in_scale, in_zp), (out_scale, out_zp)) = (x.qparams()?, y.qparams()?);
    let hires_input_scale = (1.0f32 / 128.0) * in_scale;
    let reluish_scale = 3.0f32 / 32768.0;
    let (m, out_exp) = quantize_multiplier((hires_input_scale / out_scale) as f64);
    let out_mult = downscale_multiplier(m);
    if out_exp > 0 {
        return Err(ctx.err("HARD_SWISH: the output scale is too small for the input scale"));
    }
    let (m, relu_exp) = quantize_multiplier((hires_input_scale / reluish_scale) as f64);
    let relu_mult = downscale_multiplier(m);
    lut(x.dtype, |v| {
        let input = (v - in_zp) as i16 as i32;
        let hires = (input * 128) as i16 as i32;
        let preshift_out = srdhm16(hires, out_mult);
        let mut reluish = hires;
        if relu_exp > 0 {
            reluish = sat_i16((reluish as i64) << (relu_exp - 1).min(40));
        }
        reluish = srdhm16(reluish, relu_mult);
        if relu_exp > 0 {
            reluish = sat_i16((reluish as i64) * 2);
        }
        if relu_exp < 0 {
            reluish = rounding_divide_by_pot(reluish, (-relu_exp).min(31));
        }
        reluish = ((reluish + (1 << 15)) >> 1) as i16 as i32;
        let preshift = sat_doubling_high_mul_i16(reluish, preshift_out);
        let out = rounding_divide_by_pot(preshift, (-out_exp).min(31)) as i16 as i32;
        (out + out_zp) as i16 as i32
    })
}

// ------------------------------------------------------------------------------------------ TANH

pub(crate) fn build_tanh(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, y) = unary_io(ctx)?;
    if x.dtype == TensorType::FLOAT32 {
        return Built::new(FloatMap { f: |v, _| v.tanh(), param: 0.0 });
    }
    if !is_q8(x.dtype) {
        return Err(ctx.err("TANH supports float32, uint8 and int8"));
    }
    // TFLite's LUTPopulate: dequantize, transform, requantize, all in float.
    let ((in_scale, in_zp), (out_scale, out_zp)) = (x.qparams()?, y.qparams()?);
    let inverse_scale = 1.0f32 / out_scale;
    lut(x.dtype, |v| {
        let transformed = (in_scale * (v - in_zp) as f32).tanh();
        let rescaled = (transformed * inverse_scale).round();
        (rescaled + out_zp as f32) as i32
    })
}

// ------------------------------------------------------------------------------------------ LEAKY_RELU

pub(crate) fn build_leaky_relu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, y) = unary_io(ctx)?;
    let alpha = ctx.options.alpha;
    if x.dtype == TensorType::FLOAT32 {
        return Built::new(FloatMap { f: |v, a| if v > 0.0 { v } else { v * a }, param: alpha });
    }
    if !is_q8(x.dtype) {
        return Err(ctx.err("LEAKY_RELU supports float32, uint8 and int8"));
    }
    let ((in_scale, in_zp), (out_scale, out_zp)) = (x.qparams()?, y.qparams()?);
    // The products are float expressions in TFLite, widened to double afterwards.
    let (m_alpha, s_alpha) = quantize_multiplier((in_scale * alpha / out_scale) as f64);
    let (m_id, s_id) = quantize_multiplier((in_scale / out_scale) as f64);
    lut(x.dtype, |v| {
        let input = v - in_zp;
        if input >= 0 {
            out_zp.wrapping_add(mbqm(input, m_id, s_id))
        } else {
            out_zp.wrapping_add(mbqm(input, m_alpha, s_alpha))
        }
    })
}

// ------------------------------------------------------------------------------------------ PRELU

struct PreluQ<T> {
    bc: Broadcast,
    in_zp: i32,
    alpha_zp: i32,
    out_zp: i32,
    m1: (i32, i32),
    m2: (i32, i32),
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod + Into<i32> + Send + Sync + Q8> Kernel for PreluQ<T> {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (x, a) = (cast::<T>(io.ins[0])?, cast::<T>(io.ins[1])?);
        let out = cast_mut::<T>(io.outs[0])?;
        broadcast_apply(&self.bc, x, a, out, |x, a| {
            let input = x.into() - self.in_zp;
            let v = if input >= 0 {
                mbqm(input, self.m1.0, self.m1.1)
            } else {
                let alpha = a.into() - self.alpha_zp;
                mbqm(input.wrapping_mul(alpha), self.m2.0, self.m2.1)
            };
            T::clamp_from(v.wrapping_add(self.out_zp))
        });
        Ok(())
    }
}

/// 8-bit quantized element types.
trait Q8: Copy {
    fn clamp_from(v: i32) -> Self;
}
impl Q8 for u8 {
    fn clamp_from(v: i32) -> u8 {
        v.clamp(0, 255) as u8
    }
}
impl Q8 for i8 {
    fn clamp_from(v: i32) -> i8 {
        v.clamp(-128, 127) as i8
    }
}

struct PreluF32 {
    bc: Broadcast,
}

impl Kernel for PreluF32 {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (x, a) = (cast::<f32>(io.ins[0])?, cast::<f32>(io.ins[1])?);
        let out = cast_mut::<f32>(io.outs[0])?;
        broadcast_apply(&self.bc, x, a, out, |x, a| if x >= 0.0 { x } else { x * a });
        Ok(())
    }
}

pub(crate) fn build_prelu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, alpha, y) = (ctx.input(0)?.clone(), ctx.input(1)?.clone(), ctx.output(0)?.clone());
    if alpha.dtype != x.dtype || y.dtype != x.dtype {
        return Err(ctx.err("input, alpha and output must have the same type"));
    }
    let bc = binary_broadcast(ctx)?;
    if ctx.outputs[0].shape != x.shape {
        return Err(ctx.err(format!("alpha {:?} broadcasts the input {:?} to another shape", alpha.shape, x.shape)));
    }
    if x.dtype == TensorType::FLOAT32 {
        return Built::new(PreluF32 { bc });
    }
    if !is_q8(x.dtype) {
        return Err(ctx.err("PRELU supports float32, uint8 and int8"));
    }
    let ((in_scale, in_zp), (a_scale, alpha_zp), (out_scale, out_zp)) = (x.qparams()?, alpha.qparams()?, y.qparams()?);
    let m1 = quantize_multiplier((in_scale / out_scale) as f64);
    let m2 = quantize_multiplier((in_scale * a_scale / out_scale) as f64);
    if x.dtype == TensorType::UINT8 {
        Built::new(PreluQ::<u8> { bc, in_zp, alpha_zp, out_zp, m1, m2, _t: std::marker::PhantomData })
    } else {
        Built::new(PreluQ::<i8> { bc, in_zp, alpha_zp, out_zp, m1, m2, _t: std::marker::PhantomData })
    }
}
