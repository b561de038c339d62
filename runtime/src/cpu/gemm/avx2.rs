//! The AVX2 kernels: the `vpmaddwd` GEMMs, the vectorised depthwise pixels and output stage,
//! and the load, store and narrowing helpers the AVX-512 VNNI kernel shares.
// Unsafe only for unaligned vector loads and stores from slices whose bounds are checked before
// each one.
#![allow(unsafe_code)]

use super::{OutputStage, Q8};
use std::arch::x86_64::*;

#[target_feature(enable = "avx2")]
pub(super) fn call_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load8(s: &[i32], at: usize) -> __m256i {
    let chunk = &s[at..at + 8];
    // SAFETY: `chunk` holds exactly 8 i32 (32 bytes); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(chunk.as_ptr() as *const __m256i) }
}

/// The output stage on 8 lanes: `x << left`, SaturatingRoundingDoublingHighMul by `m`,
/// RoundingDivideByPOT by `right`, plus `offset`, clamped to `[lo, hi]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn requant8(
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
pub(super) fn store_bytes16(out: &mut [u8], at: usize, v0: __m256i, v1: __m256i, q: Q8) {
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
pub(super) fn store_bytes8(out: &mut [u8], at: usize, v: __m256i, q: Q8) {
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
pub(super) fn narrow8(v: __m256i, q: Q8) -> u64 {
    let w16 = _mm256_packs_epi32(v, v);
    let w8 = match q {
        Q8::U8 => _mm256_packus_epi16(w16, w16),
        Q8::I8 => _mm256_packs_epi16(w16, w16),
    };
    let both = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm256_extract_epi64::<0>(both) as u64
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
            let v = requant8(*a, load8(&st.multiplier, cc), load8(&st.left, cc), load8(&st.right, cc), offset, lo, hi);
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
    start: usize,
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
    for b in start / 16..p.n16 / 16 {
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
            acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), load16(&p.w, w + 16)));
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

/// Sum of bytes, unsigned or signed: `vpsadbw` against zero sums 8 unsigned bytes per 64-bit
/// lane; signed bytes are summed with their top bit flipped (`x + 128`), then `128 * len` is
/// taken off.
#[target_feature(enable = "avx2")]
pub(super) fn byte_sum_avx2(row: &[u8], signed: bool) -> i32 {
    let flip = _mm256_set1_epi8(if signed { -128 } else { 0 });
    let zero = _mm256_setzero_si256();
    let mut acc = zero;
    let mut chunks = row.chunks_exact(32);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 32 bytes; loadu has no alignment requirement.
        let v = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(v, flip), zero));
    }
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` holds exactly 32 bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    let mut sum = lanes.iter().sum::<u64>() as i64;
    let tail = chunks.remainder();
    if signed {
        sum -= 128 * (row.len() - tail.len()) as i64;
        sum += tail.iter().map(|&x| i64::from(x as i8)).sum::<i64>();
    } else {
        sum += tail.iter().map(|&x| i64::from(x)).sum::<i64>();
    }
    // Wrapping like the i32 sums of the other kernels (only rows of over 8 MiB could wrap).
    sum as i32
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
pub(super) fn load_i8(s: &[u8], at: usize) -> __m256i {
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

/// For each row of `len` bytes (1 to 32) of `x`, the index of its first largest byte after XOR
/// with `key`, into `idx` (one per row; `x` holds `idx.len()` rows).
#[target_feature(enable = "avx2")]
pub(super) fn argmax_rows_avx2(x: &[u8], len: usize, key: u8, idx: &mut [u32]) {
    debug_assert!((1..=32).contains(&len));
    let valid_bits: u32 = if len >= 32 { u32::MAX } else { (1u32 << len) - 1 };
    let mut valid_bytes = [0u8; 32];
    valid_bytes[..len].fill(0xFF);
    let mut tail = [0u8; 32];
    // SAFETY: reads 32 bytes of a 32-byte array.
    let valid = unsafe { _mm256_loadu_si256(valid_bytes.as_ptr().cast()) };
    let keys = _mm256_set1_epi8(key as i8);
    let zero = _mm256_setzero_si256();
    for (r, out) in idx.iter_mut().enumerate() {
        let start = r * len;
        let src: &[u8] = match x.get(start..start + 32) {
            Some(s) => s,
            None => {
                // The last rows: their bytes, then zeros, in a 32-byte copy.
                let rest = &x[start..start + len];
                tail[..len].copy_from_slice(rest);
                &tail
            }
        };
        // SAFETY: `src` holds at least 32 bytes (a slice of 32, or the 32-byte copy).
        let v = unsafe { _mm256_loadu_si256(src.as_ptr().cast()) };
        // Bytes past the row count as 0, the least key: they never raise the maximum.
        let v = _mm256_and_si256(_mm256_xor_si256(v, keys), valid);
        // The maximum of the 32 bytes, in byte 0 of every 32-bit lane, then in every byte.
        let m = _mm256_max_epu8(v, _mm256_permute2x128_si256::<1>(v, v));
        let m = _mm256_max_epu8(m, _mm256_shuffle_epi32::<0b01_00_11_10>(m));
        let m = _mm256_max_epu8(m, _mm256_shuffle_epi32::<0b10_11_00_01>(m));
        let m = _mm256_max_epu8(m, _mm256_srli_epi32::<16>(m));
        let m = _mm256_max_epu8(m, _mm256_srli_epi32::<8>(m));
        let m = _mm256_shuffle_epi8(m, zero);
        let hits = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, m)) as u32 & valid_bits;
        *out = hits.trailing_zeros();
    }
}
