//! L2_NORMALIZATION over the last dimension, for float32, uint8 and int8 (the quantized ones with
//! TFLite's fixed-point inverse square root).

use super::nonlinear::unary_io;
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant::{
    multiply_by_quantized_multiplier as mbqm, multiply_by_quantized_multiplier_smaller_than_one_exp,
};
use crate::error::Result;
use crate::model::{Activation, TensorType};

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

pub(crate) fn build_l2_norm(ctx: &mut BuildCtx<'_>) -> Result<Built> {
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
