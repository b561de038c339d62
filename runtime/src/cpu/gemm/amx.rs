//! The AMX kernel (Intel Advanced Matrix Extensions, Sapphire Rapids and later): the fused byte
//! GEMM of the convolutions with `tdpbusd` (uint8 inputs × signed weight bytes), `tdpbsud`
//! (int8 inputs × unsigned weight bytes) or `tdpbssd` (int8 inputs × int8 weights, which need
//! no input row sums) on 16 × 64-byte tiles, then the zero-point fold and the 16-lane output
//! stage of `avx512::requant16`. The accumulation is exact integer
//! arithmetic, so the results are those of every other kernel.
//!
//! The weights are already in the layout AMX reads: [`super::PackedU8`] stores, for each group
//! of 4 `k` and each output channel, the 4 bytes together, rows of `np * 4` bytes. A B tile is 16
//! such groups (64 `k`) × 16 channels. An A tile is 16 rows × 64 bytes of the input rows.
//!
//! Linux lends the tile registers to a process only after `arch_prctl(ARCH_REQ_XCOMP_PERM)`;
//! [`available`] asks once and uses AMX only when the kernel agrees. The instructions have no
//! stable intrinsics, so they are written as single-instruction `asm!` blocks.
#![allow(unsafe_code)]

use super::{ByteSigns as Signs, Fold, PackedU8, Q8};
use std::arch::asm;
use std::arch::x86_64::*;

/// `arch_prctl` request for a permission to use an extended state component.
const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
/// The AMX tile data state component.
const XFEATURE_XTILEDATA: libc::c_ulong = 18;

/// Whether this CPU has AMX-INT8 and the kernel lets this process use it (asked once).
/// `EDGETPU_CPU_ISA=avx512` keeps to the VNNI kernel.
pub(super) fn available() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        if std::env::var_os("EDGETPU_CPU_ISA").is_some_and(|v| v == "avx512") {
            return false;
        }
        let leaf = __cpuid_count(7, 0);
        let (tile, int8) = ((leaf.edx >> 24) & 1 == 1, (leaf.edx >> 25) & 1 == 1);
        if !(tile && int8 && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")) {
            return false;
        }
        // SAFETY: arch_prctl with an integer request and argument; it changes only this
        // process's permission to use the tile state and reports failure with -1.
        let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        if r != 0 {
            log::debug!("the CPU has AMX but the kernel refused it ({}): using VNNI", std::io::Error::last_os_error());
        }
        r == 0
    })
}

/// A tile configuration (palette 1): bytes per row and rows of tiles 0 to 7.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new(tiles: &[(u16, u8)]) -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for (t, &(colsb, rows)) in tiles.iter().enumerate() {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            c[48 + t] = rows;
        }
        Config(c)
    }
}

/// Accumulators of one block: 16 rows × 32 channels.
#[repr(C, align(64))]
struct Acc([[i32; 32]; 16]);

macro_rules! tdp {
    ($signs:expr, $c:literal, $a:literal, $b:literal) => {
        // SAFETY: the tiles were configured (same rows for C and A, B rows × 4 = A bytes, C and
        // B 64 bytes a row) and loaded before; the instruction touches only tile registers.
        unsafe {
            match $signs {
                Signs::SignedUnsigned => {
                    asm!(concat!("tdpbsud ", $c, ", ", $a, ", ", $b), options(nostack, nomem, preserves_flags))
                }
                Signs::UnsignedSigned => {
                    asm!(concat!("tdpbusd ", $c, ", ", $a, ", ", $b), options(nostack, nomem, preserves_flags))
                }
                Signs::SignedSigned => {
                    asm!(concat!("tdpbssd ", $c, ", ", $a, ", ", $b), options(nostack, nomem, preserves_flags))
                }
            }
        }
    };
}

/// `tileloadd` of tile `$t` from `$base` with rows `$stride` bytes apart.
macro_rules! load {
    ($t:literal, $base:expr, $stride:expr) => {
        // SAFETY: the callers check that every row the configured tile reads (`rows` rows of
        // `colsb` bytes, `stride` apart from `base`) lies inside the slice `base` points into.
        unsafe {
            asm!(concat!("tileloadd ", $t, ", [{0} + {1}*1]"), in(reg) $base, in(reg) $stride,
                 options(nostack, readonly, preserves_flags));
        }
    };
}

/// Fused byte GEMM and output stage over blocks of 16 rows × 32 output channels. Same contract
/// as `gemm_u8_fused`: `a` holds `m` rows of `p.kp` bytes, `sx` their sums, and `out` gets `m`
/// rows of `oc` bytes.
///
/// The blocks are software-pipelined: the tile multiplies of one block are issued, then the
/// output stage of the block before it runs on the vector units (from its stored accumulators)
/// while the tile unit computes, and only then are this block's accumulators stored.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_u8_fused_amx(
    a: &[u8],
    m: usize,
    p: &PackedU8,
    sx: &[i32],
    f: &Fold,
    _q: Q8,
    out: &mut [u8],
    oc: usize,
) {
    let (kp, np) = (p.kp, p.np);
    let (kfull, kt) = (kp / 64, kp % 64);
    let signs = p.signs;
    let a = &a[..m * kp];
    let w = &p.w[..kp / 4 * np * 4];
    let mut bufs = [Acc([[0; 32]; 16]), Acc([[0; 32]; 16])];
    // The block whose accumulators wait in `bufs[buf]` for the output stage: (row, rows,
    // channel, buf).
    let mut pending: Option<(usize, usize, usize, usize)> = None;
    let mut cur = 0usize;
    let mut configured = 0usize;
    let mut i = 0;
    while i < m {
        let mr = (m - i).min(16);
        if mr != configured {
            let r = mr as u8;
            // C, A, B, A tail, B tail, C2, B2, B2 tail (the tails unconfigured without a tail).
            let (at, bt) = if kt > 0 { ((kt as u16, r), (64, (kt / 4) as u8)) } else { ((0, 0), (0, 0)) };
            let cfg = Config::new(&[(64, r), (64, r), (64, 16), at, bt, (64, r), (64, 16), bt]);
            // SAFETY: loads a valid palette-1 configuration from an aligned 64-byte buffer. The
            // accumulators of the pending block were stored before (configuring zeroes the tiles).
            unsafe { asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
            configured = mr;
        }
        // Every A tile reads rows i..i + mr, bytes k0..k0 + colsb: inside `a` (asserted).
        assert!((i + mr) * kp <= a.len());
        let mut j = 0;
        while j < oc {
            let two = j + 16 < oc;
            // Every B tile reads groups g0..g0 + rows, channels j..j + 16 (j + 32 for the
            // second): inside `w` because j + 16 <= np (and j + 32 <= np when `two`).
            assert!(j + if two { 32 } else { 16 } <= np);
            // SAFETY: zeroes configured tiles.
            unsafe { asm!("tilezero tmm0", "tilezero tmm5", options(nostack, nomem, preserves_flags)) };
            let stride_b = np * 4;
            for kb in 0..kfull {
                let pa = a[i * kp + kb * 64..].as_ptr();
                let pb = w[(kb * 16 * np + j) * 4..].as_ptr();
                load!("tmm1", pa, kp);
                load!("tmm2", pb, stride_b);
                tdp!(signs, "tmm0", "tmm1", "tmm2");
                if two {
                    let pb2 = w[(kb * 16 * np + j + 16) * 4..].as_ptr();
                    load!("tmm6", pb2, stride_b);
                    tdp!(signs, "tmm5", "tmm1", "tmm6");
                }
            }
            if kt > 0 {
                let pa = a[i * kp + kfull * 64..].as_ptr();
                let pb = w[(kfull * 16 * np + j) * 4..].as_ptr();
                load!("tmm3", pa, kp);
                load!("tmm4", pb, stride_b);
                tdp!(signs, "tmm0", "tmm3", "tmm4");
                if two {
                    let pb2 = w[(kfull * 16 * np + j + 16) * 4..].as_ptr();
                    load!("tmm7", pb2, stride_b);
                    tdp!(signs, "tmm5", "tmm3", "tmm7");
                }
            }
            let base = bufs[cur].0.as_mut_ptr().cast::<u8>();
            // The previous block's output stage, while the tile unit works on this one.
            if let Some(prev) = pending {
                finish_block(&bufs[prev.3], prev, sx, f, out, oc);
            }
            // SAFETY: stores mr rows of 64 bytes, 128 bytes apart, into `bufs[cur]` (16 rows of
            // 128 bytes): tmm0 into the first half of each row, tmm5 into the second.
            unsafe {
                asm!("tilestored [{0} + {1}*1], tmm0", in(reg) base, in(reg) 128usize, options(nostack, preserves_flags));
                if two {
                    asm!("tilestored [{0} + {1}*1], tmm5", in(reg) base.add(64), in(reg) 128usize,
                         options(nostack, preserves_flags));
                }
            }
            pending = Some((i, mr, j, cur));
            cur ^= 1;
            j += 32;
        }
        i += mr;
    }
    if let Some(prev) = pending {
        finish_block(&bufs[prev.3], prev, sx, f, out, oc);
    }
    // SAFETY: releases the tile state (so that context switches stop saving it).
    unsafe { asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
}

/// The output stage of one stored block: `(row, rows, channel, _)`, both 16-channel halves.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn finish_block(
    acc: &Acc,
    (i, mr, j, _): (usize, usize, usize, usize),
    sx: &[i32],
    f: &Fold,
    out: &mut [u8],
    oc: usize,
) {
    for (h, col) in [j, j + 16].into_iter().enumerate() {
        if col >= oc {
            break;
        }
        let rows = &acc.0[..mr];
        match (super::avx512::saturates(f.min, f.max), f.offset_folded) {
            (false, false) => finish16::<false, false>(rows, h, i, col, sx, f, out, oc),
            (false, true) => finish16::<false, true>(rows, h, i, col, sx, f, out, oc),
            (true, false) => finish16::<true, false>(rows, h, i, col, sx, f, out, oc),
            (true, true) => finish16::<true, true>(rows, h, i, col, sx, f, out, oc),
        }
    }
}

/// The fold and output stage of 16 channels (`col..`, fewer at the end) of `acc` rows (half `h`
/// of each), in 16-lane vectors (`avx512::requant16`, exactly the scalar output stage), stored
/// by `avx512::store_bytes`. `FOLD`: `f.rq512` includes the output offset; `SAT`: the clamp is
/// all of int8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
fn finish16<const SAT: bool, const FOLD: bool>(
    acc: &[[i32; 32]],
    h: usize,
    i: usize,
    col: usize,
    sx: &[i32],
    f: &Fold,
    out: &mut [u8],
    oc: usize,
) {
    let n = (oc - col).min(16);
    // Per-channel terms are padded to `np` (a multiple of 16), so 16 lanes are always there.
    let load = |v: &[i32]| {
        let s = &v[col..col + 16];
        // SAFETY: an unaligned 16-lane load of exactly 16 elements.
        unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
    };
    let (fa, fc) = (load(&f.a), load(&f.c));
    let left = load(&f.left);
    let offset = _mm512_set1_epi32(f.offset);
    let (lo, hi) = (_mm512_set1_epi32(f.min), _mm512_set1_epi32(f.max));
    for (r, row) in acc.iter().enumerate() {
        let src = &row[16 * h..16 * h + 16];
        // SAFETY: an unaligned 16-lane load of exactly 16 elements.
        let a = unsafe { _mm512_loadu_si512(src.as_ptr().cast()) };
        let x = match f.a_uniform {
            // Symmetric weights (int8 models): no input-sum term.
            Some(0) => _mm512_add_epi32(a, fc),
            Some(a0) => _mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(a0.wrapping_mul(sx[i + r]))), fc),
            None => _mm512_add_epi32(_mm512_add_epi32(a, _mm512_mullo_epi32(fa, _mm512_set1_epi32(sx[i + r]))), fc),
        };
        let v = super::avx512::requant16(f.shl, x, left, &f.rq512[col / 16 * 64..]);
        let v = if FOLD { v } else { _mm512_add_epi32(v, offset) };
        let at = (i + r) * oc + col;
        super::avx512::store_bytes::<SAT>(v, lo, hi, &mut out[at..at + n]);
    }
}
