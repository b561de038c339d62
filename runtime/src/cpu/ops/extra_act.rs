//! Activations and element-wise binary ops a user's own quantized model commonly contains:
//! HARD_SWISH, TANH, LEAKY_RELU, PRELU, MAXIMUM, MINIMUM and L2_NORMALIZATION.
//!
//! The quantized unary ops depend only on the input byte, so each builds a 256-entry table with
//! exactly the arithmetic of TFLite's reference kernel (`reference_ops::HardSwish`, the
//! `LUTPopulate` table of TANH, `reference_ops::QuantizeLeakyRelu`) and runs as a lookup.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::cpu::quant::{
    multiply_by_quantized_multiplier as mbqm, multiply_by_quantized_multiplier_smaller_than_one_exp,
    quantize_multiplier, rounding_divide_by_pot,
};
use crate::error::Result;
use crate::model::{Activation, TensorType};

/// Builds HARD_SWISH, TANH, LEAKY_RELU, PRELU, MAXIMUM, MINIMUM or L2_NORMALIZATION.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    match ctx.op_name {
        "HARD_SWISH" => build_hard_swish(ctx),
        "TANH" => build_tanh(ctx),
        "LEAKY_RELU" => build_leaky_relu(ctx),
        "PRELU" => build_prelu(ctx),
        "MAXIMUM" | "MINIMUM" => build_max_min(ctx),
        "L2_NORMALIZATION" => build_l2_norm(ctx),
        _ => Err(ctx.err("not an activation op")),
    }
}

/// Checks one input and one output of the same type; the output takes the input's shape.
fn unary_io(ctx: &mut BuildCtx<'_>) -> Result<(TensorInfo, TensorInfo)> {
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

fn build_hard_swish(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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

fn build_tanh(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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

fn build_leaky_relu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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

// ------------------------------------------------------------------------------------------ broadcasting

/// Most dimensions of a broadcast binary op (after merging).
const MAXD: usize = 8;

/// Element offsets of two operands broadcast to an output: dimensions of size 1 dropped and
/// adjacent dimensions merged where both operands stay contiguous.
struct Broadcast {
    rank: usize,
    dims: [usize; MAXD],
    sa: [usize; MAXD],
    sb: [usize; MAXD],
}

/// NumPy broadcast shape of `a` and `b`, if compatible.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Some(x),
            (1, y) => Some(y),
            _ => None,
        })
        .collect()
}

impl Broadcast {
    fn new(a: &[usize], b: &[usize], out: &[usize]) -> Option<Broadcast> {
        let rank = out.len();
        let strides = |s: &[usize]| {
            let mut st = vec![0usize; rank];
            let mut acc = 1;
            for i in (0..rank).rev() {
                let d = if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
                st[i] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        };
        let (sa, sb) = (strides(a), strides(b));
        let mut dims: Vec<(usize, usize, usize)> = Vec::new();
        for i in 0..rank {
            if out[i] == 1 {
                continue;
            }
            match dims.last_mut() {
                Some(l) if l.1 == sa[i] * out[i] && l.2 == sb[i] * out[i] => {
                    *l = (l.0 * out[i], sa[i], sb[i]);
                }
                _ => dims.push((out[i], sa[i], sb[i])),
            }
        }
        if dims.is_empty() {
            dims.push((1, 0, 0));
        }
        if dims.len() > MAXD {
            return None;
        }
        let mut bc = Broadcast { rank: dims.len(), dims: [1; MAXD], sa: [0; MAXD], sb: [0; MAXD] };
        for (k, &(d, x, y)) in dims.iter().enumerate() {
            (bc.dims[k], bc.sa[k], bc.sb[k]) = (d, x, y);
        }
        Some(bc)
    }

    /// Calls `f(out_offset, a_offset, b_offset)` for runs of the innermost dimension; the run's
    /// length and operand steps are `self.inner()`.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let outer = self.rank - 1;
        let inner = self.dims[outer];
        let mut idx = [0usize; MAXD];
        let (mut ia, mut ib, mut o) = (0usize, 0usize, 0usize);
        loop {
            f(o, ia, ib);
            o += inner;
            let mut k = outer;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                ia += self.sa[k];
                ib += self.sb[k];
                if idx[k] < self.dims[k] {
                    break;
                }
                ia -= self.sa[k] * self.dims[k];
                ib -= self.sb[k] * self.dims[k];
                idx[k] = 0;
            }
        }
    }

    fn inner(&self) -> (usize, usize, usize) {
        let k = self.rank - 1;
        (self.dims[k], self.sa[k], self.sb[k])
    }
}

/// Applies `op` element-wise with broadcasting.
fn broadcast_apply<A: Copy, B: Copy, O>(bc: &Broadcast, a: &[A], b: &[B], out: &mut [O], op: impl Fn(A, B) -> O) {
    if out.is_empty() {
        return;
    }
    let (len, sa, sb) = bc.inner();
    bc.for_each_run(|o, ia, ib| {
        let dst = &mut out[o..o + len];
        if sa == 1 && sb == 1 {
            for ((d, &x), &y) in dst.iter_mut().zip(&a[ia..ia + len]).zip(&b[ib..ib + len]) {
                *d = op(x, y);
            }
        } else {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = op(a[ia + i * sa], b[ib + i * sb]);
            }
        }
    });
}

// ------------------------------------------------------------------------------------------ MAXIMUM / MINIMUM

struct MaxMin<T> {
    bc: Broadcast,
    max: bool,
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod + PartialOrd + Send + Sync> Kernel for MaxMin<T> {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (a, b) = (cast::<T>(io.ins[0])?, cast::<T>(io.ins[1])?);
        let out = cast_mut::<T>(io.outs[0])?;
        if self.max {
            broadcast_apply(&self.bc, a, b, out, |x, y| if x > y { x } else { y });
        } else {
            broadcast_apply(&self.bc, a, b, out, |x, y| if x < y { x } else { y });
        }
        Ok(())
    }
}

/// Checks two inputs broadcast to the output, sets the output shape.
fn binary_broadcast(ctx: &mut BuildCtx<'_>) -> Result<Broadcast> {
    let (a, b) = (ctx.input(0)?.shape.clone(), ctx.input(1)?.shape.clone());
    let out =
        broadcast_shape(&a, &b).ok_or_else(|| ctx.err(format!("input shapes {a:?} and {b:?} do not broadcast")))?;
    let bc = Broadcast::new(&a, &b, &out).ok_or_else(|| ctx.err("too many dimensions to broadcast"))?;
    ctx.outputs[0].shape = out;
    Ok(bc)
}

fn build_max_min(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let t = ctx.input(0)?.dtype;
    if ctx.input(1)?.dtype != t || ctx.output(0)?.dtype != t {
        return Err(ctx.err("inputs and output must have the same type"));
    }
    let bc = binary_broadcast(ctx)?;
    let max = ctx.op_name == "MAXIMUM";
    macro_rules! k {
        ($t:ty) => {
            Built::new(MaxMin::<$t> { bc, max, _t: std::marker::PhantomData })
        };
    }
    match t {
        TensorType::FLOAT32 => k!(f32),
        TensorType::UINT8 => k!(u8),
        TensorType::INT8 => k!(i8),
        TensorType::INT16 => k!(i16),
        TensorType::INT32 => k!(i32),
        TensorType::INT64 => k!(i64),
        _ => Err(ctx.err("MAXIMUM/MINIMUM support float32, uint8, int8, int16, int32 and int64")),
    }
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

fn build_prelu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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

// ------------------------------------------------------------------------------------------ L2_NORMALIZATION

struct L2Norm {
    depth: usize,
    dtype: TensorType,
    in_zp: i32,
}

impl Kernel for L2Norm {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let d = self.depth.max(1);
        match self.dtype {
            TensorType::FLOAT32 => {
                let (x, y) = (cast::<f32>(io.ins[0])?, cast_mut::<f32>(io.outs[0])?);
                for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                    let sum: f32 = xr.iter().fold(0.0, |s, &v| s + v * v);
                    let norm = sum.sqrt().max(1e-6);
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = v / norm;
                    }
                }
            }
            TensorType::UINT8 => {
                let (x, y) = (io.ins[0], &mut *io.outs[0]);
                for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                    let sum = xr.iter().fold(0i32, |s, &v| {
                        let diff = v as i32 - self.in_zp;
                        s.wrapping_add(diff * diff)
                    });
                    let (m, shift) = crate::cpu::quant::inv_sqrt_quantized_multiplier_exp(sum, -1);
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        let diff = v as i32 - self.in_zp;
                        let r = multiply_by_quantized_multiplier_smaller_than_one_exp(128 * diff, m, shift);
                        *o = (128 + r).clamp(0, 255) as u8;
                    }
                }
            }
            _ => {
                let (x, y) = (cast::<i8>(io.ins[0])?, cast_mut::<i8>(io.outs[0])?);
                for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                    let sum = xr.iter().fold(0i32, |s, &v| {
                        let diff = v as i32 - self.in_zp;
                        s.wrapping_add(diff * diff)
                    });
                    let (m, shift) = crate::cpu::quant::inv_sqrt_quantized_multiplier_exp(sum, -1);
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        let r = mbqm(v as i32 - self.in_zp, m, shift + 7);
                        *o = r.clamp(-128, 127) as i8;
                    }
                }
            }
        }
        Ok(())
    }
}

fn build_l2_norm(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, y) = unary_io(ctx)?;
    if ctx.options.activation != Activation::None {
        return Err(ctx.err("L2_NORMALIZATION with a fused activation is not supported (TFLite neither)"));
    }
    let depth = x.shape.last().copied().unwrap_or(1);
    let in_zp = match x.dtype {
        TensorType::FLOAT32 => 0,
        TensorType::UINT8 | TensorType::INT8 => {
            let (scale, zp) = y.qparams()?;
            let want_zp = if x.dtype == TensorType::UINT8 { 128 } else { 0 };
            if scale != 1.0 / 128.0 || zp != want_zp {
                return Err(
                    ctx.err(format!("the output must have scale 1/128 and zero point {want_zp}, not {scale} and {zp}"))
                );
            }
            x.qparams()?.1
        }
        _ => return Err(ctx.err("L2_NORMALIZATION supports float32, uint8 and int8")),
    };
    if depth == 0 {
        return Err(ctx.err("the last dimension is 0"));
    }
    Built::new(L2Norm { depth, dtype: x.dtype, in_zp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_merges_dimensions() {
        let out = broadcast_shape(&[2, 1, 4, 3], &[5, 1, 3]).unwrap();
        assert_eq!(out, vec![2, 5, 4, 3]);
        let bc = Broadcast::new(&[2, 1, 4, 3], &[5, 1, 3], &out).unwrap();
        let a: Vec<i32> = (0..24).collect();
        let b: Vec<i32> = (0..15).map(|v| v * 100).collect();
        let mut o = vec![0; 120];
        broadcast_apply(&bc, &a, &b, &mut o, |x, y| x + y);
        // o[n, h, w, c] = a[n, 0, w, c] + b[h, 0, c]
        let (n, h, w, c) = (1, 3, 2, 1);
        assert_eq!(o[((n * 5 + h) * 4 + w) * 3 + c], (n * 12 + w * 3 + c) as i32 + (h * 3 + c) as i32 * 100);
        assert!(broadcast_shape(&[2, 3], &[4, 3]).is_none());
        let same = Broadcast::new(&[3, 4], &[3, 4], &[3, 4]).unwrap();
        assert_eq!((same.rank, same.inner()), (1, (12, 1, 1)));
    }
}
