//! DEPTHWISE_CONV_2D for uint8 (per-tensor) and int8 (per-channel): TFLite's
//! `reference_ops::DepthwiseConv` and its integer per-channel twin, and a fast channel-vectorised
//! loop producing the same int32 accumulators exactly, so both share one output stage.
// Unsafe only to call the AVX2-compiled copies of safe loop bodies after run-time detection.
#![allow(unsafe_code)]

use super::common::{conv_output_stage, dims4, OutputStage, Q8};
use super::conv_common::{bias_of, filter_zero_points, geometry, operands, Geometry};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::Result;

struct Depthwise {
    g: Geometry,
    q_in: Q8,
    q_out: Q8,
    in_zp: i32,
    mult: usize,
    /// `[tap][out_channel]`, zero point subtracted.
    weights: Vec<i32>,
    bias: Vec<i32>,
    /// `bias - in_zp * sum over all taps of w`: the accumulator start of pixels whose window is
    /// entirely inside the input (their zero-point terms are then constant).
    folded: Vec<i32>,
    /// Weights in tap pairs for full-window pixels (fast path, depth multiplier 1).
    pairs: Option<gemm::DwPairs>,
    /// Byte offset of each tap from the window's top-left input pixel.
    rel: Vec<usize>,
    /// Byte offset of each tap in the copied window of a border pixel (`t * in_c`).
    win_bases: Vec<usize>,
    stage: OutputStage,
    reference: bool,
}

pub(crate) fn build_depthwise(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (input, filter, q_in, q_out) = operands(ctx, "filter")?;
    let [n, ih, iw, ic] = dims4(ctx, &input, "input")?;
    let [one, kh, kw, oc] = dims4(ctx, &filter, "filter")?;
    let o = ctx.options.clone();
    let mult = if o.depth_multiplier > 0 { o.depth_multiplier as usize } else { oc / ic.max(1) };
    if one != 1 || ic * mult != oc {
        return Err(ctx.err(format!(
            "filter shape {:?} does not fit input depth {ic} with depth multiplier {mult}",
            filter.shape
        )));
    }
    let g = geometry(ctx, [n, ih, iw, ic], kh, kw, oc)?;
    let output = ctx.output(0)?.clone();
    let stage = conv_output_stage(ctx, &input, &filter, &output, oc, o.activation)?;
    let zp = filter_zero_points(ctx, 1)?;
    let data = ctx.constant(1)?;
    let mut weights = vec![0i32; kh * kw * oc];
    for t in 0..kh * kw {
        for c in 0..oc {
            let z = if zp.len() == 1 { zp[0] } else { zp.get(c).copied().unwrap_or(0) };
            weights[t * oc + c] = q_in.get(data, t * oc + c) - z;
        }
    }
    let bias = bias_of(ctx, 2, oc)?;
    let in_zp = input.qparams()?.1;
    let reference = ctx.reference;
    let taps = kh * kw;
    // Accumulators and widened inputs, then a window of `taps` input pixels for border pixels.
    let scratch = (oc * 4 + ic * 4) * 2 + 64 + taps * ic;
    let folded = (0..oc)
        .map(|c| {
            let sum = (0..taps).fold(0i32, |s, t| s.wrapping_add(weights[t * oc + c]));
            bias[c].wrapping_sub(in_zp.wrapping_mul(sum))
        })
        .collect();
    let rel = (0..kh * kw).map(|t| ((t / kw) * g.dil_h * iw + (t % kw) * g.dil_w) * ic).collect();
    let win_bases = (0..taps).map(|t| t * ic).collect();
    let pairs = (!reference && mult == 1 && taps <= gemm::DW_MAX_TAPS && oc >= 16)
        .then(|| gemm::DwPairs::new(&weights, taps, oc, &stage));
    Built::with_scratch(
        Depthwise { rel, win_bases, g, q_in, q_out, in_zp, mult, weights, bias, folded, pairs, stage, reference },
        scratch,
    )
}

/// One thread's scratch: accumulators, widened inputs, and a window of input pixels.
struct Scratch<'a> {
    acc: &'a mut [i32],
    xs: &'a mut [i32],
    window: &'a mut [u8],
}

impl Depthwise {
    fn run_reference(&self, input: &[u8], out: &mut [u8]) {
        let g = &self.g;
        for b in 0..g.batches {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for ic in 0..g.in_c {
                        for m in 0..self.mult {
                            let oc = ic * self.mult + m;
                            let mut acc = 0i32;
                            g.taps(b, oy, ox, |t, base| {
                                if let Some(base) = base {
                                    let x = self.q_in.get(input, base + ic) - self.in_zp;
                                    acc = acc.wrapping_add(self.weights[t * g.out_c + oc].wrapping_mul(x));
                                }
                            });
                            acc = acc.wrapping_add(self.bias[oc]);
                            let o = ((b * g.out_h + oy) * g.out_w + ox) * g.out_c + oc;
                            out[o] = self.q_out.put(self.stage.apply(acc, oc));
                        }
                    }
                }
            }
        }
    }

    /// Output rows `first..first + rows/row_len` (row = batch * out_h + y).
    #[inline(always)]
    fn rows_body(&self, input: &[u8], first: usize, rows: &mut [u8], s: &mut Scratch<'_>) {
        let g = &self.g;
        let row_len = g.out_w * g.out_c;
        for (r, out_row) in rows.chunks_mut(row_len).enumerate() {
            let row = first + r;
            self.row_fast(input, row / g.out_h, row % g.out_h, out_row, s);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2(&self, input: &[u8], first: usize, rows: &mut [u8], s: &mut Scratch<'_>) {
        self.rows_body(input, first, rows, s)
    }

    fn rows(&self, input: &[u8], first: usize, rows: &mut [u8], s: &mut Scratch<'_>) {
        #[cfg(target_arch = "x86_64")]
        if gemm::best() == gemm::Isa::Avx2 {
            // SAFETY: AVX2 was detected at run time (`gemm::best`); the body is safe code.
            return unsafe { self.rows_avx2(input, first, rows, s) };
        }
        self.rows_body(input, first, rows, s)
    }

    /// One output row (all x, all channels) with channel-vectorised accumulation.
    #[inline(always)]
    fn row_fast(&self, input: &[u8], b: usize, oy: usize, out_row: &mut [u8], s: &mut Scratch<'_>) {
        let (acc, xs) = (&mut *s.acc, &mut *s.xs);
        let g = &self.g;
        let oc = g.out_c;
        let mut bases = [0usize; gemm::DW_MAX_TAPS];
        let mut taps = [0usize; gemm::DW_MAX_TAPS];
        let vector = self.mult == 1 && g.k_h * g.k_w <= gemm::DW_MAX_TAPS;
        // The pixels of this row whose windows are entirely inside the input, `interior.0..
        // interior.1`, go to the row kernel together when there is one.
        let iy0 = (oy * g.stride_h) as isize - g.pad_h as isize;
        let rows_inside = iy0 >= 0 && iy0 as usize + (g.k_h - 1) * g.dil_h < g.in_h;
        let interior = match (&self.pairs, vector && rows_inside) {
            (Some(_), true) => {
                let (s, span) = (g.stride_w, (g.k_w - 1) * g.dil_w);
                let lo = g.pad_w.div_ceil(s);
                let hi = (g.in_w + g.pad_w).checked_sub(span).map_or(0, |room| room.div_ceil(s)).min(g.out_w);
                (lo, hi.max(lo))
            }
            _ => (0, 0),
        };
        // Pixels before `next` were done by the row kernel.
        let mut next = 0;
        for ox in 0..g.out_w {
            if ox < next {
                continue;
            }
            if ox == interior.0 && interior.1 > ox {
                if let Some(p) = &self.pairs {
                    let origin = ((b * g.in_h + iy0 as usize) * g.in_w + ox * g.stride_w - g.pad_w) * g.in_c;
                    let row = (origin, g.stride_w * g.in_c, interior.1 - ox);
                    let dst = &mut out_row[ox * oc..interior.1 * oc];
                    if gemm::dw_row(input, self.q_in, row, &self.rel, p, &self.folded, &self.stage, oc, dst) {
                        next = interior.1;
                        continue;
                    }
                }
            }
            let dst = &mut out_row[ox * oc..(ox + 1) * oc];
            let mut done = 0;
            if vector {
                let mut n = 0;
                let iy0 = (oy * g.stride_h) as isize - g.pad_h as isize;
                let ix0 = (ox * g.stride_w) as isize - g.pad_w as isize;
                let inside = iy0 >= 0
                    && ix0 >= 0
                    && iy0 as usize + (g.k_h - 1) * g.dil_h < g.in_h
                    && ix0 as usize + (g.k_w - 1) * g.dil_w < g.in_w;
                if inside {
                    // Every tap inside: offsets from the window's corner, precomputed.
                    let origin = ((b * g.in_h + iy0 as usize) * g.in_w + ix0 as usize) * g.in_c;
                    for (t, &rel) in self.rel.iter().enumerate() {
                        bases[t] = origin + rel;
                        taps[t] = t;
                    }
                    n = self.rel.len();
                } else {
                    g.taps(b, oy, ox, |t, base| {
                        if let Some(base) = base {
                            bases[n] = base;
                            taps[n] = t;
                            n += 1;
                        }
                    });
                }
                // A full window: the zero-point terms are the precomputed constant.
                let full = n == g.k_h * g.k_w;
                let (zx, init) = if full { (0, &self.folded) } else { (self.in_zp, &self.bias) };
                let start = match (&self.pairs, full) {
                    (Some(p), true) => {
                        gemm::dw_pixel_pairs(input, self.q_in, &bases[..n], p, init, &self.stage, self.q_out, dst)
                    }
                    (Some(p), false) => {
                        // A border pixel: its window copied out with the missing taps set to the
                        // input zero point, whose terms then cancel, so the full-window kernel and
                        // its folded constant apply.
                        let ic = g.in_c;
                        let win = &mut s.window[..self.win_bases.len() * ic];
                        win.fill(self.q_in.put(self.in_zp));
                        for (&base, &t) in bases[..n].iter().zip(&taps[..n]) {
                            win[t * ic..(t + 1) * ic].copy_from_slice(&input[base..base + ic]);
                        }
                        let (init, stage) = (&self.folded, &self.stage);
                        gemm::dw_pixel_pairs(win, self.q_in, &self.win_bases, p, init, stage, self.q_out, dst)
                    }
                    _ => 0,
                };
                done = if start == oc {
                    oc
                } else {
                    gemm::dw_pixel(
                        start,
                        input,
                        self.q_in,
                        zx,
                        &bases[..n],
                        &taps[..n],
                        &self.weights,
                        oc,
                        init,
                        &self.stage,
                        self.q_out,
                        dst,
                    )
                };
                if done == oc {
                    continue;
                }
            }
            // Remaining channels (or everything without the vector path).
            acc[done..].copy_from_slice(&self.bias[done..]);
            g.taps(b, oy, ox, |t, base| {
                if let Some(base) = base {
                    let w = &self.weights[t * oc..][..oc];
                    let x = &input[base..base + g.in_c];
                    if self.mult == 1 {
                        gemm::mac_row(self.q_in, &x[done..], self.in_zp, &w[done..], &mut acc[done..]);
                    } else {
                        for (c, xv) in xs.iter_mut().enumerate().take(g.in_c) {
                            *xv = self.q_in.get(x, c) - self.in_zp;
                        }
                        for (o, a) in acc.iter_mut().enumerate() {
                            *a = a.wrapping_add(w[o].wrapping_mul(xs[o / self.mult]));
                        }
                    }
                }
            });
            if done == 0 {
                gemm::requantize_row(acc, &self.stage, self.q_out, dst);
            } else {
                for c in done..oc {
                    dst[c] = self.q_out.put(self.stage.apply(acc[c], c));
                }
            }
        }
    }
}

impl Kernel for Depthwise {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input = io.ins[0];
        let out = &mut *io.outs[0];
        if out.is_empty() {
            return Ok(());
        }
        if self.reference {
            self.run_reference(input, out);
            return Ok(());
        }
        let g = &self.g;
        let row_len = g.out_w * g.out_c;
        let (oc, ic) = (g.out_c, g.in_c);
        let taps = g.k_h * g.k_w;
        io.par.rows(out, row_len, 1, io.scratch, |first, rows, scratch| {
            let (words, rest) = scratch.split_at_mut((oc + ic) * 4);
            let words: &mut [i32] = cast_mut(words).expect("aligned scratch");
            let (acc, xs) = words.split_at_mut(oc);
            let mut s = Scratch { acc, xs, window: &mut rest[..taps * ic] };
            self.rows(input, first, rows, &mut s);
        });
        Ok(())
    }
}
