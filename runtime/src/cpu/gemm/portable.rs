//! The portable GEMM kernels: plain loops computing exactly the integers of the x86-64 ones, for
//! other CPUs, `EDGETPU_CPU_ISA=portable`, the fallbacks of the x86-64 kernels, and the tests.

use super::{Fold, Packed, PackedU8, Q8};

pub(super) fn gemm_portable(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
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
                    let (x, w) = p.signs.values(x[t], w[4 * j + t]);
                    s += x * w;
                }
                *o = o.wrapping_add(s);
            }
        }
    }
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
                let (x, w) = p.signs.values(x, w);
                dot = dot.wrapping_add(x * w);
            }
            let x = dot.wrapping_add(f.a[c].wrapping_mul(sx[i])).wrapping_add(f.c[c]);
            let v = crate::cpu::quant::multiply_by_quantized_multiplier(x, f.multiplier[c], f.shift[c])
                .wrapping_add(f.offset);
            out[i * oc + c] = q.put(v.clamp(f.min, f.max));
        }
    }
}
