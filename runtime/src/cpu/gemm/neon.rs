//! The aarch64 NEON kernels, computing exactly the integers of the portable and x86-64 ones:
//!
//! - widening multiply-accumulate (`smlal`/`smlal2`, baseline NEON, every aarch64 CPU): the i16
//!   GEMMs ([`gemm_neon`] on row-major weights, [`gemm_packed_neon`] on the k-pair layout of
//!   [`super::Packed`], read with the de-interleaving `ld2`), the convolutions' GEMM with the
//!   output stage fused ([`gemm_packed_fused_neon`] on im2col rows,
//!   [`gemm_packed_fused_bytes_neon`] on input bytes read in place), the depthwise pixels and the
//!   output stage;
//! - the 8-bit dot product (`sdot`/`udot` by element, the `dotprod` extension of Armv8.2, e.g.
//!   Cortex-A55/A76, detected at run time): the byte GEMM with the zero-point fold and the output
//!   stage fused ([`gemm_u8_fused_dot`]), on the layout of [`super::PackedU8`].
//!
//! The dot-product intrinsics (`vdotq_laneq_s32`) are not stable Rust, so `sdot` and `udot` are
//! inline assembly, one instruction per `asm!`; so is the lane-indexed `smlal` of the packed
//! GEMM, which LLVM would otherwise reassociate (see [`smlal_lane`]). Everything else is
//! `core::arch` intrinsics.
//!
//! The output stage uses `sqrdmulh`, which is gemmlowp's SaturatingRoundingDoublingHighMul
//! exactly (both compute `floor((a * b + 2^30) / 2^31)`, and both saturate `i32::MIN * i32::MIN`),
//! and a rounding shift `srshl` after subtracting one from negative values, which is
//! RoundingDivideByPOT's round-half-away-from-zero.
// Unsafe for vector loads and stores: from slices whose bounds are checked before each one, or,
// in the inner loops, through pointers whose whole range is asserted before the loop; and for the
// single-instruction `asm!` blocks, which touch registers only.
#![allow(unsafe_code)]

use super::{DwPairs, Fold, OutputStage, Packed, PackedU8, Q8};
use std::arch::aarch64::*;
use std::arch::asm;

#[inline]
#[target_feature(enable = "neon")]
fn ld_i32(s: &[i32], at: usize) -> int32x4_t {
    let c = &s[at..at + 4];
    // SAFETY: `c` holds exactly 4 i32; `ld1` needs only the element alignment a slice has.
    unsafe { vld1q_s32(c.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn st_i32(s: &mut [i32], at: usize, v: int32x4_t) {
    let c = &mut s[at..at + 4];
    // SAFETY: `c` holds exactly 4 i32; `st1` needs only the element alignment a slice has.
    unsafe { vst1q_s32(c.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "neon")]
fn st_u8x8(s: &mut [u8], at: usize, v: uint8x8_t) {
    let c = &mut s[at..at + 8];
    // SAFETY: `c` holds exactly 8 bytes.
    unsafe { vst1_u8(c.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "neon")]
fn st_u8x16(s: &mut [u8], at: usize, v: uint8x16_t) {
    let c = &mut s[at..at + 16];
    // SAFETY: `c` holds exactly 16 bytes.
    unsafe { vst1q_u8(c.as_mut_ptr(), v) }
}

/// The output stage's scaling on 4 lanes: `x << left` (`left` below 31, where `sshl` wraps like
/// the scalar multiply), SaturatingRoundingDoublingHighMul by `m`, RoundingDivideByPOT by `right`
/// (`0..=31`).
#[inline]
#[target_feature(enable = "neon")]
fn scale4(x: int32x4_t, m: int32x4_t, left: int32x4_t, right: int32x4_t) -> int32x4_t {
    scale4_neg(vshlq_s32(x, left), m, vnegq_s32(right))
}

/// SaturatingRoundingDoublingHighMul by `m`, then RoundingDivideByPOT by `-neg_right`.
#[inline]
#[target_feature(enable = "neon")]
fn scale4_neg(x: int32x4_t, m: int32x4_t, neg_right: int32x4_t) -> int32x4_t {
    let h = vqrdmulhq_s32(x, m);
    // `srshl` by -right rounds halves up; one less for negative values (when right > 0) makes
    // it round them away from zero. The saturating add only matters for i32::MIN, whose
    // quotient is exact either way.
    let fix = vshrq_n_s32::<31>(vandq_s32(h, neg_right));
    vrshlq_s32(vqaddq_s32(h, fix), neg_right)
}

/// The end of the output stage: plus the output zero point (wrapping, like the scalar stage),
/// clamped to `[min, max]`, as bytes. Saturating to the byte type first (`sqxtn`, `sqxtun`) and
/// clamping the bytes after is the same clamp, because `[min, max]` lies inside the byte type.
#[derive(Clone, Copy)]
struct Narrow {
    offset: int32x4_t,
    lo: uint8x16_t,
    hi: uint8x16_t,
    signed: bool,
}

impl Narrow {
    /// `None` when `[min, max]` is not inside the range of `q` (the scalar stage then runs).
    #[inline]
    #[target_feature(enable = "neon")]
    fn new(offset: i32, min: i32, max: i32, q: Q8) -> Option<Narrow> {
        let (qmin, qmax) = match q {
            Q8::U8 => (0, 255),
            Q8::I8 => (-128, 127),
        };
        if min < qmin || max > qmax || min > max {
            return None;
        }
        let (lo, hi) = (vdupq_n_u8(q.put(min)), vdupq_n_u8(q.put(max)));
        Some(Narrow { offset: vdupq_n_s32(offset), lo, hi, signed: q == Q8::I8 })
    }

    /// 4 x 4 lanes to 16 bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn bytes16(&self, v: [int32x4_t; 4]) -> uint8x16_t {
        let o = self.offset;
        let h0 = vcombine_s16(vqmovn_s32(vaddq_s32(v[0], o)), vqmovn_s32(vaddq_s32(v[1], o)));
        let h1 = vcombine_s16(vqmovn_s32(vaddq_s32(v[2], o)), vqmovn_s32(vaddq_s32(v[3], o)));
        if self.signed {
            let b = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
            let (lo, hi) = (vreinterpretq_s8_u8(self.lo), vreinterpretq_s8_u8(self.hi));
            vreinterpretq_u8_s8(vminq_s8(vmaxq_s8(b, lo), hi))
        } else {
            vminq_u8(vmaxq_u8(vcombine_u8(vqmovun_s16(h0), vqmovun_s16(h1)), self.lo), self.hi)
        }
    }

    /// 2 x 4 lanes to 8 bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn bytes8(&self, v0: int32x4_t, v1: int32x4_t) -> uint8x8_t {
        let o = self.offset;
        let h = vcombine_s16(vqmovn_s32(vaddq_s32(v0, o)), vqmovn_s32(vaddq_s32(v1, o)));
        if self.signed {
            let (lo, hi) = (vreinterpret_s8_u8(vget_low_u8(self.lo)), vreinterpret_s8_u8(vget_low_u8(self.hi)));
            vreinterpret_u8_s8(vmin_s8(vmax_s8(vqmovn_s16(h), lo), hi))
        } else {
            vmin_u8(vmax_u8(vqmovun_s16(h), vget_low_u8(self.lo)), vget_low_u8(self.hi))
        }
    }
}

/// Requantizes whole groups of 8 channels; returns how many were done.
#[target_feature(enable = "neon")]
pub(super) fn requantize_neon(acc: &[i32], bias: Option<&[i32]>, st: &OutputStage, q: Q8, out: &mut [u8]) -> usize {
    let Some(nw) = Narrow::new(st.offset, st.min, st.max, q) else {
        return 0;
    };
    match bias {
        Some(b) => requantize_body::<true>(acc, b, st, &nw, out),
        None => requantize_body::<false>(acc, &[], st, &nw, out),
    }
}

/// Lanes `c..c + 4` of [`requantize_neon`], scaled.
#[inline]
#[target_feature(enable = "neon")]
fn requant_at<const BIAS: bool>(
    acc: &[i32],
    bias: &[i32],
    m: &[i32],
    left: &[i32],
    right: &[i32],
    c: usize,
) -> int32x4_t {
    let x = if BIAS { vaddq_s32(ld_i32(acc, c), ld_i32(bias, c)) } else { ld_i32(acc, c) };
    scale4(x, ld_i32(m, c), ld_i32(left, c), ld_i32(right, c))
}

#[inline]
#[target_feature(enable = "neon")]
fn requantize_body<const BIAS: bool>(
    acc: &[i32],
    bias: &[i32],
    st: &OutputStage,
    nw: &Narrow,
    out: &mut [u8],
) -> usize {
    let n = acc.len();
    let (m, left, right, out) = (&st.multiplier[..n], &st.left[..n], &st.right[..n], &mut out[..n]);
    let bias = if BIAS { &bias[..n] } else { bias };
    let mut c = 0;
    while c + 16 <= n {
        let v = [
            requant_at::<BIAS>(acc, bias, m, left, right, c),
            requant_at::<BIAS>(acc, bias, m, left, right, c + 4),
            requant_at::<BIAS>(acc, bias, m, left, right, c + 8),
            requant_at::<BIAS>(acc, bias, m, left, right, c + 12),
        ];
        st_u8x16(out, c, nw.bytes16(v));
        c += 16;
    }
    if c + 8 <= n {
        let (v0, v1) =
            (requant_at::<BIAS>(acc, bias, m, left, right, c), requant_at::<BIAS>(acc, bias, m, left, right, c + 4));
        st_u8x8(out, c, nw.bytes8(v0, v1));
        c += 8;
    }
    c
}

/// `R` rows x `C` columns of row-major dot products, 8 k per step, each a `smlal`/`smlal2` pair.
#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn dot_tile<const R: usize, const C: usize>(
    a: &[i16],
    i: usize,
    w: &[i16],
    j: usize,
    n: usize,
    kp: usize,
    out: &mut [i32],
) {
    assert!(kp.is_multiple_of(8) && a.len() >= (i + R) * kp && w.len() >= (j + C) * kp);
    let mut acc = [[vdupq_n_s32(0); C]; R];
    // SAFETY: rows i..i + R of `a` and j..j + C of `w` (asserted above) are read 8 i16 at a
    // time at k < kp, a multiple of 8; `ld1` needs only the element alignment slices have.
    unsafe {
        let rows: [*const i16; R] = core::array::from_fn(|r| a.as_ptr().add((i + r) * kp));
        let cols: [*const i16; C] = core::array::from_fn(|c| w.as_ptr().add((j + c) * kp));
        let mut k = 0;
        while k < kp {
            let x: [int16x8_t; R] = core::array::from_fn(|r| vld1q_s16(rows[r].add(k)));
            let y: [int16x8_t; C] = core::array::from_fn(|c| vld1q_s16(cols[c].add(k)));
            for (ar, &xr) in acc.iter_mut().zip(&x) {
                for (a, &yc) in ar.iter_mut().zip(&y) {
                    *a = vmlal_s16(*a, vget_low_s16(xr), vget_low_s16(yc));
                    *a = vmlal_high_s16(*a, xr, yc);
                }
            }
            k += 8;
        }
    }
    for (r, ar) in acc.iter().enumerate() {
        let at = (i + r) * n + j;
        if C == 4 {
            st_i32(out, at, vpaddq_s32(vpaddq_s32(ar[0], ar[1]), vpaddq_s32(ar[2], ar[3])));
        } else {
            for (c, &v) in ar.iter().enumerate() {
                out[at + c] = vaddvq_s32(v);
            }
        }
    }
}

/// `out[i][j] = sum_k a[i][k] * w[j][k]` (row-major `w`, `kp` a multiple of 8): tiles of 4 rows x
/// 4 columns, then single rows and columns.
#[target_feature(enable = "neon")]
pub(super) fn gemm_neon(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    let n4 = n / 4 * 4;
    let mut i = 0;
    while i + 4 <= m {
        let mut j = 0;
        while j < n4 {
            dot_tile::<4, 4>(a, i, w, j, n, kp, out);
            j += 4;
        }
        for j in n4..n {
            dot_tile::<4, 1>(a, i, w, j, n, kp, out);
        }
        i += 4;
    }
    for i in i..m {
        let mut j = 0;
        while j < n4 {
            dot_tile::<1, 4>(a, i, w, j, n, kp, out);
            j += 4;
        }
        for j in n4..n {
            dot_tile::<1, 1>(a, i, w, j, n, kp, out);
        }
    }
}

/// `acc += w[0..4] * x[L]`, `smlal` by element (`x` in v0-v15, as the 16-bit element form
/// needs). Inline assembly rather than `vmlal_laneq_s16`: LLVM reassociates the sums of the
/// intrinsics across a tile and splits many multiply-accumulates into `smull` and `add`.
#[inline]
#[target_feature(enable = "neon")]
fn smlal_lane<const L: i32>(mut acc: int32x4_t, w: int16x8_t, x: int16x8_t) -> int32x4_t {
    // SAFETY: `smlal` reads and writes the named vector registers only.
    unsafe {
        asm!(
            "smlal {a:v}.4s, {w:v}.4h, {x:v}.h[{l}]",
            a = inout(vreg) acc, w = in(vreg) w, x = in(vreg_low16) x, l = const L,
            options(pure, nomem, nostack, preserves_flags)
        )
    }
    acc
}

/// `acc += w[4..8] * x[L]`, `smlal2` by element (see [`smlal_lane`]).
#[inline]
#[target_feature(enable = "neon")]
fn smlal2_lane<const L: i32>(mut acc: int32x4_t, w: int16x8_t, x: int16x8_t) -> int32x4_t {
    // SAFETY: `smlal2` reads and writes the named vector registers only.
    unsafe {
        asm!(
            "smlal2 {a:v}.4s, {w:v}.8h, {x:v}.h[{l}]",
            a = inout(vreg) acc, w = in(vreg) w, x = in(vreg_low16) x, l = const L,
            options(pure, nomem, nostack, preserves_flags)
        )
    }
    acc
}

/// The weights of one k pair for 16 output channels, de-interleaved by `ld2`: `[c].0` holds
/// `W[j][2kk]` and `[c].1` `W[j][2kk + 1]` of channels `8c..8c + 8`.
///
/// # Safety
/// `p..p + 32` must be readable i16.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld_pair_weights(p: *const i16) -> [int16x8x2_t; 2] {
    // SAFETY: the caller guarantees 32 readable i16.
    unsafe { [vld2q_s16(p), vld2q_s16(p.add(16))] }
}

/// One k pair (lanes `L0`, `L1` of each row's 8 values) against 16 output channels.
#[inline]
#[target_feature(enable = "neon")]
fn packed_step<const R: usize, const L0: i32, const L1: i32>(
    acc: &mut [[int32x4_t; 4]; R],
    x: &[int16x8_t; R],
    w: [int16x8x2_t; 2],
) {
    for (a, &xr) in acc.iter_mut().zip(x) {
        a[0] = smlal_lane::<L1>(smlal_lane::<L0>(a[0], w[0].0, xr), w[0].1, xr);
        a[1] = smlal2_lane::<L1>(smlal2_lane::<L0>(a[1], w[0].0, xr), w[0].1, xr);
        a[2] = smlal_lane::<L1>(smlal_lane::<L0>(a[2], w[1].0, xr), w[1].1, xr);
        a[3] = smlal2_lane::<L1>(smlal2_lane::<L0>(a[3], w[1].0, xr), w[1].1, xr);
    }
}

/// Row values `k..k + 8` of a GEMM operand as i16: rows of i16 as they are; rows of input bytes
/// (unsigned or signed) widened, less the zero point `z` (wrapping in 16 bits, like
/// [`super::widen`]).
///
/// # Safety
/// `p + k..p + k + 8` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld8_i16(p: *const i16, k: usize, _z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 8 readable values.
    unsafe { vld1q_s16(p.add(k)) }
}

/// [`ld8_i16`] on unsigned bytes.
///
/// # Safety
/// As [`ld8_i16`].
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld8_u8(p: *const u8, k: usize, z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 8 readable values.
    vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(unsafe { vld1_u8(p.add(k)) })), z)
}

/// [`ld8_i16`] on signed bytes.
///
/// # Safety
/// As [`ld8_i16`].
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld8_i8(p: *const u8, k: usize, z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 8 readable values.
    vsubq_s16(vmovl_s8(vreinterpret_s8_u8(unsafe { vld1_u8(p.add(k)) })), z)
}

/// Row values `k` and `k + 1` in lanes 0 and 1 (the other lanes are not used), as [`ld8_i16`].
///
/// # Safety
/// `p + k..p + k + 2` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld2_i16(p: *const i16, k: usize, _z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 2 readable i16.
    vreinterpretq_s16_u32(vdupq_n_u32(unsafe { (p.add(k) as *const u32).read_unaligned() }))
}

/// [`ld2_i16`] on unsigned bytes.
///
/// # Safety
/// As [`ld2_i16`].
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld2_u8(p: *const u8, k: usize, z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 2 readable bytes.
    let pair = vreinterpret_u8_u16(vdup_n_u16(unsafe { (p.add(k) as *const u16).read_unaligned() }));
    vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(pair)), z)
}

/// [`ld2_i16`] on signed bytes.
///
/// # Safety
/// As [`ld2_i16`].
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld2_i8(p: *const u8, k: usize, z: int16x8_t) -> int16x8_t {
    // SAFETY: the caller guarantees 2 readable bytes.
    let pair = vreinterpret_s8_u16(vdup_n_u16(unsafe { (p.add(k) as *const u16).read_unaligned() }));
    vsubq_s16(vmovl_s8(pair), z)
}

/// The sums of one tile of [`gemm_packed_neon`], from `acc`: `R` rows x 16 output channels, 4 k
/// pairs per row load.
// A macro rather than a function: it is always inlined into the tile functions (LLVM declines
// to inline a function this large at so many call sites, and the sums would then go through
// memory; `#[inline(always)]` is not allowed with `#[target_feature]`).
macro_rules! packed_sums {
    ($R:ident, $a:expr, $i:expr, $p:expr, $j:expr, $acc:expr) => {
        packed_sums!($R, $a, $i, $p, $j, $acc, ld8_i16, ld2_i16, vdupq_n_s16(0))
    };
    ($R:ident, $a:expr, $i:expr, $p:expr, $j:expr, $acc:expr, $ld8:ident, $ld2:ident, $z:expr) => {{
        let (a, i, p, j, z) = ($a, $i, $p, $j, $z);
        let mut acc: [[int32x4_t; 4]; $R] = $acc;
        let (kp, np) = (p.kp, p.np);
        let kh = kp / 2;
        assert!(a.len() >= (i + $R) * kp && j + 16 <= np && p.w.len() >= kh * np * 2);
        // SAFETY: row r of `a` (i16 values or input bytes) is read at values 2kk..2kk + 8 with
        // kk + 4 <= kh, or 2kk..2kk + 2 with kk < kh, inside its kp values; the weights at
        // (kk * np + j) * 2 + 0..32 with kk < kh, inside `p.w` (both asserted above).
        unsafe {
            let w = p.w.as_ptr().add(2 * j);
            let rows: [_; $R] = core::array::from_fn(|r| a.as_ptr().add((i + r) * kp));
            let mut kk = 0;
            while kk + 4 <= kh {
                let x: [int16x8_t; $R] = core::array::from_fn(|r| $ld8(rows[r], 2 * kk, z));
                packed_step::<$R, 0, 1>(&mut acc, &x, ld_pair_weights(w.add(kk * np * 2)));
                packed_step::<$R, 2, 3>(&mut acc, &x, ld_pair_weights(w.add((kk + 1) * np * 2)));
                packed_step::<$R, 4, 5>(&mut acc, &x, ld_pair_weights(w.add((kk + 2) * np * 2)));
                packed_step::<$R, 6, 7>(&mut acc, &x, ld_pair_weights(w.add((kk + 3) * np * 2)));
                kk += 4;
            }
            while kk < kh {
                // The pair in lanes 0 and 1.
                let x: [int16x8_t; $R] = core::array::from_fn(|r| $ld2(rows[r], 2 * kk, z));
                packed_step::<$R, 0, 1>(&mut acc, &x, ld_pair_weights(w.add(kk * np * 2)));
                kk += 1;
            }
        }
        acc
    }};
}

/// One tile of [`gemm_packed_neon`], stored as i32.
#[inline]
#[target_feature(enable = "neon")]
fn packed_tile<const R: usize>(a: &[i16], i: usize, p: &Packed, j: usize, out: &mut [i32]) {
    let acc = packed_sums!(R, a, i, p, j, [[vdupq_n_s32(0); 4]; R]);
    for (r, ar) in acc.iter().enumerate() {
        for (h, &v) in ar.iter().enumerate() {
            st_i32(out, (i + r) * p.np + j + 4 * h, v);
        }
    }
}

/// `out[i][j] = sum_k a[i][k] * W[j][k]` on [`Packed`] weights: tiles of 4 rows x 16 output
/// channels (16 accumulators, 4 weight and 4 row registers of the 32), one lane-indexed
/// `smlal`/`smlal2` per (row, 4 channels, k).
#[target_feature(enable = "neon")]
pub(super) fn gemm_packed_neon(a: &[i16], m: usize, p: &Packed, out: &mut [i32]) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        let mut j = 0;
        while j < p.np {
            match rows {
                4 => packed_tile::<4>(a, i, p, j, out),
                3 => packed_tile::<3>(a, i, p, j, out),
                2 => packed_tile::<2>(a, i, p, j, out),
                _ => packed_tile::<1>(a, i, p, j, out),
            }
            j += 16;
        }
        i += rows;
    }
}

/// 16 bytes as two vectors of i16 lanes, sign-extended (`S`) or zero-extended.
#[inline]
#[target_feature(enable = "neon")]
fn widen16<const S: bool>(x: uint8x16_t) -> (int16x8_t, int16x8_t) {
    if S {
        let x = vreinterpretq_s8_u8(x);
        (vmovl_s8(vget_low_s8(x)), vmovl_high_s8(x))
    } else {
        (vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(x))), vreinterpretq_s16_u16(vmovl_high_u8(x)))
    }
}

/// The per-channel terms of the output stage for channels `c..c + 4`, and the scaling.
#[inline]
#[target_feature(enable = "neon")]
fn scale_at(x: int32x4_t, st: &OutputStage, c: usize) -> int32x4_t {
    scale4(x, ld_i32(&st.multiplier, c), ld_i32(&st.left, c), ld_i32(&st.right, c))
}

#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_pixel_neon(
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
    let Some(nw) = Narrow::new(st.offset, st.min, st.max, q_out) else {
        return start;
    };
    match (zx == 0, q_in) {
        (true, Q8::U8) => dw_pixel_body::<false, false>(start, input, 0, bases, taps, weights, oc, init, st, &nw, out),
        (true, Q8::I8) => dw_pixel_body::<false, true>(start, input, 0, bases, taps, weights, oc, init, st, &nw, out),
        (false, Q8::U8) => dw_pixel_body::<true, false>(start, input, zx, bases, taps, weights, oc, init, st, &nw, out),
        (false, Q8::I8) => dw_pixel_body::<true, true>(start, input, zx, bases, taps, weights, oc, init, st, &nw, out),
    }
}

/// [`dw_pixel_neon`] with the zero-point subtraction compiled in or out (`SUB`; interior pixels
/// start from `bias - zx * sum(w)` and skip it) and signed or unsigned input bytes (`S`). The
/// products are i32 (`mla`), like the AVX2 kernel's, so any weights and zero points give the
/// same wrapping sums as the scalar loop.
#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn dw_pixel_body<const SUB: bool, const S: bool>(
    start: usize,
    input: &[u8],
    zx: i32,
    bases: &[usize],
    taps: &[usize],
    weights: &[i32],
    oc: usize,
    init: &[i32],
    st: &OutputStage,
    nw: &Narrow,
    out: &mut [u8],
) -> usize {
    let n8 = oc / 8 * 8;
    assert!(
        bases.len() == taps.len()
            && bases.iter().zip(taps).all(|(&b, &t)| b + n8 <= input.len() && (t + 1) * oc <= weights.len())
    );
    let zxv = vdupq_n_s32(zx);
    // 16 or 8 input bytes at `p` as i32 lanes, less `zx` with `SUB`.
    let x4 = |v: int16x8_t| {
        let (lo, hi) = (vmovl_s16(vget_low_s16(v)), vmovl_high_s16(v));
        if SUB {
            [vsubq_s32(lo, zxv), vsubq_s32(hi, zxv)]
        } else {
            [lo, hi]
        }
    };
    let mut c = start;
    while c + 16 <= n8 {
        let mut acc = [ld_i32(init, c), ld_i32(init, c + 4), ld_i32(init, c + 8), ld_i32(init, c + 12)];
        // SAFETY: for every tap, bytes base + c..base + c + 16 of `input` and i32 t * oc +
        // c..t * oc + c + 16 of `weights` with c + 16 <= n8 <= oc, inside both (asserted above).
        unsafe {
            for (&b, &t) in bases.iter().zip(taps) {
                let (xl, xh) = widen16::<S>(vld1q_u8(input.as_ptr().add(b + c)));
                let ([x0, x1], [x2, x3]) = (x4(xl), x4(xh));
                let w = weights.as_ptr().add(t * oc + c);
                acc[0] = vmlaq_s32(acc[0], x0, vld1q_s32(w));
                acc[1] = vmlaq_s32(acc[1], x1, vld1q_s32(w.add(4)));
                acc[2] = vmlaq_s32(acc[2], x2, vld1q_s32(w.add(8)));
                acc[3] = vmlaq_s32(acc[3], x3, vld1q_s32(w.add(12)));
            }
        }
        let v = [
            scale_at(acc[0], st, c),
            scale_at(acc[1], st, c + 4),
            scale_at(acc[2], st, c + 8),
            scale_at(acc[3], st, c + 12),
        ];
        st_u8x16(out, c, nw.bytes16(v));
        c += 16;
    }
    while c < n8 {
        let mut acc = [ld_i32(init, c), ld_i32(init, c + 4)];
        // SAFETY: as above, 8 channels with c + 8 <= n8.
        unsafe {
            for (&b, &t) in bases.iter().zip(taps) {
                let x = vld1_u8(input.as_ptr().add(b + c));
                let x = if S { vmovl_s8(vreinterpret_s8_u8(x)) } else { vreinterpretq_s16_u16(vmovl_u8(x)) };
                let [x0, x1] = x4(x);
                let w = weights.as_ptr().add(t * oc + c);
                acc[0] = vmlaq_s32(acc[0], x0, vld1q_s32(w));
                acc[1] = vmlaq_s32(acc[1], x1, vld1q_s32(w.add(4)));
            }
        }
        st_u8x8(out, c, nw.bytes8(scale_at(acc[0], st, c), scale_at(acc[1], st, c + 4)));
        c += 8;
    }
    n8.max(start)
}

/// Full-window depthwise pixels on [`DwPairs`] weights (on aarch64: for each block of 16
/// channels and each tap pair, the 16 i16 weights of the first tap, then those of the second,
/// in channel order, so tap `t` of block `b` is at `(b * pairs * 2 + t) * 16`): input bytes
/// widened to i16, one `smlal`/`smlal2` per 4 channels and tap.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_pixel_pairs_neon(
    input: &[u8],
    q_in: Q8,
    bases: &[usize],
    p: &DwPairs,
    init: &[i32],
    st: &OutputStage,
    q_out: Q8,
    out: &mut [u8],
) -> usize {
    let Some(nw) = Narrow::new(st.offset, st.min, st.max, q_out) else {
        return 0;
    };
    match (q_in, bases.len()) {
        (Q8::U8, 9) => dw_pairs_body::<false, 9>(input, bases, p, init, st, &nw, out),
        (Q8::I8, 9) => dw_pairs_body::<true, 9>(input, bases, p, init, st, &nw, out),
        (Q8::U8, _) => dw_pairs_body::<false, 0>(input, bases, p, init, st, &nw, out),
        (Q8::I8, _) => dw_pairs_body::<true, 0>(input, bases, p, init, st, &nw, out),
    }
}

/// `acc += x * w` for 16 channels: input bytes `x` (signed with `S`) widened to i16, against 16
/// i16 weights at `w`.
///
/// # Safety
/// `w..w + 16` must be readable i16.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dw_mac<const S: bool>(acc: &mut [int32x4_t; 4], x: uint8x16_t, w: *const i16) {
    let (xl, xh) = widen16::<S>(x);
    // SAFETY: the caller guarantees 16 readable i16 at `w`.
    let (wl, wh) = unsafe { (vld1q_s16(w), vld1q_s16(w.add(8))) };
    acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
    acc[1] = vmlal_high_s16(acc[1], xl, wl);
    acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
    acc[3] = vmlal_high_s16(acc[3], xh, wh);
}

/// [`dw_pixel_pairs_neon`] for signed or unsigned inputs (`S`) and `T` taps (`T` = 0: any
/// number; the usual 3x3 window, `T` = 9, keeps its tap offsets in registers across the channel
/// blocks).
#[inline]
#[target_feature(enable = "neon")]
fn dw_pairs_body<const S: bool, const T: usize>(
    input: &[u8],
    bases: &[usize],
    p: &DwPairs,
    init: &[i32],
    st: &OutputStage,
    nw: &Narrow,
    out: &mut [u8],
) -> usize {
    let n16 = p.n16;
    assert!(
        (T == 0 || bases.len() == T)
            && bases.len() <= 2 * p.pairs
            && p.w.len() >= n16 / 16 * p.pairs * 32
            && bases.iter().all(|&b| b + n16 <= input.len())
    );
    let (m, left, right) = (&st.multiplier[..n16], &st.left[..n16], &st.right[..n16]);
    let (init, out) = (&init[..n16], &mut out[..n16]);
    let fixed: [usize; T] = core::array::from_fn(|t| bases[t]);
    for blk in 0..n16 / 16 {
        let c = 16 * blk;
        let mut acc = [ld_i32(init, c), ld_i32(init, c + 4), ld_i32(init, c + 8), ld_i32(init, c + 12)];
        // SAFETY: for tap t, input bytes base + c..base + c + 16 with c + 16 <= n16, and the 16
        // weights at (blk * pairs * 2 + t) * 16 with t < 2 * pairs (asserted above).
        unsafe {
            let w = p.w.as_ptr().add(blk * p.pairs * 32);
            let x = input.as_ptr().add(c);
            if T > 0 {
                for (t, &b) in fixed.iter().enumerate() {
                    dw_mac::<S>(&mut acc, vld1q_u8(x.add(b)), w.add(16 * t));
                }
            } else {
                for (t, &b) in bases.iter().enumerate() {
                    dw_mac::<S>(&mut acc, vld1q_u8(x.add(b)), w.add(16 * t));
                }
            }
        }
        let v: [int32x4_t; 4] = core::array::from_fn(|h| {
            scale4(acc[h], ld_i32(m, c + 4 * h), ld_i32(left, c + 4 * h), ld_i32(right, c + 4 * h))
        });
        st_u8x16(out, c, nw.bytes16(v));
    }
    n16
}

/// Scales column `H` (channels `c..c + 4`) of a fused tile's sums.
#[inline]
#[target_feature(enable = "neon")]
fn scale_col<const R: usize, const H: usize>(acc: &mut [[int32x4_t; 4]; R], f: &Fold, c: usize) {
    let m = ld_i32(&f.multiplier, c);
    let neg = vnegq_s32(ld_i32(&f.right, c));
    if f.shl {
        let left = ld_i32(&f.left, c);
        for a in acc.iter_mut() {
            a[H] = vshlq_s32(a[H], left);
        }
    }
    for a in acc.iter_mut() {
        a[H] = scale4_neg(a[H], m, neg);
    }
}

/// One row of a fused tile as bytes at `out[at..]`: 16 of them (`FULL`) or the first `n`.
#[inline]
#[target_feature(enable = "neon")]
fn store_row<const FULL: bool>(nw: &Narrow, v: [int32x4_t; 4], out: &mut [u8], at: usize, n: usize) {
    let bytes = nw.bytes16(v);
    if FULL {
        st_u8x16(out, at, bytes);
    } else {
        let mut tmp = [0u8; 16];
        st_u8x16(&mut tmp, 0, bytes);
        out[at..at + n].copy_from_slice(&tmp[..n]);
    }
}

/// The output stage of a fused tile: the sums (fold terms included) of rows `i..i + R` and
/// channels `j..j + 16`, scaled per channel and stored as bytes at `out[(i + r) * oc + j..]`; all
/// 16 channels exist (`FULL`) or only `oc - j`.
// A macro for the reason given at `packed_sums`.
macro_rules! fused_store {
    ($R:ident, $FULL:ident, $acc:expr, $f:expr, $nw:expr, $i:expr, $j:expr, $out:expr, $oc:expr) => {{
        let mut acc: [[int32x4_t; 4]; $R] = $acc;
        let (f, nw, i, j, out, oc): (&Fold, &Narrow, usize, usize, &mut [u8], usize) = ($f, $nw, $i, $j, $out, $oc);
        // Column by column (4 channels' terms live at a time), rows at constant indices: an index
        // that is not a constant would keep `acc` in memory through the k loop.
        scale_col::<$R, 0>(&mut acc, f, j);
        scale_col::<$R, 1>(&mut acc, f, j + 4);
        scale_col::<$R, 2>(&mut acc, f, j + 8);
        scale_col::<$R, 3>(&mut acc, f, j + 12);
        let n = (oc - j).min(16);
        if let Some(&v) = acc.first() {
            store_row::<$FULL>(nw, v, out, i * oc + j, n);
        }
        if let Some(&v) = acc.get(1) {
            store_row::<$FULL>(nw, v, out, (i + 1) * oc + j, n);
        }
        if let Some(&v) = acc.get(2) {
            store_row::<$FULL>(nw, v, out, (i + 2) * oc + j, n);
        }
        if let Some(&v) = acc.get(3) {
            store_row::<$FULL>(nw, v, out, (i + 3) * oc + j, n);
        }
    }};
}

/// [`gemm_packed_neon`] with the bias (`f.c`; `f.a` is not used) and the output stage fused:
/// `m` rows of `oc` bytes. Returns false, having done nothing, when the stage's clamp leaves the
/// byte range.
#[target_feature(enable = "neon")]
pub(super) fn gemm_packed_fused_neon(
    a: &[i16],
    m: usize,
    p: &Packed,
    f: &Fold,
    q: Q8,
    out: &mut [u8],
    oc: usize,
) -> bool {
    let Some(nw) = Narrow::new(f.offset, f.min, f.max, q) else {
        return false;
    };
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        let mut j = 0;
        while j < oc {
            let full = j + 16 <= oc;
            match (rows, full) {
                (4, true) => packed_fused_tile::<4, true>(a, i, p, j, f, &nw, out, oc),
                (3, true) => packed_fused_tile::<3, true>(a, i, p, j, f, &nw, out, oc),
                (2, true) => packed_fused_tile::<2, true>(a, i, p, j, f, &nw, out, oc),
                (_, true) => packed_fused_tile::<1, true>(a, i, p, j, f, &nw, out, oc),
                (4, false) => packed_fused_tile::<4, false>(a, i, p, j, f, &nw, out, oc),
                (3, false) => packed_fused_tile::<3, false>(a, i, p, j, f, &nw, out, oc),
                (2, false) => packed_fused_tile::<2, false>(a, i, p, j, f, &nw, out, oc),
                (_, false) => packed_fused_tile::<1, false>(a, i, p, j, f, &nw, out, oc),
            }
            j += 16;
        }
        i += rows;
    }
    true
}

#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn packed_fused_tile<const R: usize, const FULL: bool>(
    a: &[i16],
    i: usize,
    p: &Packed,
    j: usize,
    f: &Fold,
    nw: &Narrow,
    out: &mut [u8],
    oc: usize,
) {
    let bias: [int32x4_t; 4] = core::array::from_fn(|h| ld_i32(&f.c[j..j + 16], 4 * h));
    let acc = packed_sums!(R, a, i, p, j, [bias; R]);
    fused_store!(R, FULL, acc, f, nw, i, j, out, oc);
}

/// [`gemm_packed_fused_neon`] on rows of raw input bytes (`m` rows of `p.kp`, signed or not by
/// `q_in`), less the input zero point `zp` as they are loaded: 1x1 convolutions read their input
/// in place. Returns false, having done nothing, when the stage's clamp leaves the byte range.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_packed_fused_bytes_neon(
    a: &[u8],
    q_in: Q8,
    zp: i32,
    m: usize,
    p: &Packed,
    f: &Fold,
    q: Q8,
    out: &mut [u8],
    oc: usize,
) -> bool {
    let Some(nw) = Narrow::new(f.offset, f.min, f.max, q) else {
        return false;
    };
    let z = vdupq_n_s16(zp as i16);
    match q_in {
        Q8::U8 => packed_fused_bytes::<false>(a, z, m, p, f, &nw, out, oc),
        Q8::I8 => packed_fused_bytes::<true>(a, z, m, p, f, &nw, out, oc),
    }
    true
}

#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn packed_fused_bytes<const S: bool>(
    a: &[u8],
    z: int16x8_t,
    m: usize,
    p: &Packed,
    f: &Fold,
    nw: &Narrow,
    out: &mut [u8],
    oc: usize,
) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        let mut j = 0;
        while j < oc {
            let full = j + 16 <= oc;
            match (rows, full) {
                (4, true) => packed_fused_bytes_tile::<4, true, S>(a, z, i, p, j, f, nw, out, oc),
                (3, true) => packed_fused_bytes_tile::<3, true, S>(a, z, i, p, j, f, nw, out, oc),
                (2, true) => packed_fused_bytes_tile::<2, true, S>(a, z, i, p, j, f, nw, out, oc),
                (_, true) => packed_fused_bytes_tile::<1, true, S>(a, z, i, p, j, f, nw, out, oc),
                (4, false) => packed_fused_bytes_tile::<4, false, S>(a, z, i, p, j, f, nw, out, oc),
                (3, false) => packed_fused_bytes_tile::<3, false, S>(a, z, i, p, j, f, nw, out, oc),
                (2, false) => packed_fused_bytes_tile::<2, false, S>(a, z, i, p, j, f, nw, out, oc),
                (_, false) => packed_fused_bytes_tile::<1, false, S>(a, z, i, p, j, f, nw, out, oc),
            }
            j += 16;
        }
        i += rows;
    }
}

#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
fn packed_fused_bytes_tile<const R: usize, const FULL: bool, const S: bool>(
    a: &[u8],
    z: int16x8_t,
    i: usize,
    p: &Packed,
    j: usize,
    f: &Fold,
    nw: &Narrow,
    out: &mut [u8],
    oc: usize,
) {
    let bias: [int32x4_t; 4] = core::array::from_fn(|h| ld_i32(&f.c[j..j + 16], 4 * h));
    let acc = if S {
        packed_sums!(R, a, i, p, j, [bias; R], ld8_i8, ld2_i8, z)
    } else {
        packed_sums!(R, a, i, p, j, [bias; R], ld8_u8, ld2_u8, z)
    };
    fused_store!(R, FULL, acc, f, nw, i, j, out, oc);
}

/// `acc[i] += sum_t w[4i + t] * x[4L + t]`: `sdot` (signed bytes) or, with `U`, `udot`
/// (unsigned bytes), by element.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn dot_lane<const U: bool, const L: i32>(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    if U {
        // SAFETY: `udot` reads and writes the named vector registers only; the CPU has
        // dotprod (this function's target feature, enabled only after run-time detection).
        unsafe {
            asm!(
                "udot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
                acc = inout(vreg) acc, w = in(vreg) w, x = in(vreg) x, l = const L,
                options(pure, nomem, nostack, preserves_flags)
            )
        }
    } else {
        // SAFETY: as above, for `sdot`.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
                acc = inout(vreg) acc, w = in(vreg) w, x = in(vreg) x, l = const L,
                options(pure, nomem, nostack, preserves_flags)
            )
        }
    }
    acc
}

/// One k quad (lane `L` of each row's 16 bytes) against 16 output channels (4 weight vectors of
/// 4 channels x 4 bytes).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn dot_quad<const R: usize, const U: bool, const L: i32>(
    acc: &mut [[int32x4_t; 4]; R],
    x: &[int8x16_t; R],
    w: [int8x16_t; 4],
) {
    for (a, &xr) in acc.iter_mut().zip(x) {
        for (ah, &wh) in a.iter_mut().zip(&w) {
            *ah = dot_lane::<U, L>(*ah, wh, xr);
        }
    }
}

/// The 64 weight bytes of 16 channels in one k quad.
///
/// # Safety
/// `p..p + 64` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld_quad_weights(p: *const u8) -> [int8x16_t; 4] {
    // SAFETY: the caller guarantees 64 readable bytes; `ld1` of bytes needs no alignment.
    unsafe { core::array::from_fn(|h| vreinterpretq_s8_u8(vld1q_u8(p.add(16 * h)))) }
}

/// Fused tile: the byte GEMM of `R` (at most 4) rows x 16 channels, started from the folded
/// zero-point terms, then the output stage in registers, storing bytes.
///
/// `sdot` multiplies signed by signed bytes and `udot` unsigned by unsigned, while the layout
/// pairs unsigned with signed. So the input bytes are flipped (`x ^ 0x80`, i.e. `x - 128` read
/// as signed, or `x + 128` read as unsigned) to the weights' signedness, and
/// [`PackedU8::sign_fix`] (`±128` times each channel's weight sum) restores the dot product.
/// All of it wraps in i32, like the scalar sums.
#[inline]
#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::too_many_arguments)]
fn tile_dot<const R: usize, const U: bool, const FULL: bool>(
    a: &[u8],
    i: usize,
    p: &PackedU8,
    j: usize,
    sx: &[i32],
    f: &Fold,
    nw: &Narrow,
    out: &mut [u8],
    oc: usize,
) {
    let (kp, np) = (p.kp, p.np);
    let kq = kp / 4;
    // The bounds of every load of the k loop: rows i..i + R of `a`, and the 64 weight bytes of
    // channels j..j + 16 in each of the kq quads.
    assert!(R <= 4 && a.len() >= (i + R) * kp && j + 16 <= np && p.w.len() >= kq * np * 4);
    // Each accumulator starts from its fold terms: a[c] * rowsum + c[c] (and the sign fix).
    let (fa, fc, fix) = (&f.a[j..j + 16], &f.c[j..j + 16], &p.sign_fix[j..j + 16]);
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    for (r, ar) in acc.iter_mut().enumerate() {
        let s = sx[i + r];
        for (h, a) in ar.iter_mut().enumerate() {
            let c = vaddq_s32(ld_i32(fc, 4 * h), ld_i32(fix, 4 * h));
            *a = match f.a_uniform {
                Some(a0) => vaddq_s32(c, vdupq_n_s32(a0.wrapping_mul(s))),
                None => vmlaq_n_s32(c, ld_i32(fa, 4 * h), s),
            };
        }
    }
    let flip = vdupq_n_u8(0x80);
    // SAFETY: row r is read at bytes 4q..4q + 16 with q + 4 <= kq, or 4q..4q + 4 with q < kq,
    // all inside its kp bytes; the weights at ((q * np) + j) * 4 + 0..64 with q < kq, inside
    // `p.w` (both asserted above). `ld1` of bytes needs no alignment.
    unsafe {
        let w = p.w.as_ptr().add(j * 4);
        let rows: [*const u8; R] = core::array::from_fn(|r| a.as_ptr().add((i + r) * kp));
        let mut q = 0;
        while q + 4 <= kq {
            let x: [int8x16_t; R] =
                core::array::from_fn(|r| vreinterpretq_s8_u8(veorq_u8(vld1q_u8(rows[r].add(4 * q)), flip)));
            dot_quad::<R, U, 0>(&mut acc, &x, ld_quad_weights(w.add(q * np * 4)));
            dot_quad::<R, U, 1>(&mut acc, &x, ld_quad_weights(w.add((q + 1) * np * 4)));
            dot_quad::<R, U, 2>(&mut acc, &x, ld_quad_weights(w.add((q + 2) * np * 4)));
            dot_quad::<R, U, 3>(&mut acc, &x, ld_quad_weights(w.add((q + 3) * np * 4)));
            q += 4;
        }
        while q < kq {
            let x: [int8x16_t; R] = core::array::from_fn(|r| {
                let quad = (rows[r].add(4 * q) as *const u32).read_unaligned();
                vreinterpretq_s8_u32(vdupq_n_u32(quad ^ 0x8080_8080))
            });
            dot_quad::<R, U, 0>(&mut acc, &x, ld_quad_weights(w.add(q * np * 4)));
            q += 1;
        }
    }
    fused_store!(R, FULL, acc, f, nw, i, j, out, oc);
}

/// Fused byte GEMM and output stage (`sdot`/`udot`) over tiles of 4 rows x 16 output channels
/// (16 accumulators, 4 weight and 4 row registers of the 32). Returns false, having done
/// nothing, when the stage's clamp leaves the byte range.
#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_u8_fused_dot(
    a: &[u8],
    m: usize,
    p: &PackedU8,
    sx: &[i32],
    f: &Fold,
    q: Q8,
    out: &mut [u8],
    oc: usize,
) -> bool {
    let Some(nw) = Narrow::new(f.offset, f.min, f.max, q) else {
        return false;
    };
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        let mut j = 0;
        while j < oc {
            let full = j + 16 <= oc;
            match (rows, p.signs.unsigned_weights(), full) {
                (4, false, true) => tile_dot::<4, false, true>(a, i, p, j, sx, f, &nw, out, oc),
                (3, false, true) => tile_dot::<3, false, true>(a, i, p, j, sx, f, &nw, out, oc),
                (2, false, true) => tile_dot::<2, false, true>(a, i, p, j, sx, f, &nw, out, oc),
                (_, false, true) => tile_dot::<1, false, true>(a, i, p, j, sx, f, &nw, out, oc),
                (4, true, true) => tile_dot::<4, true, true>(a, i, p, j, sx, f, &nw, out, oc),
                (3, true, true) => tile_dot::<3, true, true>(a, i, p, j, sx, f, &nw, out, oc),
                (2, true, true) => tile_dot::<2, true, true>(a, i, p, j, sx, f, &nw, out, oc),
                (_, true, true) => tile_dot::<1, true, true>(a, i, p, j, sx, f, &nw, out, oc),
                (4, false, false) => tile_dot::<4, false, false>(a, i, p, j, sx, f, &nw, out, oc),
                (3, false, false) => tile_dot::<3, false, false>(a, i, p, j, sx, f, &nw, out, oc),
                (2, false, false) => tile_dot::<2, false, false>(a, i, p, j, sx, f, &nw, out, oc),
                (_, false, false) => tile_dot::<1, false, false>(a, i, p, j, sx, f, &nw, out, oc),
                (4, true, false) => tile_dot::<4, true, false>(a, i, p, j, sx, f, &nw, out, oc),
                (3, true, false) => tile_dot::<3, true, false>(a, i, p, j, sx, f, &nw, out, oc),
                (2, true, false) => tile_dot::<2, true, false>(a, i, p, j, sx, f, &nw, out, oc),
                (_, true, false) => tile_dot::<1, true, false>(a, i, p, j, sx, f, &nw, out, oc),
            }
            j += 16;
        }
        i += rows;
    }
    true
}
