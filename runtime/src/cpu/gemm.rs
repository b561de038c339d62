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
pub(crate) const ROWS: usize = 32;

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// The best implementation on this CPU.
pub(crate) fn best() -> Isa {
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
                *a += wv * (xv as i32 - zp);
            }
        }
        Q8::I8 => {
            for ((a, &wv), &xv) in acc.iter_mut().zip(w).zip(x) {
                *a += wv * (xv as i8 as i32 - zp);
            }
        }
    }
}

/// Output stage over `m` rows of `n` accumulators, adding the bias per column.
pub(crate) fn requantize(acc: &[i32], bias: &[i32], stage: &OutputStage, q: Q8, out: &mut [u8]) {
    let n = bias.len();
    for (row_acc, row_out) in acc.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for c in 0..n {
            row_out[c] = q.put(stage.apply(row_acc[c] + bias[c], c));
        }
    }
}

/// Output stage over one row of accumulators that already include the bias.
pub(crate) fn requantize_row(acc: &[i32], stage: &OutputStage, q: Q8, out: &mut [u8]) {
    for (c, (&a, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
        *o = q.put(stage.apply(a, c));
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
    assert!(kp % 16 == 0 && a.len() >= m * kp && w.len() >= n * kp && out.len() >= m * n);
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
            acc[l] += ca[2 * l] as i32 * cb[2 * l] as i32 + ca[2 * l + 1] as i32 * cb[2 * l + 1] as i32;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

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
            if best() != Isa::Portable {
                let mut got = vec![0; m * n];
                gemm_with(best(), &a, m, &w, n, kp, &mut got);
                prop_assert_eq!(&got, &want);
            }
        }
    }
}
