//! The AVX-512 VNNI kernels: the byte GEMM with the zero-point fold and the output stage fused
//! (with VL, on 256-bit vectors, on the vector helpers of `avx2`), and the full-window depthwise
//! pixels on 512-bit vectors.
// Unsafe only for unaligned 512-bit loads and masked stores from slices whose bounds are checked
// before each one.
#![allow(unsafe_code)]

use super::avx2::{load8, load_i8, narrow8, requant8, store_bytes16, store_bytes8};
use super::{OutputStage, Q8};
use std::arch::x86_64::*;

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
    // The folded zero-point terms and the output stage, storing bytes.
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
            match (rows, p.signs.unsigned_weights()) {
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

/// Runs `f` inlined into a function compiled with AVX-512 F, BW and VL.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
pub(super) fn call_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether the CPU has, beyond what `vnni()` checks (VNNI, VL, AVX2), what the 512-bit kernels
/// need: AVX-512 F and BW (asked once).
pub(super) fn avx512bw() -> bool {
    static BW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BW.get_or_init(|| std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw"))
}

/// Depthwise weights in the order of [`dw_row_512`]: for each block of 32 channels and
/// each pair of taps `(a, b)`, 64 i16. `unpacklo_epi16` of two 32-channel input vectors pairs
/// up, in 128-bit lane `l`, channels `8l..8l + 4`, and `unpackhi_epi16` channels
/// `8l + 4..8l + 8`: so the first 32 values are `(w_a, w_b)` of channel `8l + j` at `8l + 2j`,
/// and the next 32 those of channel `8l + 4 + j`. Channels left over after the whole blocks get
/// one more block, with zero weights past `oc` (the partial block of [`dw_row_512`]).
pub(super) fn pack_dw_512(weights: &[i32], taps: usize, oc: usize) -> Vec<i16> {
    let blocks = oc.div_ceil(32);
    let pairs = taps.div_ceil(2);
    let mut w = vec![0i16; blocks * pairs * 64];
    let at = |t: usize, c: usize| if t < taps && c < oc { weights[t * oc + c] as i16 } else { 0 };
    for b in 0..blocks {
        for k in 0..pairs {
            let base = (b * pairs + k) * 64;
            for half in 0..2 {
                for l in 0..4 {
                    for j in 0..4 {
                        let c = 32 * b + 8 * l + 4 * half + j;
                        let pos = base + 32 * half + 8 * l + 2 * j;
                        w[pos] = at(2 * k, c);
                        w[pos + 1] = at(2 * k + 1, c);
                    }
                }
            }
        }
    }
    w
}

/// Per-channel constants of [`requant16`], for whole blocks of 16 channels: per block 64 i64,
/// eight vectors of 8 lanes, each first for the even channels of the block, then the odd ones:
/// the multiplier `m`, `c1 = 2^30 + 2^(30 + e) + offset * 2^(31 + e)` (without the `2^(30 + e)`
/// when `e = 0`), `c2 = 2^31` (0 when `e = 0`) and `31 + e`, where `e` is the channel's right
/// shift. Channels past the slices' ends get multiplier 0.
///
/// The output offset is folded in (adding a multiple of the divisor `2^(31 + e)` adds exactly
/// `offset` to the quotient) when every shift leaves room for it in 64 bits: `e <= 21` keeps
/// `|P| + c1 + |offset| * 2^(31 + e) < 2^62 + 2^51 + 2^60`. The flag returned says whether it was,
/// so the caller adds `offset` itself when not.
pub(crate) fn requant_consts(multiplier: &[i32], right: &[i32], offset: i32, n16: usize) -> (Vec<i64>, bool) {
    let shift = |ch: usize| i64::from(right.get(ch).copied().unwrap_or(0).clamp(0, 31));
    let fold = (-255..=255).contains(&offset) && (0..n16).all(|ch| shift(ch) <= 21);
    let mut v = vec![0i64; n16 / 16 * 64];
    for (b, block) in v.chunks_exact_mut(64).enumerate() {
        for parity in 0..2 {
            for i in 0..8 {
                let ch = 16 * b + 2 * i + parity;
                let m = multiplier.get(ch).copied().unwrap_or(0);
                let e = shift(ch);
                let at = parity * 8 + i;
                let folded = if fold { i64::from(offset) << (31 + e) } else { 0 };
                block[at] = i64::from(m);
                block[16 + at] = (1 << 30) + if e > 0 { 1 << (30 + e) } else { 0 } + folded;
                block[32 + at] = if e > 0 { 1 << 31 } else { 0 };
                block[48 + at] = 31 + e;
            }
        }
    }
    (v, fold)
}

/// Whether an output stage's clamp `[lo, hi]` is the whole int8 range, where the saturating
/// narrow of [`store_bytes`] does the clamping.
pub(super) fn saturates(lo: i32, hi: i32) -> bool {
    lo == -128 && hi == 127
}

/// Stores the 16 lanes of `v` (the first `dst.len()` of them, at most 16) as bytes: with `SAT`
/// (the clamp is all of int8, see [`saturates`]) through signed saturation, otherwise clamped to
/// `[lo, hi]`, a range within the output type, and truncated.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn store_bytes<const SAT: bool>(v: __m512i, lo: __m512i, hi: __m512i, dst: &mut [u8]) {
    let n = dst.len().min(16);
    let v = if SAT { v } else { _mm512_min_epi32(_mm512_max_epi32(v, lo), hi) };
    if n == 16 {
        let bytes = if SAT { _mm512_cvtsepi32_epi8(v) } else { _mm512_cvtepi32_epi8(v) };
        // SAFETY: an unaligned 16-byte store into `dst`, which holds at least 16 bytes.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes) };
    } else {
        let mask: __mmask16 = (1u16 << n) - 1;
        let p: *mut i8 = dst.as_mut_ptr().cast();
        // SAFETY: a masked store writes only the first `n` bytes, all inside `dst`.
        unsafe {
            if SAT {
                _mm512_mask_cvtsepi32_storeu_epi8(p, mask, v)
            } else {
                _mm512_mask_cvtepi32_storeu_epi8(p, mask, v)
            }
        }
    }
}

/// The output stage on 16 lanes without the offset and clamp: `x << left` (skipped when `shl`
/// says no channel shifts left), then TFLite's `MultiplyByQuantizedMultiplier` exactly, with
/// the constants of [`requant_consts`] for these 16 channels (`rq`, 64 values).
///
/// SaturatingRoundingDoublingHighMul is `h = floor((P + 2^30) / 2^31)` for the product
/// `P = x * m` (multipliers are non-negative, so it never saturates), and RoundingDivideByPOT
/// by `e >= 1` is `floor((h + 2^(e-1) - [h < 0]) / 2^e)`. Nested floors of integer divisions
/// combine, so the result is `floor((P + c1 - [h < 0] * c2) / 2^(31 + e))`, one arithmetic
/// shift of a 64-bit sum. `[h < 0]` may be replaced by `[P < 0]`: they differ only for
/// `-2^30 <= P < 0`, where `h` is 0 and both forms give 0.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn requant16(shl: bool, x: __m512i, left: __m512i, rq: &[i64]) -> __m512i {
    let rq = &rq[..64];
    // SAFETY: each load reads 8 of the 64 elements of `rq`; loadu has no alignment requirement.
    let ld = |at: usize| unsafe { _mm512_loadu_si512(rq[at..at + 8].as_ptr().cast()) };
    let zero = _mm512_setzero_si512();
    let x = if shl { _mm512_sllv_epi32(x, left) } else { x };
    // mul_epi32 reads the low 32 bits of each 64-bit lane: the even channels of `x`, and the
    // odd ones once shifted down.
    let pe = _mm512_mul_epi32(x, ld(0));
    let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), ld(8));
    let (ne, no) = (_mm512_cmplt_epi64_mask(pe, zero), _mm512_cmplt_epi64_mask(po, zero));
    let qe = _mm512_add_epi64(pe, ld(16));
    let qo = _mm512_add_epi64(po, ld(24));
    let qe = _mm512_mask_sub_epi64(qe, ne, qe, ld(32));
    let qo = _mm512_mask_sub_epi64(qo, no, qo, ld(40));
    let re = _mm512_srav_epi64(qe, ld(48));
    let ro = _mm512_srav_epi64(qo, ld(56));
    // Channel 2i is the low half of lane i of `re`, channel 2i + 1 that of `ro`.
    let idx = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    _mm512_permutex2var_epi32(re, idx, ro)
}

/// [`requant16`] on arrays, for the tests.
#[cfg(test)]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn requant16_lanes(shl: bool, x: &[i32; 16], left: &[i32; 16], rq: &[i64]) -> [i32; 16] {
    // SAFETY: unaligned 16-lane loads and store of exactly 16 elements.
    unsafe {
        let v = requant16(shl, _mm512_loadu_si512(x.as_ptr().cast()), _mm512_loadu_si512(left.as_ptr().cast()), rq);
        let mut out = [0i32; 16];
        _mm512_storeu_si512(out.as_mut_ptr().cast(), v);
        out
    }
}

/// `count` consecutive full-window depthwise pixels of one output row (depth multiplier 1, raw
/// input bytes, zero-point terms folded into `init`): pixel `k`'s tap `t` reads the input at
/// `origin + k * step + rel[t]`, and its `oc` outputs go to `out[k * oc..]`. All channels, in
/// blocks of 32 (the last one partial, through masked loads and stores, on the zero-padded
/// weights of [`pack_dw_512`]), two pixels at a time so that their accumulations overlap: two
/// taps per `vpdpwssd`, then the output stage on 16 lanes ([`requant16`], stored by
/// [`store_bytes`]). `p` must have been packed for `oc` channels. One pixel anywhere (a border
/// pixel's copied window, say) is `origin` 0, `step` 0, `count` 1 and its taps' offsets in `rel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_row_512(
    input: &[u8],
    q_in: Q8,
    (origin, step, count): (usize, usize, usize),
    rel: &[usize],
    p: &super::DwPairs,
    init: &[i32],
    st: &OutputStage,
    oc: usize,
    out: &mut [u8],
) {
    let sat = saturates(st.min, st.max);
    let row = (origin, step, count);
    match (q_in, sat, p.offset_folded) {
        (Q8::U8, false, false) => dw_row_body::<false, false, false>(input, row, rel, p, init, st, oc, out),
        (Q8::U8, false, true) => dw_row_body::<false, false, true>(input, row, rel, p, init, st, oc, out),
        (Q8::U8, true, false) => dw_row_body::<false, true, false>(input, row, rel, p, init, st, oc, out),
        (Q8::U8, true, true) => dw_row_body::<false, true, true>(input, row, rel, p, init, st, oc, out),
        (Q8::I8, false, false) => dw_row_body::<true, false, false>(input, row, rel, p, init, st, oc, out),
        (Q8::I8, false, true) => dw_row_body::<true, false, true>(input, row, rel, p, init, st, oc, out),
        (Q8::I8, true, false) => dw_row_body::<true, true, false>(input, row, rel, p, init, st, oc, out),
        (Q8::I8, true, true) => dw_row_body::<true, true, true>(input, row, rel, p, init, st, oc, out),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
#[allow(clippy::too_many_arguments)]
fn dw_row_body<const SIGNED: bool, const SAT: bool, const FOLD: bool>(
    input: &[u8],
    (origin, step, count): (usize, usize, usize),
    rel: &[usize],
    p: &super::DwPairs,
    init: &[i32],
    st: &OutputStage,
    oc: usize,
    out: &mut [u8],
) {
    let (w, pairs) = (&p.w512, p.pairs);
    let taps = rel.len();
    if count == 0 || oc == 0 {
        return;
    }
    // The bounds of every access below, checked once: inputs `origin + k * step + rel[t] + c`
    // up to the block's last channel for k < count, weights up to the last block's, the
    // constants of every 16 channels, `init` and `left` up to `oc`, outputs `k * oc + c`.
    let blocks = oc.div_ceil(32);
    assert!(taps.div_ceil(2) == pairs && w.len() >= blocks * pairs * 64);
    assert!(p.rq512.len() >= oc.div_ceil(16) * 64 && init.len() >= oc && out.len() >= count * oc);
    assert!(!p.shl || st.left.len() >= oc);
    let span = rel.iter().max().copied().unwrap_or(0);
    let last = (count - 1).checked_mul(step).and_then(|d| origin.checked_add(d)?.checked_add(span)?.checked_add(oc));
    assert!(last.is_some_and(|end| end <= input.len()));
    let offset = _mm512_set1_epi32(st.offset);
    let (lo, hi) = (_mm512_set1_epi32(st.min), _mm512_set1_epi32(st.max));
    let zero = _mm512_setzero_si512();
    let first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    let (x_ptr, w_ptr) = (input.as_ptr(), w.as_ptr());
    // SAFETY: `at + 32 <= w.len()` for the weight offsets of the loops (asserted above).
    let load_w = |at: usize| unsafe { _mm512_loadu_si512(w_ptr.add(at).cast()) };
    let full = taps / 2;
    for b in 0..blocks {
        let c = 32 * b;
        let valid = (oc - c).min(32);
        let bytes: __mmask32 = if valid == 32 { u32::MAX } else { (1u32 << valid) - 1 };
        // SAFETY: the masked load reads only bytes `at..at + valid`, inside `input` by the
        // assertion on `last` (`at <= origin + (count - 1) * step + span + c`).
        let x = |at: usize| {
            let v = unsafe { _mm256_maskz_loadu_epi8(bytes, x_ptr.add(at).cast()) };
            if SIGNED {
                _mm512_cvtepi8_epi16(v)
            } else {
                _mm512_cvtepu8_epi16(v)
            }
        };
        let wb = b * pairs * 64;
        // The output stage of one pixel's accumulators: channel order, `init`, requantization.
        let finish = |acc_lo: __m512i, acc_hi: __m512i, dst: &mut [u8]| {
            for (h, idx) in [(0, first), (1, second)] {
                let cc = c + 16 * h;
                let n = valid.saturating_sub(16 * h).min(16);
                if n == 0 {
                    break;
                }
                let lanes: __mmask16 = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
                // SAFETY: masked loads of lanes `cc..cc + n`, inside `init` and `st.left` (their
                // lengths asserted above).
                let (i, left) = unsafe {
                    let i = _mm512_maskz_loadu_epi32(lanes, init.as_ptr().add(cc).cast());
                    let left =
                        if p.shl { _mm512_maskz_loadu_epi32(lanes, st.left.as_ptr().add(cc).cast()) } else { zero };
                    (i, left)
                };
                let x = _mm512_add_epi32(_mm512_permutex2var_epi64(acc_lo, idx, acc_hi), i);
                let v = requant16(p.shl, x, left, &p.rq512[cc / 16 * 64..]);
                let v = if FOLD { v } else { _mm512_add_epi32(v, offset) };
                store_bytes::<SAT>(v, lo, hi, &mut dst[cc..cc + n]);
            }
        };
        let mut k = 0;
        while k + 2 <= count {
            let (o0, o1) = (origin + k * step + c, origin + (k + 1) * step + c);
            let (mut lo0, mut hi0, mut lo1, mut hi1) = (zero, zero, zero, zero);
            for j in 0..pairs {
                // An odd tap count: the last tap pairs with zeros.
                let ta = rel[2 * j];
                let (xa0, xa1) = (x(o0 + ta), x(o1 + ta));
                let (xb0, xb1) = if j < full { (x(o0 + rel[2 * j + 1]), x(o1 + rel[2 * j + 1])) } else { (zero, zero) };
                let (wl, wh) = (load_w(wb + j * 64), load_w(wb + j * 64 + 32));
                lo0 = _mm512_dpwssd_epi32(lo0, _mm512_unpacklo_epi16(xa0, xb0), wl);
                hi0 = _mm512_dpwssd_epi32(hi0, _mm512_unpackhi_epi16(xa0, xb0), wh);
                lo1 = _mm512_dpwssd_epi32(lo1, _mm512_unpacklo_epi16(xa1, xb1), wl);
                hi1 = _mm512_dpwssd_epi32(hi1, _mm512_unpackhi_epi16(xa1, xb1), wh);
            }
            let (d0, d1) = out[k * oc..(k + 2) * oc].split_at_mut(oc);
            finish(lo0, hi0, d0);
            finish(lo1, hi1, d1);
            k += 2;
        }
        if k < count {
            let o0 = origin + k * step + c;
            let (mut lo0, mut hi0) = (zero, zero);
            for j in 0..pairs {
                let xa0 = x(o0 + rel[2 * j]);
                let xb0 = if j < full { x(o0 + rel[2 * j + 1]) } else { zero };
                lo0 = _mm512_dpwssd_epi32(lo0, _mm512_unpacklo_epi16(xa0, xb0), load_w(wb + j * 64));
                hi0 = _mm512_dpwssd_epi32(hi0, _mm512_unpackhi_epi16(xa0, xb0), load_w(wb + j * 64 + 32));
            }
            finish(lo0, hi0, &mut out[k * oc..(k + 1) * oc]);
        }
    }
}
