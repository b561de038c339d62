//! MEAN, SUM and ARG_MAX / ARG_MIN.

use super::common::{axis, const_axes, set_output_shape, Q8};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant;
use crate::error::Result;
use crate::model::TensorType;

/// How MEAN or SUM computes.
enum MeanKind {
    /// Quantized: TFLite's integer `QuantizedMeanOrSum` (input/output rescale, for MEAN folded
    /// with 1/count into one multiplier).
    Quantized { multiplier: i32, shift: i32, in_zp: i32, out_zp: i32 },
    /// int8 SUM as TFLite's default kernel computes it, in float:
    /// `clamp((i32)round(sum * scale + bias) + out_zp)` with `scale = in_scale / out_scale` and
    /// `bias = -in_zp * scale * count`. TFLite's reference resolver is no reference here: its
    /// quantized SUM reads and writes int8 tensors as uint8 (`reduce.cc`, the `kReference` branch
    /// of `QuantizedMeanOrSum`), so its int8 results are not a sum.
    SumI8Float { scale: f32, bias: f32, out_zp: i32 },
    /// float32 input.
    F32,
}

struct Mean {
    q: Option<Q8>,
    kind: MeanKind,
    /// Input seen as [outer][reduced][inner] after moving reduced axes: handled generically by
    /// index lists.
    in_shape: Vec<usize>,
    reduce: Vec<bool>,
    count: usize,
    outputs: usize,
    /// SUM: no division by the count.
    sum: bool,
}

/// MEAN, or SUM with `sum` (the same kernel without the division, as TFLite's).
pub(crate) fn build_mean(ctx: &mut BuildCtx<'_>, sum: bool) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let rank = input.shape.len();
    if rank > 8 {
        return Err(ctx.err(format!("rank {rank} is not supported (at most 8)")));
    }
    let axes = const_axes(ctx, 1, false)?;
    let mut reduce = vec![false; rank];
    for &a in &axes {
        reduce[axis(ctx, a, rank)?] = true;
    }
    let keep = ctx.options.keep_dims;
    let out_shape: Vec<usize> =
        (0..rank).filter_map(|d| if reduce[d] { keep.then_some(1) } else { Some(input.shape[d]) }).collect();
    set_output_shape(ctx, 0, out_shape.clone())?;
    let out = ctx.output(0)?.clone();
    let count: usize = (0..rank).filter(|&d| reduce[d]).map(|d| input.shape[d]).product();
    let outputs: usize = out_shape.iter().product();
    let (q, kind) = match input.dtype {
        TensorType::FLOAT32 => (None, MeanKind::F32),
        t => {
            let q = Q8::of(ctx, t)?;
            let (is, iz) = input.qparams()?;
            let (os, oz) = out.qparams()?;
            if sum && q == Q8::I8 {
                let scale = is / os;
                let bias = -(iz as f32) * scale * count as f32;
                (Some(q), MeanKind::SumI8Float { scale, bias, out_zp: oz })
            } else {
                let (mut multiplier, mut shift) = quant::quantize_multiplier(is as f64 / os as f64);
                if count > 0 && !sum {
                    let s = (63 - (count as u64).leading_zeros() as i32).min(32).min(31 + shift);
                    multiplier = (((multiplier as i64) << s) / count as i64) as i32;
                    shift -= s;
                }
                (Some(q), MeanKind::Quantized { multiplier, shift, in_zp: iz, out_zp: oz })
            }
        }
    };
    let scratch = outputs * 8;
    Built::with_scratch(Mean { q, kind, in_shape: input.shape.clone(), reduce, count, outputs, sum }, scratch)
}

impl Mean {
    /// When the reduced axes form one contiguous block (e.g. H and W of NHWC): the input as
    /// `[outer][reduced][inner]`.
    fn block(&self) -> Option<(usize, usize, usize)> {
        let a = self.reduce.iter().position(|&r| r)?;
        let b = self.reduce.iter().rposition(|&r| r)?;
        self.reduce[a..=b].iter().all(|&r| r).then(|| {
            (
                self.in_shape[..a].iter().product(),
                self.in_shape[a..=b].iter().product(),
                self.in_shape[b + 1..].iter().product(),
            )
        })
    }

    /// Adds every byte of `x` (a quantized input) to its output's sum in `sums`.
    fn sum_bytes(&self, q: Q8, x: &[u8], sums: &mut [i64]) {
        let Some((outer, red, inner)) = self.block() else {
            self.walk(|o, i| sums[o] += q.get(x, i) as i64);
            return;
        };
        // Whole rows of `inner` bytes added to a row of sums: a loop the compiler vectorises.
        gemm::with_avx512(|| {
            for (o, dst) in sums.chunks_exact_mut(inner.max(1)).take(outer).enumerate() {
                for r in 0..red {
                    let base = (o * red + r) * inner;
                    let src = &x[base..base + inner];
                    match q {
                        Q8::U8 => dst.iter_mut().zip(src).for_each(|(s, &b)| *s += b as i64),
                        Q8::I8 => dst.iter_mut().zip(src).for_each(|(s, &b)| *s += b as i8 as i64),
                    }
                }
            }
        })
    }

    /// Calls `f(output_index, input_index)` for every input element.
    fn walk(&self, mut f: impl FnMut(usize, usize)) {
        let rank = self.in_shape.len();
        // Reduced axes forming one contiguous block: three plain loops.
        if let Some((outer, red, inner)) = self.block() {
            for o in 0..outer {
                for r in 0..red {
                    let base = (o * red + r) * inner;
                    for i in 0..inner {
                        f(o * inner + i, base + i);
                    }
                }
            }
            return;
        }
        let mut idx = [0usize; 8];
        let total: usize = self.in_shape.iter().product();
        for i in 0..total {
            let mut o = 0;
            for d in 0..rank {
                if !self.reduce[d] {
                    o = o * self.in_shape[d] + idx[d];
                }
            }
            f(o, i);
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < self.in_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
}

impl Kernel for Mean {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let sums: &mut [i64] = cast_mut(&mut io.scratch[..self.outputs * 8])?;
        sums.fill(0);
        let n = self.count as i64;
        match self.q {
            None => {
                let x: &[f32] = cast(io.ins[0])?;
                let out: &mut [f32] = cast_mut(io.outs[0])?;
                out.fill(0.0);
                self.walk(|o, i| out[o] += x[i]);
                if !self.sum {
                    for v in out.iter_mut() {
                        *v /= self.count as f32;
                    }
                }
                return Ok(());
            }
            Some(q) => {
                self.sum_bytes(q, io.ins[0], sums);
                let (lo, hi) = if q == Q8::U8 { (0, 255) } else { (-128, 127) };
                let out = &mut *io.outs[0];
                if let MeanKind::SumI8Float { scale, bias, out_zp } = self.kind {
                    if self.count > 0 {
                        for (o, &s) in out.iter_mut().zip(sums.iter()) {
                            // The int32 accumulator of TFLite, then float arithmetic.
                            let v = ((s as i32) as f32 * scale + bias).round() as i32;
                            *o = v.wrapping_add(out_zp).clamp(-128, 127) as i8 as u8;
                        }
                    } else {
                        out.fill(0);
                    }
                }
                if let MeanKind::Quantized { multiplier, shift, in_zp, out_zp } = self.kind {
                    for (o, &s) in out.iter_mut().zip(sums.iter()) {
                        let shifted = (s - in_zp as i64 * n) as i32;
                        let v =
                            quant::multiply_by_quantized_multiplier(shifted, multiplier, shift).wrapping_add(out_zp);
                        *o = q.put(v.clamp(lo, hi));
                    }
                }
            }
        }
        Ok(())
    }
}

struct ArgMinMax {
    q: ArgIn,
    max: bool,
    outer: usize,
    axis_len: usize,
    inner: usize,
    out64: bool,
}

#[derive(Clone, Copy)]
enum ArgIn {
    Q(Q8),
    F32,
    I32,
}

pub(crate) fn build_arg_min_max(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let rank = input.shape.len();
    let a = *const_axes(ctx, 1, true)?.first().ok_or_else(|| ctx.err("the axis tensor is empty"))?;
    let ax = axis(ctx, a, rank)?;
    let mut shape = input.shape.clone();
    shape.remove(ax);
    if input.shape[ax] == 0 && shape.iter().all(|&d| d > 0) {
        return Err(ctx.err(format!("axis {ax} of the input {:?} is empty: there is no extreme", input.shape)));
    }
    if u32::try_from(input.shape[ax]).is_err() {
        return Err(ctx.err(format!("axis {ax} of the input {:?} is longer than 2^32 elements", input.shape)));
    }
    set_output_shape(ctx, 0, shape)?;
    let out64 = match ctx.output(0)?.dtype {
        TensorType::INT64 => true,
        TensorType::INT32 => false,
        t => return Err(ctx.err(format!("output type {} is not supported (int32 or int64)", t.name()))),
    };
    let q = match input.dtype {
        TensorType::FLOAT32 => ArgIn::F32,
        TensorType::INT32 => ArgIn::I32,
        t => ArgIn::Q(Q8::of(ctx, t)?),
    };
    Built::new(ArgMinMax {
        q,
        max: ctx.op_name == "ARG_MAX",
        outer: input.shape[..ax].iter().product(),
        axis_len: input.shape[ax],
        inner: input.shape[ax + 1..].iter().product(),
        out64,
    })
}

impl Kernel for ArgMinMax {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let x = io.ins[0];
        if let ArgIn::Q(q) = self.q {
            // 8-bit inputs: compare bytes mapped to an order-preserving unsigned key. Outer
            // slices are independent and spread over the threads.
            let flip = if q == Q8::I8 { 0x80u8 } else { 0 };
            let width = if self.out64 { 8 } else { 4 };
            // Minimum: compare complemented keys, so one loop serves both.
            let key = if self.max { flip } else { !flip };
            let put = |o: &mut [u8], k: u32| {
                if self.out64 {
                    o.copy_from_slice(&(k as i64).to_le_bytes());
                } else {
                    o.copy_from_slice(&(k as i32).to_le_bytes());
                }
            };
            if self.inner == 1 {
                // The axis is innermost: each output is one contiguous row of the input.
                let len = self.axis_len;
                io.par.rows(&mut *io.outs[0], width, 1024, &mut [], |first, part, _| {
                    let mut idx = [0u32; 256];
                    for (c, chunk) in part.chunks_mut(256 * width).enumerate() {
                        let n = chunk.len() / width;
                        let r0 = first + c * 256;
                        gemm::argmax_rows(&x[r0 * len..(r0 + n) * len], len, key, &mut idx[..n]);
                        for (o, &k) in chunk.chunks_exact_mut(width).zip(&idx[..n]) {
                            put(o, k);
                        }
                    }
                });
                return Ok(());
            }
            let row = self.inner * width;
            io.par.rows(&mut *io.outs[0], row.max(1), 64, &mut [], |first, rows, _| {
                // Up to BLOCK positions of the inner dimension at a time, each with its running
                // best, walking the axis outermost: contiguous loads, and a loop the compiler
                // vectorises. A later element replaces the best only when strictly better, so
                // ties go to the first, as in the reference.
                const BLOCK: usize = 64;
                let (mut best, mut best_k) = ([0u8; BLOCK], [0u32; BLOCK]);
                for (r, out) in rows.chunks_mut(row.max(1)).enumerate() {
                    let slice = (first + r) * self.axis_len * self.inner;
                    for i0 in (0..self.inner).step_by(BLOCK) {
                        let n = BLOCK.min(self.inner - i0);
                        let (best, best_k) = (&mut best[..n], &mut best_k[..n]);
                        let start = slice + i0;
                        for (b, &v) in best.iter_mut().zip(&x[start..start + n]) {
                            *b = v ^ key;
                        }
                        best_k.fill(0);
                        for k in 1..self.axis_len {
                            let at = start + k * self.inner;
                            for ((b, bk), &v) in best.iter_mut().zip(best_k.iter_mut()).zip(&x[at..at + n]) {
                                let v = v ^ key;
                                if v > *b {
                                    *b = v;
                                    *bk = k as u32;
                                }
                            }
                        }
                        for (i, &k) in (i0..).zip(best_k.iter()) {
                            put(&mut out[i * width..(i + 1) * width], k);
                        }
                    }
                }
            });
            return Ok(());
        }
        let get = |i: usize| -> f64 {
            match self.q {
                ArgIn::Q(q) => q.get(x, i) as f64,
                ArgIn::F32 => f32::from_le_bytes([x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]]) as f64,
                ArgIn::I32 => i32::from_le_bytes([x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]]) as f64,
            }
        };
        let out = &mut *io.outs[0];
        for o in 0..self.outer {
            for i in 0..self.inner {
                let mut best = get(o * self.axis_len * self.inner + i);
                let mut best_k = 0usize;
                for k in 1..self.axis_len {
                    let v = get((o * self.axis_len + k) * self.inner + i);
                    if (self.max && v > best) || (!self.max && v < best) {
                        best = v;
                        best_k = k;
                    }
                }
                let at = o * self.inner + i;
                if self.out64 {
                    out[at * 8..at * 8 + 8].copy_from_slice(&(best_k as i64).to_le_bytes());
                } else {
                    out[at * 4..at * 4 + 4].copy_from_slice(&(best_k as i32).to_le_bytes());
                }
            }
        }
        Ok(())
    }
}
