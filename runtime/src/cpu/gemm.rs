//! Integer GEMM and row helpers of the fast kernels.
//!
//! Operands are `i16` values with zero points already subtracted, so every product and every
//! sum is exact in `i32`: `a[m][k] * w[n][k]` summed over `k` (`k` padded with zeros to a
//! multiple of 16). On x86-64 with AVX2 (detected at run time) the inner loop is `vpmaddwd`
//! on 4x2 output tiles; elsewhere a portable loop computes the same integers.
// The only unsafe code of the CPU interpreter: calling AVX2 functions after run-time detection,
// and unaligned vector loads from slices whose bounds are checked before each load.
#![allow(unsafe_code)]

use super::ops::common::{OutputStage, Q8};
use super::par::Par;

/// Rows of A processed per GEMM call by the convolution kernels.
pub(crate) const ROWS: usize = 24;

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// `EDGETPU_CPU_ISA=portable` turns the SIMD kernels off (read once): for comparing results
/// and for testing the paths that CPUs without AVX2 (such as aarch64) take.
fn forced_portable() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("EDGETPU_CPU_ISA").is_some_and(|v| v == "portable"))
}

/// The best implementation on this CPU.
pub(crate) fn best() -> Isa {
    if forced_portable() {
        return Isa::Portable;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// `dst[i] = src[i] - zp` as i16.
#[inline]
pub(crate) fn widen(q: Q8, src: &[u8], zp: i32, dst: &mut [i16]) {
    match q {
        Q8::U8 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s as i32 - zp) as i16;
            }
        }
        Q8::I8 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s as i8 as i32 - zp) as i16;
            }
        }
    }
}

/// `acc[c] += w[c] * (x[c] - zp)` over a row of channels.
#[inline]
pub(crate) fn mac_row(q: Q8, x: &[u8], zp: i32, w: &[i32], acc: &mut [i32]) {
    match q {
        Q8::U8 => {
            for ((a, &wv), &xv) in acc.iter_mut().zip(w).zip(x) {
                *a = a.wrapping_add(wv.wrapping_mul((xv as i32).wrapping_sub(zp)));
            }
        }
        Q8::I8 => {
            for ((a, &wv), &xv) in acc.iter_mut().zip(w).zip(x) {
                *a = a.wrapping_add(wv.wrapping_mul((xv as i8 as i32).wrapping_sub(zp)));
            }
        }
    }
}

/// Output stage over `m` rows of `n` accumulators, adding the bias per column.
pub(crate) fn requantize(acc: &[i32], bias: &[i32], stage: &OutputStage, q: Q8, out: &mut [u8]) {
    let n = bias.len();
    for (row_acc, row_out) in acc.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        requantize_bias_row(row_acc, Some(bias), stage, q, row_out);
    }
}

/// Output stage over one row of accumulators that already include the bias.
pub(crate) fn requantize_row(acc: &[i32], stage: &OutputStage, q: Q8, out: &mut [u8]) {
    requantize_bias_row(acc, None, stage, q, out)
}

fn requantize_bias_row(acc: &[i32], bias: Option<&[i32]>, stage: &OutputStage, q: Q8, out: &mut [u8]) {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if stage.vector {
        // SAFETY: `vector` is only set when AVX2 was detected at run time (`OutputStage::new`).
        start = unsafe { x86::requantize_avx2(acc, bias, stage, q, out) };
    }
    for c in start..acc.len() {
        let a = acc[c].wrapping_add(bias.map_or(0, |b| b[c]));
        out[c] = q.put(stage.apply(a, c));
    }
}

/// `out[i][j] = sum_k a[i][k] * w[j][k]` for `m` rows of `a` and `n` rows of `w`.
pub(crate) fn gemm(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    gemm_with(best(), a, m, w, n, kp, out)
}

/// [`gemm`] with the columns split over threads (for single-row products such as
/// FULLY_CONNECTED).
pub(crate) fn gemm_par(par: &Par, a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    if m != 1 || par.threads() == 1 || n < 64 {
        return gemm(a, m, w, n, kp, out);
    }
    par.rows(out, 1, 32, &mut [], |first, cols, _| {
        let cn = cols.len();
        gemm(a, 1, &w[first * kp..(first + cn) * kp], cn, kp, cols);
    });
}

/// [`gemm`] with a chosen implementation (for tests).
pub(crate) fn gemm_with(isa: Isa, a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    assert!(kp.is_multiple_of(16) && a.len() >= m * kp && w.len() >= n * kp && out.len() >= m * n);
    match isa {
        Isa::Portable => gemm_portable(a, m, w, n, kp, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen after `is_x86_feature_detected!("avx2")` (see
        // `best`), or by tests that check the same; slice bounds were asserted above.
        Isa::Avx2 => unsafe { x86::gemm_avx2(a, m, w, n, kp, out) },
    }
}

fn gemm_portable(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    for i in 0..m {
        let ar = &a[i * kp..(i + 1) * kp];
        for j in 0..n {
            let wr = &w[j * kp..(j + 1) * kp];
            out[i * n + j] = dot(ar, wr);
        }
    }
}

#[inline]
fn dot(a: &[i16], b: &[i16]) -> i32 {
    let mut acc = [0i32; 8];
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for l in 0..8 {
            let pair = ca[2 * l] as i32 * cb[2 * l] as i32 + ca[2 * l + 1] as i32 * cb[2 * l + 1] as i32;
            acc[l] = acc[l].wrapping_add(pair);
        }
    }
    acc.iter().fold(0i32, |s, &v| s.wrapping_add(v))
}

/// Weights packed for [`gemm_packed`]: k in pairs, output channels padded to 16,
/// `w[((kk * np) + j) * 2 + {0, 1}] = W[j][2kk + {0, 1}]`.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub w: Vec<i16>,
    /// Output channels padded to 16.
    pub np: usize,
    /// K padded to 16 (rows of A have this length).
    pub kp: usize,
}

impl Packed {
    /// Packs `rows` x `kp` weights (`[n][kp]`, zero padded).
    pub fn new(w: &[i16], n: usize, kp: usize) -> Packed {
        let np = n.div_ceil(16) * 16;
        let mut out = vec![0i16; kp * np];
        for j in 0..n {
            for k in 0..kp {
                out[((k / 2) * np + j) * 2 + (k % 2)] = w[j * kp + k];
            }
        }
        Packed { w: out, np, kp }
    }
}

/// `out[i][j] = sum_k a[i][k] * W[j][k]` for `m` rows of `a` (`kp` columns each), `out` rows
/// of `p.np` values (columns past `p.n` are zero-weight padding).
pub(crate) fn gemm_packed(a: &[i16], m: usize, p: &Packed, out: &mut [i32]) {
    assert!(a.len() >= m * p.kp && out.len() >= m * p.np && p.kp.is_multiple_of(2));
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 {
        // SAFETY: AVX2 was detected at run time (`best`); bounds asserted above.
        unsafe { x86::gemm_packed_avx2(a, m, p, out) };
        return;
    }
    gemm_packed_portable(a, m, p, out)
}

pub(crate) fn gemm_packed_portable(a: &[i16], m: usize, p: &Packed, out: &mut [i32]) {
    for i in 0..m {
        let row = &mut out[i * p.np..(i + 1) * p.np];
        row.fill(0);
        for kk in 0..p.kp / 2 {
            let (x0, x1) = (a[i * p.kp + 2 * kk] as i32, a[i * p.kp + 2 * kk + 1] as i32);
            if x0 == 0 && x1 == 0 {
                continue;
            }
            let w = &p.w[kk * p.np * 2..(kk + 1) * p.np * 2];
            for (j, o) in row.iter_mut().enumerate() {
                *o += x0 * w[2 * j] as i32 + x1 * w[2 * j + 1] as i32;
            }
        }
    }
}

/// Whether the CPU has AVX-512 VNNI (with VL), for the 8-bit dot-product GEMM.
pub(crate) fn vnni() -> bool {
    if forced_portable() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Weights for the byte GEMM: k in quads, output channels padded to 16,
/// `w[((kq * np) + j) * 4 + {0..3}] = W[j][4kq + {0..3}]`. Either the weights are signed bytes
/// and the inputs unsigned, or (`unsigned_weights`) the other way round.
#[derive(Debug, Clone)]
pub(crate) struct PackedU8 {
    pub w: Vec<u8>,
    /// Weights are unsigned and inputs signed.
    pub unsigned_weights: bool,
    /// Output channels padded to 16.
    pub np: usize,
    /// K padded to 4 (rows of A have this length).
    pub kp: usize,
}

impl PackedU8 {
    /// Packs `n` rows of `k` weight bytes.
    pub fn new(w: &[u8], n: usize, k: usize, unsigned_weights: bool) -> PackedU8 {
        let np = n.div_ceil(16) * 16;
        let kp = k.div_ceil(4) * 4;
        let mut out = vec![0u8; kp * np];
        for j in 0..n {
            for i in 0..k {
                out[((i / 4) * np + j) * 4 + (i % 4)] = w[j * k + i];
            }
        }
        PackedU8 { w: out, unsigned_weights, np, kp }
    }
}

/// `out[i][j] = sum_k a[i][k] * W[j][k]` with unsigned-byte `a` (`m` rows of `p.kp`) and
/// signed-byte weights, wrapping in i32 like `vpdpbusd` (exact whenever the true sum fits).
#[cfg(test)]
pub(crate) fn gemm_u8_portable(a: &[u8], m: usize, p: &PackedU8, out: &mut [i32]) {
    for i in 0..m {
        let row = &mut out[i * p.np..(i + 1) * p.np];
        row.fill(0);
        for kq in 0..p.kp / 4 {
            let x = &a[i * p.kp + 4 * kq..i * p.kp + 4 * kq + 4];
            let w = &p.w[kq * p.np * 4..(kq + 1) * p.np * 4];
            for (j, o) in row.iter_mut().enumerate() {
                let mut s = 0i32;
                for t in 0..4 {
                    s += if p.unsigned_weights {
                        x[t] as i8 as i32 * w[4 * j + t] as i32
                    } else {
                        x[t] as i32 * w[4 * j + t] as i8 as i32
                    };
                }
                *o = o.wrapping_add(s);
            }
        }
    }
}

/// Per-channel terms of the fused byte GEMM, padded to [`PackedU8::np`]: the folded zero-point
/// terms `acc + a[c] * rowsum + c[c]`, then the output stage.
#[derive(Debug, Clone)]
// Some fields only feed the x86-64 vector kernels.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Fold {
    pub a: Vec<i32>,
    /// The value of every `a` when they are all equal (the usual case): one scalar product per
    /// row instead of a vector multiply per 8 channels.
    pub a_uniform: Option<i32>,
    pub c: Vec<i32>,
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    pub offset: i32,
    pub min: i32,
    pub max: i32,
}

impl Fold {
    pub fn new(a: &[i32], c: &[i32], st: &OutputStage, np: usize) -> Fold {
        let pad = |v: &[i32]| {
            let mut x = v.to_vec();
            x.resize(np, 0);
            x
        };
        let a_uniform = a.first().copied().filter(|&a0| a.iter().all(|&v| v == a0));
        Fold {
            a_uniform,
            a: pad(a),
            c: pad(c),
            multiplier: pad(&st.multiplier),
            shift: pad(&st.shift),
            left: pad(&st.left),
            right: pad(&st.right),
            offset: st.offset,
            min: st.min,
            max: st.max,
        }
    }
}

/// Byte GEMM with the zero-point fold and output stage fused: `m` rows of `a` (`p.kp` bytes)
/// to `m` rows of `oc` output bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_u8_fused(a: &[u8], m: usize, p: &PackedU8, sx: &[i32], f: &Fold, q: Q8, out: &mut [u8], oc: usize) {
    assert!(a.len() >= m * p.kp && out.len() >= m * oc && sx.len() >= m && oc <= p.np && f.a.len() >= p.np);
    #[cfg(target_arch = "x86_64")]
    if vnni() && f.shift.iter().all(|&s| s < 31) {
        // SAFETY: AVX-512 VNNI, VL and AVX2 were detected at run time (`vnni`); bounds asserted.
        unsafe { x86::gemm_u8_fused_vnni(a, m, p, sx, f, q, out, oc) };
        return;
    }
    gemm_u8_fused_portable(a, m, p, sx, f, q, out, oc)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_u8_fused_portable(
    a: &[u8],
    m: usize,
    p: &PackedU8,
    sx: &[i32],
    f: &Fold,
    q: Q8,
    out: &mut [u8],
    oc: usize,
) {
    for i in 0..m {
        let row = &a[i * p.kp..(i + 1) * p.kp];
        for c in 0..oc {
            let mut dot = 0i32;
            for (k, &x) in row.iter().enumerate() {
                let w = p.w[((k / 4) * p.np + c) * 4 + k % 4];
                let (x, w) = if p.unsigned_weights { (x as i8 as i32, w as i32) } else { (x as i32, w as i8 as i32) };
                dot = dot.wrapping_add(x * w);
            }
            let x = dot.wrapping_add(f.a[c].wrapping_mul(sx[i])).wrapping_add(f.c[c]);
            let v =
                super::quant::multiply_by_quantized_multiplier(x, f.multiplier[c], f.shift[c]).wrapping_add(f.offset);
            out[i * oc + c] = q.put(v.clamp(f.min, f.max));
        }
    }
}

/// Runs `f`, compiled for AVX2 where the CPU has it: `f` is inlined into an AVX2 function, so
/// plain loops in it are vectorised with 256-bit registers.
#[inline]
pub(crate) fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 {
        // SAFETY: AVX2 was detected at run time (`best`); `f` is safe code.
        return unsafe { x86::call_avx2(f) };
    }
    f()
}

/// Most taps the vectorised depthwise pixel handles (larger filters use the row loop).
pub(crate) const DW_MAX_TAPS: usize = 64;

/// One depthwise output pixel (depth multiplier 1) for channels `0..n8` (a multiple of 8):
/// `acc[c] = init[c] + sum over taps (x[base_t + c] - zx) * w[tap_t][c]`, then the output stage
/// (`init` is the bias, or the bias with the zero-point terms folded in when `zx` is 0).
/// Returns how many channels were done (0 when the CPU lacks AVX2).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dw_pixel(
    start: usize,
    input: &[u8],
    q_in: Q8,
    zx: i32,
    bases: &[usize],
    taps: &[usize],
    weights: &[i32],
    oc: usize,
    bias: &[i32],
    st: &OutputStage,
    q_out: Q8,
    out: &mut [u8],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if st.vector {
        // SAFETY: `vector` is only set when AVX2 was detected at run time (`OutputStage::new`).
        return unsafe { x86::dw_pixel_avx2(start, input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out) };
    }
    let _ = (input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out);
    start
}

/// Depthwise weights for full-window pixels, two taps per `vpmaddwd`: for each block of 16
/// channels and each pair of taps, two vectors of interleaved `(w_a, w_b)` i16 pairs in the lane
/// order of `unpacklo/hi_epi16` (channels 0-3 and 8-11, then 4-7 and 12-15).
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct DwPairs {
    pub w: Vec<i16>,
    /// Channels covered: whole blocks of 16.
    pub n16: usize,
    pub pairs: usize,
}

impl DwPairs {
    /// From `[tap][oc]` weights with the zero point already subtracted (each within i16).
    pub fn new(weights: &[i32], taps: usize, oc: usize) -> DwPairs {
        let n16 = oc / 16 * 16;
        let pairs = taps.div_ceil(2);
        let mut w = vec![0i16; (n16 / 16) * pairs * 32];
        let at = |t: usize, c: usize| if t < taps { weights[t * oc + c] as i16 } else { 0 };
        for b in 0..n16 / 16 {
            for k in 0..pairs {
                let base = (b * pairs + k) * 32;
                for half in 0..2 {
                    for j in 0..4 {
                        for (lane, c) in [(2 * j, 16 * b + 4 * half + j), (8 + 2 * j, 16 * b + 8 + 4 * half + j)] {
                            w[base + half * 16 + lane] = at(2 * k, c);
                            w[base + half * 16 + lane + 1] = at(2 * k + 1, c);
                        }
                    }
                }
            }
        }
        DwPairs { w, n16, pairs }
    }
}

/// One full-window depthwise pixel (depth multiplier 1, every tap inside the input, raw input
/// bytes, zero-point terms folded into `init`) for the channels of `p`, two taps per
/// `vpmaddwd`. Returns how many channels were done (0 without AVX2).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dw_pixel_pairs(
    input: &[u8],
    q_in: Q8,
    bases: &[usize],
    p: &DwPairs,
    init: &[i32],
    st: &OutputStage,
    q_out: Q8,
    out: &mut [u8],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if st.vector && bases.len() <= 2 * p.pairs {
        // SAFETY: `vector` is only set when AVX2 was detected at run time (`OutputStage::new`).
        return unsafe { x86::dw_pixel_pairs_avx2(input, q_in, bases, p, init, st, q_out, out) };
    }
    let _ = (input, q_in, bases, p, init, st, q_out, out);
    0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{OutputStage, Q8};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn call_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load8(s: &[i32], at: usize) -> __m256i {
        let chunk = &s[at..at + 8];
        // SAFETY: `chunk` holds exactly 8 i32 (32 bytes); loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(chunk.as_ptr() as *const __m256i) }
    }

    /// The output stage on 8 lanes: `x << left`, SaturatingRoundingDoublingHighMul by `m`,
    /// RoundingDivideByPOT by `right`, plus `offset`, clamped to `[lo, hi]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn requant8(
        x: __m256i,
        m: __m256i,
        left: __m256i,
        right: __m256i,
        offset: __m256i,
        lo: __m256i,
        hi: __m256i,
    ) -> __m256i {
        let one = _mm256_set1_epi32(1);
        let zero = _mm256_setzero_si256();
        let x = _mm256_sllv_epi32(x, left);
        // SaturatingRoundingDoublingHighMul: gemmlowp's sign-dependent nudge followed by a
        // truncating division by 2^31 equals floor((x * m + 2^30) / 2^31) for every product, so
        // the result is bits 31..62 of `x * m + 2^30`. Multipliers are positive, so the
        // saturating case (both operands i32::MIN) cannot occur.
        let n30 = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_add_epi64(_mm256_mul_epi32(x, m), n30);
        let odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m)), n30);
        let h = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<31>(even), _mm256_slli_epi64::<1>(odd));
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
        let rem = _mm256_and_si256(h, mask);
        let threshold = _mm256_sub_epi32(_mm256_srli_epi32::<1>(mask), _mm256_cmpgt_epi32(zero, h));
        let r = _mm256_sub_epi32(_mm256_srav_epi32(h, right), _mm256_cmpgt_epi32(rem, threshold));
        _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, offset), lo), hi)
    }

    /// Narrows two vectors of 8 already clamped i32 lanes (channels `at..at + 8` and
    /// `at + 8..at + 16`) to bytes and stores them at `out[at..at + 16]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_bytes16(out: &mut [u8], at: usize, v0: __m256i, v1: __m256i, q: Q8) {
        // packs works within 128-bit lanes: [v0 0-3, v1 0-3 | v0 4-7, v1 4-7] as i16.
        let w16 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v0, v1));
        // Now [v0 0-3, v0 4-7 | v1 0-3, v1 4-7]; narrow again and take the low 8 bytes of
        // each lane.
        let w8 = match q {
            Q8::U8 => _mm256_packus_epi16(w16, w16),
            Q8::I8 => _mm256_packs_epi16(w16, w16),
        };
        let both = _mm256_permute4x64_epi64::<0b00_00_10_00>(w8);
        let dst = &mut out[at..at + 16];
        // SAFETY: `dst` holds exactly 16 bytes; storeu has no alignment requirement.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, _mm256_castsi256_si128(both)) }
    }

    /// Narrows 8 already clamped i32 lanes to bytes and stores them at `out[at..at + 8]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_bytes8(out: &mut [u8], at: usize, v: __m256i, q: Q8) {
        let w16 = _mm256_packs_epi32(v, v);
        let w8 = match q {
            Q8::U8 => _mm256_packus_epi16(w16, w16),
            Q8::I8 => _mm256_packs_epi16(w16, w16),
        };
        let both = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        let dst = &mut out[at..at + 8];
        // SAFETY: `dst` holds exactly 8 bytes; storel writes the low 8 bytes, unaligned.
        unsafe { _mm_storel_epi64(dst.as_mut_ptr() as *mut __m128i, _mm256_castsi256_si128(both)) }
    }

    /// Narrows 8 already clamped i32 lanes to 8 bytes (little-endian in the result).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn narrow8(v: __m256i, q: Q8) -> u64 {
        let w16 = _mm256_packs_epi32(v, v);
        let w8 = match q {
            Q8::U8 => _mm256_packus_epi16(w16, w16),
            Q8::I8 => _mm256_packs_epi16(w16, w16),
        };
        let both = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        _mm256_extract_epi64::<0>(both) as u64
    }

    /// Fused tile: the byte GEMM of `R` rows x 16 channels, then the folded zero-point terms
    /// and the output stage in registers, storing bytes.
    #[inline]
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    fn tile_fused<const R: usize, const SWAP: bool>(
        quads: &[i32],
        i: usize,
        kq: usize,
        p: &super::PackedU8,
        j: usize,
        sx: &[i32],
        f: &super::Fold,
        q: Q8,
        out: &mut [u8],
        oc: usize,
    ) {
        let np = p.np;
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        // Row slices and weight quads bounds-checked once, so the inner loop is loads and
        // dot products only.
        let mut rows: [&[i32]; R] = [&[]; R];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = &quads[(i + r) * kq..(i + r + 1) * kq];
        }
        for (qq, wq) in p.w.chunks_exact(np * 4).take(kq).enumerate() {
            let w = &wq[j * 4..j * 4 + 64];
            let b0 = load_i8(w, 0);
            let b1 = load_i8(w, 32);
            for (a, row) in acc.iter_mut().zip(rows.iter()) {
                let x = _mm256_set1_epi32(row[qq]);
                if SWAP {
                    a[0] = _mm256_dpbusd_epi32(a[0], b0, x);
                    a[1] = _mm256_dpbusd_epi32(a[1], b1, x);
                } else {
                    a[0] = _mm256_dpbusd_epi32(a[0], x, b0);
                    a[1] = _mm256_dpbusd_epi32(a[1], x, b1);
                }
            }
        }
        let offset = _mm256_set1_epi32(f.offset);
        let (lo, hi) = (_mm256_set1_epi32(f.min), _mm256_set1_epi32(f.max));
        if j + 16 <= oc {
            // Both halves valid: requantize 16 channels per row and store them with one
            // 16-byte narrowing.
            let (fa0, fc0) = (load8(&f.a, j), load8(&f.c, j));
            let (fa1, fc1) = (load8(&f.a, j + 8), load8(&f.c, j + 8));
            let (m0, l0, r0) = (load8(&f.multiplier, j), load8(&f.left, j), load8(&f.right, j));
            let (m1, l1, r1) = (load8(&f.multiplier, j + 8), load8(&f.left, j + 8), load8(&f.right, j + 8));
            for (r, a) in acc.iter().enumerate() {
                let (asx0, asx1) = match f.a_uniform {
                    Some(a0) => {
                        let v = _mm256_set1_epi32(a0.wrapping_mul(sx[i + r]));
                        (v, v)
                    }
                    None => {
                        let s = _mm256_set1_epi32(sx[i + r]);
                        (_mm256_mullo_epi32(fa0, s), _mm256_mullo_epi32(fa1, s))
                    }
                };
                let x0 = _mm256_add_epi32(_mm256_add_epi32(a[0], asx0), fc0);
                let x1 = _mm256_add_epi32(_mm256_add_epi32(a[1], asx1), fc1);
                let v0 = requant8(x0, m0, l0, r0, offset, lo, hi);
                let v1 = requant8(x1, m1, l1, r1, offset, lo, hi);
                store_bytes16(out, (i + r) * oc + j, v0, v1, q);
            }
            return;
        }
        for h in 0..2 {
            let col = j + 8 * h;
            if col >= oc {
                break;
            }
            let (fa, fc) = (load8(&f.a, col), load8(&f.c, col));
            let (m, left, right) = (load8(&f.multiplier, col), load8(&f.left, col), load8(&f.right, col));
            let n = (oc - col).min(8);
            for (r, a) in acc.iter().enumerate() {
                let asx = match f.a_uniform {
                    Some(a0) => _mm256_set1_epi32(a0.wrapping_mul(sx[i + r])),
                    None => _mm256_mullo_epi32(fa, _mm256_set1_epi32(sx[i + r])),
                };
                let x = _mm256_add_epi32(_mm256_add_epi32(a[h], asx), fc);
                let v = requant8(x, m, left, right, offset, lo, hi);
                let at = (i + r) * oc + col;
                if n == 8 {
                    store_bytes8(out, at, v, q);
                } else {
                    out[at..at + n].copy_from_slice(&narrow8(v, q).to_le_bytes()[..n]);
                }
            }
        }
    }

    /// Fused byte GEMM and output stage over tiles of 8 rows x 16 output channels (AVX-512VL gives
    /// the 16 accumulators, 2 weight vectors and the broadcast 32 registers).
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_u8_fused_vnni(
        a: &[u8],
        m: usize,
        p: &super::PackedU8,
        sx: &[i32],
        f: &super::Fold,
        q: Q8,
        out: &mut [u8],
        oc: usize,
    ) {
        let kq = p.kp / 4;
        let quads: &[i32] = match bytemuck::try_cast_slice(&a[..m * p.kp]) {
            Ok(x) => x,
            Err(_) => return super::gemm_u8_fused_portable(a, m, p, sx, f, q, out, oc),
        };
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(8);
            let mut j = 0;
            while j < oc {
                match (rows, p.unsigned_weights) {
                    (8, false) => tile_fused::<8, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (7, false) => tile_fused::<7, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (6, false) => tile_fused::<6, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (5, false) => tile_fused::<5, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (4, false) => tile_fused::<4, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (3, false) => tile_fused::<3, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (2, false) => tile_fused::<2, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (_, false) => tile_fused::<1, false>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (8, true) => tile_fused::<8, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (7, true) => tile_fused::<7, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (6, true) => tile_fused::<6, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (5, true) => tile_fused::<5, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (4, true) => tile_fused::<4, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (3, true) => tile_fused::<3, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (2, true) => tile_fused::<2, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                    (_, true) => tile_fused::<1, true>(quads, i, kq, p, j, sx, f, q, out, oc),
                }
                j += 16;
            }
            i += rows;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_bytes8(s: &[u8], at: usize, q: Q8) -> __m256i {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[at..at + 8]);
        let v = _mm_set1_epi64x(i64::from_le_bytes(b));
        match q {
            Q8::U8 => _mm256_cvtepu8_epi32(v),
            Q8::I8 => _mm256_cvtepi8_epi32(v),
        }
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dw_pixel_avx2(
        start: usize,
        input: &[u8],
        q_in: Q8,
        zx: i32,
        bases: &[usize],
        taps: &[usize],
        weights: &[i32],
        oc: usize,
        bias: &[i32],
        st: &OutputStage,
        q_out: Q8,
        out: &mut [u8],
    ) -> usize {
        if zx == 0 {
            dw_pixel_body::<false>(start, input, q_in, 0, bases, taps, weights, oc, bias, st, q_out, out)
        } else {
            dw_pixel_body::<true>(start, input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out)
        }
    }

    /// [`dw_pixel_avx2`] with the zero-point subtraction compiled in or out (`SUB`): interior
    /// pixels start from `bias - zx * sum(w)` and skip it.
    #[inline]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    fn dw_pixel_body<const SUB: bool>(
        start: usize,
        input: &[u8],
        q_in: Q8,
        zx: i32,
        bases: &[usize],
        taps: &[usize],
        weights: &[i32],
        oc: usize,
        init: &[i32],
        st: &OutputStage,
        q_out: Q8,
        out: &mut [u8],
    ) -> usize {
        let n8 = oc / 8 * 8;
        let zxv = _mm256_set1_epi32(zx);
        let offset = _mm256_set1_epi32(st.offset);
        let (lo, hi) = (_mm256_set1_epi32(st.min), _mm256_set1_epi32(st.max));
        let x_at = |at: usize| {
            let x = load_bytes8(input, at, q_in);
            if SUB {
                _mm256_sub_epi32(x, zxv)
            } else {
                x
            }
        };
        let mut c = start;
        // Four independent channel blocks at a time keep the multiply-add chains overlapped.
        while c + 32 <= n8 {
            let mut acc = [load8(init, c), load8(init, c + 8), load8(init, c + 16), load8(init, c + 24)];
            for (&b, &t) in bases.iter().zip(taps) {
                for (h, a) in acc.iter_mut().enumerate() {
                    let x = x_at(b + c + 8 * h);
                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(x, load8(weights, t * oc + c + 8 * h)));
                }
            }
            for (h, a) in acc.iter().enumerate() {
                let cc = c + 8 * h;
                let v =
                    requant8(*a, load8(&st.multiplier, cc), load8(&st.left, cc), load8(&st.right, cc), offset, lo, hi);
                store_bytes8(out, cc, v, q_out);
            }
            c += 32;
        }
        while c < n8 {
            let mut acc = load8(init, c);
            for (&b, &t) in bases.iter().zip(taps) {
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(x_at(b + c), load8(weights, t * oc + c)));
            }
            let v = requant8(acc, load8(&st.multiplier, c), load8(&st.left, c), load8(&st.right, c), offset, lo, hi);
            store_bytes8(out, c, v, q_out);
            c += 8;
        }
        n8
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_bytes16(s: &[u8], at: usize, q: Q8) -> __m256i {
        let chunk = &s[at..at + 16];
        // SAFETY: `chunk` holds exactly 16 bytes; loadu has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr() as *const __m128i) };
        match q {
            Q8::U8 => _mm256_cvtepu8_epi16(v),
            Q8::I8 => _mm256_cvtepi8_epi16(v),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load16(s: &[i16], at: usize) -> __m256i {
        let chunk = &s[at..at + 16];
        // SAFETY: `chunk` holds exactly 16 i16 (32 bytes); loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(chunk.as_ptr() as *const __m256i) }
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dw_pixel_pairs_avx2(
        input: &[u8],
        q_in: Q8,
        bases: &[usize],
        p: &super::DwPairs,
        init: &[i32],
        st: &OutputStage,
        q_out: Q8,
        out: &mut [u8],
    ) -> usize {
        let offset = _mm256_set1_epi32(st.offset);
        let (lo, hi) = (_mm256_set1_epi32(st.min), _mm256_set1_epi32(st.max));
        let zero = _mm256_setzero_si256();
        for b in 0..p.n16 / 16 {
            let c = 16 * b;
            let (mut acc_lo, mut acc_hi) = (zero, zero);
            for k in 0..p.pairs {
                let xa = load_bytes16(input, bases[2 * k] + c, q_in);
                let xb = match bases.get(2 * k + 1) {
                    Some(&bb) => load_bytes16(input, bb + c, q_in),
                    None => zero,
                };
                let w = (b * p.pairs + k) * 32;
                acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb), load16(&p.w, w)));
                acc_hi =
                    _mm256_add_epi32(acc_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), load16(&p.w, w + 16)));
            }
            // Back to channel order: c..c+8 and c+8..c+16.
            let first = _mm256_permute2x128_si256::<0x20>(acc_lo, acc_hi);
            let second = _mm256_permute2x128_si256::<0x31>(acc_lo, acc_hi);
            let (x0, x1) = (_mm256_add_epi32(first, load8(init, c)), _mm256_add_epi32(second, load8(init, c + 8)));
            let c8 = c + 8;
            let v0 = requant8(x0, load8(&st.multiplier, c), load8(&st.left, c), load8(&st.right, c), offset, lo, hi);
            let v1 = requant8(x1, load8(&st.multiplier, c8), load8(&st.left, c8), load8(&st.right, c8), offset, lo, hi);
            store_bytes16(out, c, v0, v1, q_out);
        }
        p.n16
    }

    /// Requantizes whole groups of 8 channels; returns how many were done.
    #[target_feature(enable = "avx2")]
    pub(super) fn requantize_avx2(acc: &[i32], bias: Option<&[i32]>, st: &OutputStage, q: Q8, out: &mut [u8]) -> usize {
        let n = acc.len() / 8 * 8;
        let offset = _mm256_set1_epi32(st.offset);
        let (lo, hi) = (_mm256_set1_epi32(st.min), _mm256_set1_epi32(st.max));
        let mut c = 0;
        while c < n {
            let mut x = load8(acc, c);
            if let Some(b) = bias {
                x = _mm256_add_epi32(x, load8(b, c));
            }
            let v = requant8(x, load8(&st.multiplier, c), load8(&st.left, c), load8(&st.right, c), offset, lo, hi);
            let bytes = narrow8(v, q).to_le_bytes();
            out[c..c + 8].copy_from_slice(&bytes);
            c += 8;
        }
        n
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256::<1>(v);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(s: &[i16], at: usize) -> __m256i {
        let chunk = &s[at..at + 16];
        // SAFETY: `chunk` holds exactly 16 i16 (32 bytes); loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(chunk.as_ptr() as *const __m256i) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store8(s: &mut [i32], at: usize, v: __m256i) {
        let chunk = &mut s[at..at + 8];
        // SAFETY: `chunk` holds exactly 8 i32 (32 bytes); storeu has no alignment requirement.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr() as *mut __m256i, v) }
    }

    /// One tile: `R` rows x 16 output channels, one `vpmaddwd` per (row, 8 channels, k pair).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn tile<const R: usize>(pairs: &[i32], i: usize, kh: usize, w: &[i16], np: usize, j: usize, out: &mut [i32]) {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for kk in 0..kh {
            let wb = (kk * np + j) * 2;
            let b0 = load(w, wb);
            let b1 = load(w, wb + 16);
            for (r, a) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32(pairs[(i + r) * kh + kk]);
                a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(x, b0));
                a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(x, b1));
            }
        }
        for (r, a) in acc.iter().enumerate() {
            store8(out, (i + r) * np + j, a[0]);
            store8(out, (i + r) * np + j + 8, a[1]);
        }
    }

    /// Broadcast GEMM over tiles of 6 rows x 16 output channels (12 accumulators, 2 weight
    /// registers and one broadcast fit the 16 AVX2 registers).
    #[target_feature(enable = "avx2")]
    pub(super) fn gemm_packed_avx2(a: &[i16], m: usize, p: &super::Packed, out: &mut [i32]) {
        let (kp, np) = (p.kp, p.np);
        let kh = kp / 2;
        // Rows of A as (k, k+1) pairs: one 32-bit broadcast per pair.
        let pairs: &[i32] = match bytemuck::try_cast_slice(&a[..m * kp]) {
            Ok(p) => p,
            Err(_) => return super::gemm_packed_portable(a, m, p, out),
        };
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(6);
            let mut j = 0;
            while j < np {
                match rows {
                    6 => tile::<6>(pairs, i, kh, &p.w, np, j, out),
                    5 => tile::<5>(pairs, i, kh, &p.w, np, j, out),
                    4 => tile::<4>(pairs, i, kh, &p.w, np, j, out),
                    3 => tile::<3>(pairs, i, kh, &p.w, np, j, out),
                    2 => tile::<2>(pairs, i, kh, &p.w, np, j, out),
                    _ => tile::<1>(pairs, i, kh, &p.w, np, j, out),
                }
                j += 16;
            }
            i += rows;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_i8(s: &[u8], at: usize) -> __m256i {
        let chunk = &s[at..at + 32];
        // SAFETY: `chunk` holds exactly 32 bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(chunk.as_ptr() as *const __m256i) }
    }

    /// 4x2 tiles of `vpmaddwd` dot products; edges fall back to single dot products.
    #[target_feature(enable = "avx2")]
    pub(super) fn gemm_avx2(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
        let mut i = 0;
        while i + 4 <= m {
            let mut j = 0;
            while j + 2 <= n {
                let mut acc = [_mm256_setzero_si256(); 8];
                let (a0, a1, a2, a3) = (i * kp, (i + 1) * kp, (i + 2) * kp, (i + 3) * kp);
                let (b0, b1) = (j * kp, (j + 1) * kp);
                let mut k = 0;
                while k < kp {
                    let x0 = load(a, a0 + k);
                    let x1 = load(a, a1 + k);
                    let x2 = load(a, a2 + k);
                    let x3 = load(a, a3 + k);
                    let y0 = load(w, b0 + k);
                    let y1 = load(w, b1 + k);
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x0, y0));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x0, y1));
                    acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(x1, y0));
                    acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(x1, y1));
                    acc[4] = _mm256_add_epi32(acc[4], _mm256_madd_epi16(x2, y0));
                    acc[5] = _mm256_add_epi32(acc[5], _mm256_madd_epi16(x2, y1));
                    acc[6] = _mm256_add_epi32(acc[6], _mm256_madd_epi16(x3, y0));
                    acc[7] = _mm256_add_epi32(acc[7], _mm256_madd_epi16(x3, y1));
                    k += 16;
                }
                for r in 0..4 {
                    out[(i + r) * n + j] = hsum(acc[2 * r]);
                    out[(i + r) * n + j + 1] = hsum(acc[2 * r + 1]);
                }
                j += 2;
            }
            for jj in j..n {
                for r in 0..4 {
                    out[(i + r) * n + jj] = dot1(a, (i + r) * kp, w, jj * kp, kp);
                }
            }
            i += 4;
        }
        for ii in i..m {
            for j in 0..n {
                out[ii * n + j] = dot1(a, ii * kp, w, j * kp, kp);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot1(a: &[i16], ao: usize, w: &[i16], wo: usize, kp: usize) -> i32 {
        let mut acc = _mm256_setzero_si256();
        let mut k = 0;
        while k < kp {
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(load(a, ao + k), load(w, wo + k)));
            k += 16;
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize) -> Vec<i32> {
        let mut out = vec![0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..kp).map(|k| a[i * kp + k] as i32 * w[j * kp + k] as i32).sum();
            }
        }
        out
    }

    proptest! {
        #[test]
        fn gemm_matches_naive(m in 1usize..11, n in 1usize..9, kb in 1usize..5, seed in any::<u64>()) {
            let kp = kb * 16;
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) % 511) as i16 - 255 };
            let a: Vec<i16> = (0..m * kp).map(|_| next()).collect();
            let w: Vec<i16> = (0..n * kp).map(|_| next()).collect();
            let want = naive(&a, m, &w, n, kp);
            let mut got = vec![0; m * n];
            gemm_with(Isa::Portable, &a, m, &w, n, kp, &mut got);
            prop_assert_eq!(&got, &want);
            let packed = Packed::new(&w, n, kp);
            let mut got_p = vec![0; m * packed.np];
            gemm_packed(&a, m, &packed, &mut got_p);
            let mut got_pp = vec![0; m * packed.np];
            gemm_packed_portable(&a, m, &packed, &mut got_pp);
            prop_assert_eq!(&got_p, &got_pp);
            for i in 0..m {
                prop_assert_eq!(&got_p[i * packed.np..i * packed.np + n], &want[i * n..(i + 1) * n]);
            }
            let wb: Vec<u8> = w.iter().map(|&v| (v / 2) as i8 as u8).collect();
            let ab: Vec<u8> = a.iter().map(|&v| (v + 255) as u8).collect();
            let pu = PackedU8::new(&wb, n, kp, false);
            let mut got_u = vec![0; m * pu.np];
            gemm_u8_portable(&ab, m, &pu, &mut got_u);
            for i in 0..m {
                for j in 0..n {
                    let want: i32 = (0..kp).map(|k| ab[i * kp + k] as i32 * wb[j * kp + k] as i8 as i32).sum();
                    prop_assert_eq!(got_u[i * pu.np + j], want);
                }
            }
            if best() != Isa::Portable {
                let mut got = vec![0; m * n];
                gemm_with(best(), &a, m, &w, n, kp, &mut got);
                prop_assert_eq!(&got, &want);
            }
        }
    }
}
