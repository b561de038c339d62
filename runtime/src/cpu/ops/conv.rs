//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED for uint8 (per-tensor) and int8 (per-channel).
//!
//! Weights are packed once at build time as `i16` values with the filter zero point already
//! subtracted, `[out_channel][k]` with `k` padded to a multiple of 16. The reference kernels
//! (TFLite's `reference_ops::Conv`, `DepthwiseConv`, `FullyConnected` and their integer
//! per-channel twins) read that layout directly; the fast kernels (im2col + integer GEMM, a
//! channel-vectorised depthwise loop) produce the same int32 accumulators exactly, so both share
//! one output stage.
// Unsafe only to call the AVX2-compiled copies of safe loop bodies after run-time detection.
#![allow(unsafe_code)]

use super::common::{conv_output_stage, dims4, le_i32, out_size_and_pad, positive, set_output_shape, OutputStage, Q8};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::error::Result;
use crate::model::TensorType;

/// K padding of packed weights (one AVX2 `madd` step).
const KPAD: usize = 16;

struct Geometry {
    batches: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    out_h: usize,
    out_w: usize,
    out_c: usize,
    k_h: usize,
    k_w: usize,
    stride_h: usize,
    stride_w: usize,
    dil_h: usize,
    dil_w: usize,
    pad_h: usize,
    pad_w: usize,
}

impl Geometry {
    /// Calls `f(tap, base)` for every filter tap of output pixel (b, oy, ox) in tap order:
    /// `base` is the byte offset of the input pixel under the tap, `None` when it falls in the
    /// padding.
    #[inline(always)]
    fn taps(&self, b: usize, oy: usize, ox: usize, mut f: impl FnMut(usize, Option<usize>)) {
        for ky in 0..self.k_h {
            let iy = (oy * self.stride_h + ky * self.dil_h) as isize - self.pad_h as isize;
            let y_in = iy >= 0 && iy < self.in_h as isize;
            for kx in 0..self.k_w {
                let ix = (ox * self.stride_w + kx * self.dil_w) as isize - self.pad_w as isize;
                let base = (y_in && ix >= 0 && ix < self.in_w as isize)
                    .then(|| ((b * self.in_h + iy as usize) * self.in_w + ix as usize) * self.in_c);
                f(ky * self.k_w + kx, base);
            }
        }
    }
}

/// Input 0 and the constant weights (input 1) of a convolution-like op, with their 8-bit
/// input and output types; hybrid (float/int mixed) weights are refused.
fn operands(ctx: &BuildCtx<'_>, what: &str) -> Result<(TensorInfo, TensorInfo, Q8, Q8)> {
    let input = ctx.input(0)?.clone();
    let filter = ctx.input(1)?.clone();
    let q_in = Q8::of(ctx, input.dtype)?;
    let q_out = Q8::of(ctx, ctx.output(0)?.dtype)?;
    if filter.dtype != input.dtype {
        return Err(ctx.err(format!("{what} and input types differ (hybrid operations are not supported)")));
    }
    Ok((input, filter, q_in, q_out))
}

/// Strides, dilations and padding from the options; output spatial size; sets the output shape.
fn geometry(ctx: &mut BuildCtx<'_>, [n, ih, iw, ic]: [usize; 4], kh: usize, kw: usize, oc: usize) -> Result<Geometry> {
    let o = ctx.options.clone();
    let (sh, sw) = (positive(ctx, "stride_h", o.stride_h)?, positive(ctx, "stride_w", o.stride_w)?);
    let (dh, dw) = (positive(ctx, "dilation_h", o.dilation_h)?, positive(ctx, "dilation_w", o.dilation_w)?);
    let (oh, pad_h) = out_size_and_pad(o.padding, ih, kh, sh, dh);
    let (ow, pad_w) = out_size_and_pad(o.padding, iw, kw, sw, dw);
    set_output_shape(ctx, 0, vec![n, oh, ow, oc])?;
    Ok(Geometry {
        batches: n,
        in_h: ih,
        in_w: iw,
        in_c: ic,
        out_h: oh,
        out_w: ow,
        out_c: oc,
        k_h: kh,
        k_w: kw,
        stride_h: sh,
        stride_w: sw,
        dil_h: dh,
        dil_w: dw,
        pad_h,
        pad_w,
    })
}

fn pack_weights(q: Q8, data: &[u8], rows: usize, k: usize, zp: &[i32], kp: usize) -> Vec<i16> {
    let mut w = vec![0i16; rows * kp];
    for r in 0..rows {
        let z = if zp.len() == 1 { zp[0] } else { zp.get(r).copied().unwrap_or(0) };
        for i in 0..k {
            w[r * kp + i] = (q.get(data, r * k + i) - z) as i16;
        }
    }
    w
}

fn bias_of(ctx: &BuildCtx<'_>, index: usize, channels: usize) -> Result<Vec<i32>> {
    match ctx.inputs.get(index).and_then(|b| b.as_ref()) {
        None => Ok(vec![0; channels]),
        Some(b) => {
            if b.dtype != TensorType::INT32 {
                return Err(ctx.err(format!("bias has type {}, expected int32", b.dtype.name())));
            }
            let v = le_i32(ctx.constant(index)?);
            if v.len() != channels {
                return Err(ctx.err(format!("bias has {} values for {channels} output channels", v.len())));
            }
            Ok(v)
        }
    }
}

fn filter_zero_points(ctx: &BuildCtx<'_>, index: usize) -> Result<Vec<i32>> {
    let f = ctx.input(index)?;
    let q = f.quant.as_ref().ok_or_else(|| ctx.err("the filter has no quantization parameters"))?;
    Ok(q.zero_point.clone())
}

struct Conv {
    g: Geometry,
    q_in: Q8,
    q_out: Q8,
    in_zp: i32,
    k: usize,
    kp: usize,
    weights: Vec<i16>,
    packed: Option<gemm::Packed>,
    vnni: Option<Vnni>,
    bias: Vec<i32>,
    stage: OutputStage,
    reference: bool,
}

/// The 8-bit dot-product path (AVX-512 VNNI): patches stay raw input bytes and the zero points
/// are folded into per-channel terms, `acc = dot(x, w') + a[oc] * rowsum(x) + c[oc]`, which
/// equals `sum (x - zx)(w - zw) + bias` exactly (see `vnni_layout`).
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
    wz: &[i16],
    zw: &[i32],
    n: usize,
    k: usize,
    kp: usize,
    in_zp: i32,
    bias: &[i32],
    stage: &OutputStage,
) -> Option<Vnni> {
    let zw_of = |j: usize| if zw.len() == 1 { zw[0] } else { zw.get(j).copied().unwrap_or(0) };
    let mut wb = vec![0u8; n * k];
    let mut a = vec![0i32; n];
    let mut c = vec![0i32; n];
    for j in 0..n {
        let mut colsum = 0i32;
        for i in 0..k {
            let v = wz[j * kp + i] as i32; // w - zw
            colsum = colsum.wrapping_add(v);
            wb[j * k + i] = match q {
                // Signed weight bytes w - 128 against unsigned input bytes.
                Q8::U8 => (v + zw_of(j) - 128) as i8 as u8,
                // Unsigned weight bytes w + 128 against signed input bytes (filter zero point 0).
                Q8::I8 => {
                    if zw_of(j) != 0 {
                        return None;
                    }
                    (v + 128) as u8
                }
            };
        }
        a[j] = match q {
            Q8::U8 => 128 - zw_of(j),
            Q8::I8 => -128,
        };
        c[j] = bias[j].wrapping_sub(in_zp.wrapping_mul(colsum));
    }
    let packed = gemm::PackedU8::new(&wb, n, k, q == Q8::I8);
    let fold = gemm::Fold::new(&a, &c, stage, packed.np);
    Some(Vnni { packed, fold, pad: q.put(in_zp), q })
}

/// Sum of a row of input bytes (unsigned or signed).
#[inline(always)]
fn row_sum(q: Q8, row: &[u8]) -> i32 {
    match q {
        Q8::U8 => row.iter().map(|&x| x as i32).sum(),
        Q8::I8 => row.iter().map(|&x| x as i8 as i32).sum(),
    }
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
    let weights = pack_weights(q_in, ctx.constant(1)?, oc, k, &zp, kp);
    let bias = bias_of(ctx, 2, oc)?;
    let reference = ctx.reference;
    // Fast path scratch: im2col rows (i16) + accumulators, per thread.
    let np = oc.div_ceil(16) * 16;
    let scratch = gemm::ROWS * kp * 2 + gemm::ROWS * np * 4 + 64;
    let in_zp = input.qparams()?.1;
    let vnni =
        if !reference && ctx.vnni { vnni_layout(q_in, &weights, &zp, oc, k, kp, in_zp, &bias, &stage) } else { None };
    let (weights, packed) = if vnni.is_some() { (Vec::new(), None) } else { layout(weights, oc, kp, reference) };
    Built::with_scratch(Conv { g, q_in, q_out, in_zp, k, kp, weights, packed, vnni, bias, stage, reference }, scratch)
}

impl Conv {
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
    fn patch_u8(&self, v: &Vnni, input: &[u8], p: usize, row: &mut [u8]) -> i32 {
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
        row_sum(v.q, &row[..self.k])
    }

    /// The VNNI counterpart of `pixels_body`. 1x1 stride-1 convolutions whose depth is a
    /// multiple of 4 read the input rows in place (no im2col copy).
    #[inline(always)]
    fn pixels_vnni_body(&self, v: &Vnni, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        let g = &self.g;
        let (oc, kp) = (g.out_c, v.packed.kp);
        let direct = g.k_h == 1
            && g.k_w == 1
            && g.stride_h == 1
            && g.stride_w == 1
            && g.pad_h == 0
            && g.pad_w == 0
            && kp == g.in_c
            && g.in_h == g.out_h
            && g.in_w == g.out_w;
        let (a, rest) = scratch.split_at_mut(gemm::ROWS * kp);
        let sx: &mut [i32] = bytemuck::cast_slice_mut(&mut rest[..gemm::ROWS * 4]);
        let n = rows.len() / oc;
        let mut at = 0;
        while at < n {
            let m = gemm::ROWS.min(n - at);
            let block: &[u8] = if direct {
                let src = &input[(first + at) * kp..(first + at + m) * kp];
                for (r, s) in sx.iter_mut().take(m).enumerate() {
                    *s = row_sum(v.q, &src[r * kp..(r + 1) * kp]);
                }
                src
            } else {
                for r in 0..m {
                    sx[r] = self.patch_u8(v, input, first + at + r, &mut a[r * kp..(r + 1) * kp]);
                }
                &a[..m * kp]
            };
            gemm::gemm_u8_fused(block, m, &v.packed, sx, &v.fold, self.q_out, &mut rows[at * oc..(at + m) * oc], oc);
            at += m;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn pixels_vnni_avx2(&self, v: &Vnni, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        self.pixels_vnni_body(v, input, first, rows, scratch)
    }

    fn pixels_vnni(&self, v: &Vnni, input: &[u8], first: usize, rows: &mut [u8], scratch: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if gemm::best() == gemm::Isa::Avx2 {
            // SAFETY: AVX2 was detected at run time (`gemm::best`); the body is safe code.
            return unsafe { self.pixels_vnni_avx2(v, input, first, rows, scratch) };
        }
        self.pixels_vnni_body(v, input, first, rows, scratch)
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
        while at < n {
            let m = gemm::ROWS.min(n - at);
            for r in 0..m {
                self.patch(input, first + at + r, &mut a[r * kp..(r + 1) * kp]);
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
        if let Some(v) = &self.vnni {
            io.par
                .rows(out, oc, 4, io.scratch, |first, rows, scratch| self.pixels_vnni(v, input, first, rows, scratch));
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
    let scratch = (oc * 4 + ic * 4) * 2 + 64;
    let taps = kh * kw;
    let folded = (0..oc)
        .map(|c| {
            let sum = (0..taps).fold(0i32, |s, t| s.wrapping_add(weights[t * oc + c]));
            bias[c].wrapping_sub(in_zp.wrapping_mul(sum))
        })
        .collect();
    let rel = (0..kh * kw).map(|t| ((t / kw) * g.dil_h * iw + (t % kw) * g.dil_w) * ic).collect();
    let pairs = (!reference && mult == 1 && taps <= gemm::DW_MAX_TAPS && oc >= 16)
        .then(|| gemm::DwPairs::new(&weights, taps, oc));
    Built::with_scratch(
        Depthwise { rel, g, q_in, q_out, in_zp, mult, weights, bias, folded, pairs, stage, reference },
        scratch,
    )
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
    fn rows_body(&self, input: &[u8], first: usize, rows: &mut [u8], acc: &mut [i32], xs: &mut [i32]) {
        let g = &self.g;
        let row_len = g.out_w * g.out_c;
        for (r, out_row) in rows.chunks_mut(row_len).enumerate() {
            let row = first + r;
            self.row_fast(input, row / g.out_h, row % g.out_h, out_row, acc, xs);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2(&self, input: &[u8], first: usize, rows: &mut [u8], acc: &mut [i32], xs: &mut [i32]) {
        self.rows_body(input, first, rows, acc, xs)
    }

    fn rows(&self, input: &[u8], first: usize, rows: &mut [u8], acc: &mut [i32], xs: &mut [i32]) {
        #[cfg(target_arch = "x86_64")]
        if gemm::best() == gemm::Isa::Avx2 {
            // SAFETY: AVX2 was detected at run time (`gemm::best`); the body is safe code.
            return unsafe { self.rows_avx2(input, first, rows, acc, xs) };
        }
        self.rows_body(input, first, rows, acc, xs)
    }

    /// One output row (all x, all channels) with channel-vectorised accumulation.
    #[inline(always)]
    fn row_fast(&self, input: &[u8], b: usize, oy: usize, out_row: &mut [u8], acc: &mut [i32], xs: &mut [i32]) {
        let g = &self.g;
        let oc = g.out_c;
        let mut bases = [0usize; gemm::DW_MAX_TAPS];
        let mut taps = [0usize; gemm::DW_MAX_TAPS];
        let vector = self.mult == 1 && g.k_h * g.k_w <= gemm::DW_MAX_TAPS;
        for ox in 0..g.out_w {
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
        io.par.rows(out, row_len, 1, io.scratch, |first, rows, scratch| {
            let words: &mut [i32] = cast_mut(&mut scratch[..(oc + ic) * 4]).expect("aligned scratch");
            let (acc, xs) = words.split_at_mut(oc);
            self.rows(input, first, rows, acc, xs);
        });
        Ok(())
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
    stage: OutputStage,
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
    let act = ctx.options.activation;
    let stage = conv_output_stage(ctx, &input, &filter, &output, units, act)?;
    let kp = k.div_ceil(KPAD) * KPAD;
    let zp = filter_zero_points(ctx, 1)?;
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
            gemm::requantize(
                &acc[..m * units],
                &self.bias,
                &self.stage,
                self.q_out,
                &mut out[b * units..(b + m) * units],
            );
            b += m;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
