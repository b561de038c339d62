//! The AVX-512 VNNI kernel (with VL, on 256-bit vectors): the byte GEMM with the zero-point fold
//! and the output stage fused, on the vector helpers of `avx2`.

use super::avx2::{load8, load_i8, narrow8, requant8, store_bytes16, store_bytes8};
use super::Q8;
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
    finish(&acc, i, j, sx, f, q, out, oc);
}

/// The folded zero-point terms and the output stage of a tile of accumulators (rows `i..`,
/// channels `j..j + 16`, each row as two vectors of 8), storing bytes.
#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    acc: &[[__m256i; 2]],
    i: usize,
    j: usize,
    sx: &[i32],
    f: &super::Fold,
    q: Q8,
    out: &mut [u8],
    oc: usize,
) {
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
