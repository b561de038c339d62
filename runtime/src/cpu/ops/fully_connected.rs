//! FULLY_CONNECTED for uint8 (per-tensor) and int8 (per-tensor or per-channel): TFLite's
//! `reference_ops::FullyConnected` and `reference_integer_ops::FullyConnected{,PerChannel}`, and
//! the fast integer GEMM on the same packed weights, producing the same int32 accumulators
//! exactly.
//!
//! Unlike CONV_2D and DEPTHWISE_CONV_2D, TFLite's reference FULLY_CONNECTED does not requantize
//! with a fixed-point multiplier (`MultiplyByQuantizedMultiplier`, which rounds twice): it
//! multiplies the accumulator by `input_scale * filter_scale / output_scale` in double precision
//! and rounds once, half away from zero ([`FcStage`]). The two differ by one whenever the
//! fixed-point product lands on an exact half that the exact product is just below (or above).

use super::common::{conv_output_stage, set_output_shape, Q8};
use super::conv_common::{bias_of, filter_zero_points, operands, pack_weights, KPAD};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::error::Result;

/// FULLY_CONNECTED's output stage: `round(acc * scale[c])` in double precision (half away from
/// zero), plus the output zero point, clamped to the activation range.
#[derive(Debug, Clone)]
pub(crate) struct FcStage {
    /// `input_scale * filter_scale[c] / output_scale` per output channel, each scale widened to
    /// double first (TFLite's `effective_output_scale`).
    pub scale: Vec<f64>,
    pub offset: i32,
    pub min: i32,
    pub max: i32,
}

impl FcStage {
    /// The stage of a node with these input, filter and output tensors over `channels` units.
    pub fn new(
        ctx: &BuildCtx<'_>,
        input: &TensorInfo,
        filter: &TensorInfo,
        output: &TensorInfo,
        channels: usize,
    ) -> Result<FcStage> {
        // The activation range and the checks of the scales are those of the other
        // convolution-like ops.
        let fixed = conv_output_stage(ctx, input, filter, output, channels, ctx.options.activation)?;
        let (in_s, _) = input.qparams()?;
        let (out_s, _) = output.qparams()?;
        let fs = &filter.quant.as_ref().ok_or_else(|| ctx.err("the filter has no quantization parameters"))?.scale;
        let scale = (0..channels)
            .map(|c| {
                let f = if fs.len() == 1 { fs[0] } else { fs[c] };
                in_s as f64 * f as f64 / out_s as f64
            })
            .collect();
        Ok(FcStage { scale, offset: fixed.offset, min: fixed.min, max: fixed.max })
    }

    /// The output value of accumulator `acc` (bias included) of unit `channel`.
    #[inline(always)]
    pub fn apply(&self, acc: i32, channel: usize) -> i32 {
        let v = (acc as f64 * self.scale[channel]).round();
        // C++'s `static_cast<int32_t>` of a double outside the int32 range (only absurd scales
        // get there) is undefined; x86 gives i32::MIN, and so does this.
        let v = if (-2_147_483_648.0..2_147_483_648.0).contains(&v) { v as i32 } else { i32::MIN };
        // Wrapping like TFLite's int32 arithmetic on x86.
        v.wrapping_add(self.offset).clamp(self.min, self.max)
    }
}

struct FullyConnected {
    q_in: Q8,
    q_out: Q8,
    in_zp: i32,
    batches: usize,
    k: usize,
    kp: usize,
    units: usize,
    weights: Vec<i16>,
    bias: Vec<i32>,
    stage: FcStage,
    reference: bool,
}

pub(crate) fn build_fully_connected(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (input, filter, q_in, q_out) = operands(ctx, "weights")?;
    if ctx.options.weights_format != 0 {
        return Err(ctx.err("shuffled weights formats are not supported"));
    }
    let (units, k) = match filter.shape.as_slice() {
        &[u, k] => (u, k),
        s => return Err(ctx.err(format!("weights must be 2-D, have shape {s:?}"))),
    };
    let total = input.num_elements();
    if k == 0 || total % k != 0 {
        return Err(ctx.err(format!("input of {total} elements is not a multiple of the weights depth {k}")));
    }
    let batches = total / k;
    let out_shape = if ctx.options.keep_dims {
        let mut s = input.shape.clone();
        if let Some(l) = s.last_mut() {
            *l = units;
        }
        s
    } else {
        vec![batches, units]
    };
    set_output_shape(ctx, 0, out_shape)?;
    let output = ctx.output(0)?.clone();
    let stage = FcStage::new(ctx, &input, &filter, &output, units)?;
    let kp = k.div_ceil(KPAD) * KPAD;
    // TFLite's per-channel FULLY_CONNECTED takes the weights as symmetric: it ignores their zero
    // points (the per-tensor kernels subtract the one zero point).
    let per_channel = filter.quant.as_ref().is_some_and(|q| q.scale.len() > 1);
    let zp = if per_channel { vec![0] } else { filter_zero_points(ctx, 1)? };
    let weights = pack_weights(q_in, ctx.constant(1)?, units, k, &zp, kp);
    let bias = bias_of(ctx, 2, units)?;
    let in_zp = input.qparams()?.1;
    let reference = ctx.reference;
    let scratch = gemm::ROWS * kp * 2 + gemm::ROWS * units * 4 + 64;
    Built::with_scratch(
        FullyConnected { q_in, q_out, in_zp, batches, k, kp, units, weights, bias, stage, reference },
        scratch,
    )
}

impl Kernel for FullyConnected {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input = io.ins[0];
        let out = &mut *io.outs[0];
        if out.is_empty() {
            return Ok(());
        }
        if self.reference {
            for b in 0..self.batches {
                for u in 0..self.units {
                    let mut acc = 0i32;
                    for i in 0..self.k {
                        let x = self.q_in.get(input, b * self.k + i) - self.in_zp;
                        acc = acc.wrapping_add((self.weights[u * self.kp + i] as i32).wrapping_mul(x));
                    }
                    acc = acc.wrapping_add(self.bias[u]);
                    out[b * self.units + u] = self.q_out.put(self.stage.apply(acc, u));
                }
            }
            return Ok(());
        }
        let (kp, units) = (self.kp, self.units);
        let (a, rest) = io.scratch.split_at_mut(gemm::ROWS * kp * 2);
        let a: &mut [i16] = bytemuck::cast_slice_mut(a);
        let acc: &mut [i32] = cast_mut(&mut rest[..gemm::ROWS * units * 4])?;
        let mut b = 0;
        while b < self.batches {
            let m = gemm::ROWS.min(self.batches - b);
            for r in 0..m {
                let row = &mut a[r * kp..(r + 1) * kp];
                row[self.k..].fill(0);
                gemm::widen(self.q_in, &input[(b + r) * self.k..(b + r + 1) * self.k], self.in_zp, &mut row[..self.k]);
            }
            gemm::gemm_par(io.par, &a[..m * kp], m, &self.weights, units, kp, &mut acc[..m * units]);
            let rows =
                acc[..m * units].chunks_exact(units).zip(out[b * units..(b + m) * units].chunks_exact_mut(units));
            for (acc_row, out_row) in rows {
                for (u, (&a, o)) in acc_row.iter().zip(out_row).enumerate() {
                    *o = self.q_out.put(self.stage.apply(a.wrapping_add(self.bias[u]), u));
                }
            }
            b += m;
        }
        Ok(())
    }
}
