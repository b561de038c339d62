//! CONV_2D for uint8 (per-tensor) and int8 (per-channel): TFLite's `reference_ops::Conv` (and its
//! integer per-channel twin) on the packed weights, and the fast kernels, im2col + integer GEMM
//! or, with 8-bit dot-product instructions (AVX-512 VNNI, aarch64 dotprod), a byte GEMM with the
//! zero points folded in.
//!
//! The fast kernels produce the same int32 accumulators exactly, so all share one output stage.
// Unsafe only to call the AVX2-compiled copies of safe loop bodies after run-time detection.
#![allow(unsafe_code)]

use super::common::{conv_output_stage, dims4, OutputStage, Q8};
use super::conv_common::{bias_of, filter_zero_points, geometry, operands, pack_weights, Geometry, KPAD};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::Result;

struct Conv {
    g: Geometry,
    q_in: Q8,
    q_out: Q8,
    in_zp: i32,
    k: usize,
    kp: usize,
    weights: Vec<i16>,
    packed: Option<gemm::Packed>,
    /// The bias and output stage for [`gemm::gemm_packed_fused`], where the CPU has it.
    fused: Option<gemm::Fold>,
    vnni: Option<Vnni>,
    /// A convolution with one output pixel (a classifier's last layer) on the 8-bit dot-product
    /// path, run on two or more threads: its output channels in two halves, the first ending at
    /// the given channel (a multiple of 16), each packed on its own so that two threads can share
    /// the pixel. Set instead of `vnni`.
    halves: Option<(usize, Box<[Vnni; 2]>)>,
    bias: Vec<i32>,
    stage: OutputStage,
    reference: bool,
}

/// The 8-bit dot-product path (AVX-512 VNNI, aarch64 dotprod): patches stay raw input bytes and
/// the zero points are folded into per-channel terms, `acc = dot(x, w') + a[oc] * rowsum(x) +
/// c[oc]`, which equals `sum (x - zx)(w - zw) + bias` exactly (see `vnni_layout`).
struct Vnni {
    packed: gemm::PackedU8,
    fold: gemm::Fold,
    /// Byte stored for spatial padding (the input zero point, as stored).
    pad: u8,
    /// Input type (row sums are of unsigned or signed bytes).
    q: Q8,
}

/// Builds the VNNI layout from zero-point-free weights `wz[oc][k] = w - zw` (as in
/// [`pack_weights`], row length `kp`). `vpdpbusd` multiplies unsigned by signed bytes:
///
/// uint8 inputs (unsigned) meet signed weights `w - 128`:
/// `sum x (w - zw) = dot + (128 - zw) * sum x`.
/// int8 inputs (signed) meet unsigned weights `w + 128` (filter zero point 0):
/// `sum x w = dot - 128 * sum x`.
/// In both, `sum zx (w - zw) = zx * colsum(w - zw)` goes into `c` with the bias. Spatial
/// padding stores `zx`, whose terms cancel; k padding is zero on both sides.
#[allow(clippy::too_many_arguments)]
fn vnni_layout(
    q: Q8,
    raw: &[u8],
    zw: &[i32],
    n: usize,
    k: usize,
    in_zp: i32,
    bias: &[i32],
    stage: &OutputStage,
) -> Option<Vnni> {
    let zw_of = |j: usize| if zw.len() == 1 { zw[0] } else { zw.get(j).copied().unwrap_or(0) };
    if q == Q8::I8 && (0..n).any(|j| zw_of(j) != 0) {
        // Unsigned weight bytes w + 128 need a filter zero point of 0.
        return None;
    }
    if raw.len() < n * k {
        return None;
    }
    // Both layouts store the weight byte with its top bit flipped: for uint8 the signed byte
    // w - 128, for int8 the unsigned byte w + 128. On AMX, int8 weights stay as they are
    // (`tdpbssd` multiplies signed by signed): no input row-sum term.
    let signed = q == Q8::I8 && gemm::amx_active();
    let packed = if signed {
        gemm::PackedU8::new(&raw[..n * k], n, k, gemm::ByteSigns::SignedSigned)
    } else {
        gemm::PackedU8::new_flipped(&raw[..n * k], n, k, q)
    };
    let mut a = vec![0i32; n];
    let mut c = vec![0i32; n];
    for (j, row) in raw.chunks_exact(k).take(n).enumerate() {
        // colsum(w - zw), wrapping as the i32 accumulation of the reference does.
        let sum = gemm::byte_sum(row, q == Q8::I8).wrapping_sub((k as i32).wrapping_mul(zw_of(j)));
        a[j] = match q {
            Q8::U8 => 128 - zw_of(j),
            Q8::I8 if signed => 0,
            Q8::I8 => -128,
        };
        c[j] = bias[j].wrapping_sub(in_zp.wrapping_mul(sum));
    }
    let fold = gemm::Fold::new(&a, &c, stage, packed.np);
    Some(Vnni { packed, fold, pad: q.put(in_zp), q })
}

/// Sum of a row of input bytes (unsigned or signed).
#[inline(always)]
fn row_sum(q: Q8, row: &[u8]) -> i32 {
    gemm::byte_sum(row, q == Q8::I8)
}

/// Keeps the `[oc][kp]` weights for the reference kernel, or packs them for the fast one.
fn layout(weights: Vec<i16>, n: usize, kp: usize, reference: bool) -> (Vec<i16>, Option<gemm::Packed>) {
    if reference {
        (weights, None)
    } else {
        (Vec::new(), Some(gemm::Packed::new(&weights, n, kp)))
    }
}

pub(crate) fn build_conv(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (input, filter, q_in, q_out) = operands(ctx, "filter")?;
    let [n, ih, iw, ic] = dims4(ctx, &input, "input")?;
    let [oc, kh, kw, fic] = dims4(ctx, &filter, "filter")?;
    if fic == 0 || ic % fic != 0 || fic != ic {
        return Err(ctx.err(format!("filter depth {fic} does not match input depth {ic} (grouped convolution)")));
    }
    let g = geometry(ctx, [n, ih, iw, ic], kh, kw, oc)?;
    let output = ctx.output(0)?.clone();
    let stage = conv_output_stage(ctx, &input, &filter, &output, oc, ctx.options.activation)?;
    let k = kh * kw * ic;
    let kp = k.div_ceil(KPAD) * KPAD;
    let zp = filter_zero_points(ctx, 1)?;
    let bias = bias_of(ctx, 2, oc)?;
    let reference = ctx.reference;
    // Fast path scratch: im2col rows (i16) + accumulators, per thread.
    let np = oc.div_ceil(16) * 16;
    // The byte GEMM's path: VNNI_ROWS rows of bytes and their sums.
    let scratch = (gemm::ROWS * kp * 2 + gemm::ROWS * np * 4).max(gemm::VNNI_ROWS * (kp + 4)) + 64;
    let in_zp = input.qparams()?.1;
    let raw = ctx.constant(1)?;
    // The byte GEMM packs the weight bytes directly; the others widen them first.
    let vnni = if !reference && ctx.vnni { vnni_layout(q_in, raw, &zp, oc, k, in_zp, &bias, &stage) } else { None };
    let (weights, packed) = match vnni {
        Some(_) => (Vec::new(), None),
        None => layout(pack_weights(q_in, raw, oc, k, &zp, kp), oc, kp, reference),
    };
    let fused = (packed.is_some() && gemm::packed_fused()).then(|| gemm::Fold::new(&vec![0; oc], &bias, &stage, np));
    // One output pixel: split its channels (at a multiple of 16) for two threads.
    let (vnni, halves) = match vnni {
        Some(v) if ctx.threads > 1 && g.batches * g.out_h * g.out_w == 1 && oc >= 64 => {
            let h = (oc / 2).div_ceil(16) * 16;
            let part = |r: std::ops::Range<usize>| {
                let zw = if zp.len() == 1 { zp.clone() } else { zp[r.clone()].to_vec() };
                let st = OutputStage::new(
                    stage.multiplier[r.clone()].to_vec(),
                    stage.shift[r.clone()].to_vec(),
                    stage.offset,
                    stage.min,
                    stage.max,
                );
                vnni_layout(q_in, &raw[r.start * k..r.end * k], &zw, r.len(), k, in_zp, &bias[r], &st)
            };
            match (part(0..h), part(h..oc)) {
                (Some(a), Some(b)) => (None, Some((h, Box::new([a, b])))),
                _ => (Some(v), None),
            }
        }
        v => (v, None),
    };
    Built::with_scratch(
        Conv { g, q_in, q_out, in_zp, k, kp, weights, packed, fused, vnni, halves, bias, stage, reference },
        scratch,
    )
}

impl Conv {
    /// A 1x1, stride-1, unpadded convolution whose depth is already a multiple of the k padding:
    /// the im2col row of an output pixel is its input pixel.
    fn direct(&self) -> bool {
        let g = &self.g;
        g.k_h == 1
            && g.k_w == 1
            && g.stride_h == 1
            && g.stride_w == 1
            && g.pad_h == 0
            && g.pad_w == 0
            && self.kp == g.in_c
            && g.in_h == g.out_h
            && g.in_w == g.out_w
    }

    fn run_reference(&self, input: &[u8], out: &mut [u8]) {
        let g = &self.g;
        for b in 0..g.batches {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for oc in 0..g.out_c {
                        let mut acc: i32 = 0;
                        let w = &self.weights[oc * self.kp..];
                        g.taps(b, oy, ox, |t, base| {
                            if let Some(base) = base {
                                for c in 0..g.in_c {
                                    let x = self.q_in.get(input, base + c) - self.in_zp;
                                    acc = acc.wrapping_add((w[t * g.in_c + c] as i32).wrapping_mul(x));
                                }
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

    /// Writes the im2col row of output pixel `p` (x - zero point, 0 for padding) into `row`.
    fn patch(&self, input: &[u8], p: usize, row: &mut [i16]) {
        let g = &self.g;
        let ox = p % g.out_w;
        let oy = (p / g.out_w) % g.out_h;
        let b = p / (g.out_w * g.out_h);
        row[self.k..].fill(0);
        g.taps(b, oy, ox, |t, base| {
            let dst = &mut row[t * g.in_c..][..g.in_c];
            match base {
                Some(base) => gemm::widen(self.q_in, &input[base..base + g.in_c], self.in_zp, dst),
                None => dst.fill(0),
            }
        });
    }
}

impl Conv {
    /// Byte im2col row of output pixel `p` for the VNNI path; returns the row sum of the real
    /// k entries (when needed).
    #[inline(always)]
    fn patch_u8(&self, v: &Vnni, input: &[u8], p: usize, row: &mut [u8], sum: bool) -> i32 {
        let g = &self.g;
        let ox = p % g.out_w;
        let oy = (p / g.out_w) % g.out_h;
        let b = p / (g.out_w * g.out_h);
        row[self.k..].fill(0);
        let ix0 = (ox * g.stride_w) as isize - g.pad_w as isize;
        // With no horizontal dilation and the whole tap row inside the input, the k_w taps of
        // one filter row are one contiguous run of input bytes: one copy per filter row.
        let row_inside = g.dil_w == 1 && ix0 >= 0 && ix0 as usize + g.k_w <= g.in_w;
        let run = g.k_w * g.in_c;
        for ky in 0..g.k_h {
            let iy = (oy * g.stride_h + ky * g.dil_h) as isize - g.pad_h as isize;
            if row_inside && iy >= 0 && iy < g.in_h as isize {
                let base = ((b * g.in_h + iy as usize) * g.in_w + ix0 as usize) * g.in_c;
                let dst = &mut row[ky * run..(ky + 1) * run];
                let src = &input[base..base + run];
                match run {
                    9 => dst[..9].copy_from_slice(&src[..9]),
                    _ => dst.copy_from_slice(src),
                }
                continue;
            }
            for kx in 0..g.k_w {
                let ix = (ox * g.stride_w + kx * g.dil_w) as isize - g.pad_w as isize;
                let dst = &mut row[(ky * g.k_w + kx) * g.in_c..][..g.in_c];
                if iy < 0 || iy >= g.in_h as isize || ix < 0 || ix >= g.in_w as isize {
                    dst.fill(v.pad);
                    continue;
                }
                let base = ((b * g.in_h + iy as usize) * g.in_w + ix as usize) * g.in_c;
                let src = &input[base..base + g.in_c];
                // Fixed-size copies for the usual small depths (RGB inputs): no memcpy call.
                match g.in_c {
                    1 => dst[0] = src[0],
                    3 => dst[..3].copy_from_slice(&src[..3]),
                    4 => dst[..4].copy_from_slice(&src[..4]),
                    8 => dst[..8].copy_from_slice(&src[..8]),
                    _ => dst.copy_from_slice(src),
                }
            }
        }
        if sum {
            row_sum(v.q, &row[..self.k])
        } else {
            0
        }
    }

    /// The VNNI counterpart of `pixels_body`. 1x1 stride-1 convolutions whose depth is a
    /// multiple of 4 read the input rows in place (no im2col copy).
    #[inline(always)]
    fn pixels_vnni_body(&self, v: &Vnni, oc: usize, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        let g = &self.g;
        let kp = v.packed.kp;
        let direct = g.k_h == 1
            && g.k_w == 1
            && g.stride_h == 1
            && g.stride_w == 1
            && g.pad_h == 0
            && g.pad_w == 0
            && kp == g.in_c
            && g.in_h == g.out_h
            && g.in_w == g.out_w;
        let (a, rest) = scratch.split_at_mut(gemm::VNNI_ROWS * kp);
        let sx: &mut [i32] = bytemuck::cast_slice_mut(&mut rest[..gemm::VNNI_ROWS * 4]);
        // Symmetric weights (int8 models) need no input row sums.
        let sums = v.fold.a_uniform != Some(0);
        if !sums {
            sx.fill(0);
        }
        let n = rows.len() / oc;
        let mut at = 0;
        while at < n {
            let m = gemm::VNNI_ROWS.min(n - at);
            let block: &[u8] = if direct {
                let src = &input[(first + at) * kp..(first + at + m) * kp];
                if sums {
                    for (r, s) in sx.iter_mut().take(m).enumerate() {
                        *s = row_sum(v.q, &src[r * kp..(r + 1) * kp]);
                    }
                }
                src
            } else {
                for r in 0..m {
                    sx[r] = self.patch_u8(v, input, first + at + r, &mut a[r * kp..(r + 1) * kp], sums);
                }
                &a[..m * kp]
            };
            gemm::gemm_u8_fused(block, m, &v.packed, sx, &v.fold, self.q_out, &mut rows[at * oc..(at + m) * oc], oc);
            at += m;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn pixels_vnni_avx2(&self, v: &Vnni, oc: usize, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        self.pixels_vnni_body(v, oc, input, first, rows, scratch)
    }

    /// Output pixels `first..` into `rows` (`oc` channels each, those `v` holds).
    fn pixels_vnni(&self, v: &Vnni, oc: usize, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if gemm::best() == gemm::Isa::Avx2 {
            // SAFETY: AVX2 was detected at run time (`gemm::best`); the body is safe code.
            return unsafe { self.pixels_vnni_avx2(v, oc, input, first, rows, scratch) };
        }
        self.pixels_vnni_body(v, oc, input, first, rows, scratch)
    }

    /// Output pixels `first..` of one thread: im2col blocks of [`gemm::ROWS`] pixels, GEMM,
    /// output stage.
    #[inline(always)]
    fn pixels_body(
        &self,
        input: &[u8],
        first: usize,
        rows: &mut [u8],
        a: &mut [i16],
        acc: &mut [i32],
        p: &gemm::Packed,
    ) {
        let (oc, kp, np) = (self.g.out_c, self.kp, p.np);
        let n = rows.len() / oc;
        let mut at = 0;
        if let Some(f) = self.fused.as_ref().filter(|_| self.direct()) {
            // 1x1 stride-1 convolutions whose depth needs no k padding: the fused kernel reads
            // the input rows in place.
            while at < n {
                let m = gemm::ROWS.min(n - at);
                let src = &input[(first + at) * kp..(first + at + m) * kp];
                let dst = &mut rows[at * oc..(at + m) * oc];
                if !gemm::gemm_packed_fused_bytes(src, self.q_in, self.in_zp, m, p, f, self.q_out, dst, oc) {
                    break;
                }
                at += m;
            }
        }
        while at < n {
            let m = gemm::ROWS.min(n - at);
            for r in 0..m {
                self.patch(input, first + at + r, &mut a[r * kp..(r + 1) * kp]);
            }
            if let Some(f) = &self.fused {
                let dst = &mut rows[at * oc..(at + m) * oc];
                if gemm::gemm_packed_fused(&a[..m * kp], m, p, f, self.q_out, dst, oc) {
                    at += m;
                    continue;
                }
            }
            gemm::gemm_packed(&a[..m * kp], m, p, &mut acc[..m * np]);
            for r in 0..m {
                gemm::requantize(
                    &acc[r * np..r * np + oc],
                    &self.bias,
                    &self.stage,
                    self.q_out,
                    &mut rows[(at + r) * oc..(at + r + 1) * oc],
                );
            }
            at += m;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn pixels_avx2(
        &self,
        input: &[u8],
        first: usize,
        rows: &mut [u8],
        a: &mut [i16],
        acc: &mut [i32],
        p: &gemm::Packed,
    ) {
        self.pixels_body(input, first, rows, a, acc, p)
    }

    fn pixels(&self, input: &[u8], first: usize, rows: &mut [u8], a: &mut [i16], acc: &mut [i32], p: &gemm::Packed) {
        #[cfg(target_arch = "x86_64")]
        if gemm::best() == gemm::Isa::Avx2 {
            // SAFETY: AVX2 was detected at run time (`gemm::best`); the body is safe code.
            return unsafe { self.pixels_avx2(input, first, rows, a, acc, p) };
        }
        self.pixels_body(input, first, rows, a, acc, p)
    }
}

impl Kernel for Conv {
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
        let oc = self.g.out_c;
        let kp = self.kp;
        if let Some((h, halves)) = &self.halves {
            // The two halves of the one pixel's channels, one per thread where there are two.
            let (lo, hi) = out.split_at_mut(*h);
            let parts = [std::sync::Mutex::new(lo), std::sync::Mutex::new(hi)];
            io.par.rows(&mut [0u8; 2], 1, 1, io.scratch, |first, which, scratch| {
                for k in first..first + which.len() {
                    let mut dst = parts[k].lock().unwrap_or_else(|p| p.into_inner());
                    let n = dst.len();
                    self.pixels_vnni(&halves[k], n, input, 0, &mut dst, scratch);
                }
            });
            return Ok(());
        }
        if let Some(v) = &self.vnni {
            io.par.rows(out, oc, 4, io.scratch, |first, rows, scratch| {
                self.pixels_vnni(v, oc, input, first, rows, scratch)
            });
            return Ok(());
        }
        let packed = self.packed.as_ref().ok_or_else(|| crate::Error::argument("conv weights are not packed"))?;
        let np = packed.np;
        io.par.rows(out, oc, 4, io.scratch, |first, rows, scratch| {
            let (a, rest) = scratch.split_at_mut(gemm::ROWS * kp * 2);
            let a: &mut [i16] = bytemuck::cast_slice_mut(a);
            let acc: &mut [i32] = cast_mut(&mut rest[..gemm::ROWS * np * 4]).expect("aligned scratch");
            self.pixels(input, first, rows, a, acc, packed);
        });
        Ok(())
    }
}
