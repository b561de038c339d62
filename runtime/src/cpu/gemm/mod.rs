//! Integer GEMM and row helpers of the fast kernels: the choice of implementation, the packed
//! weight layouts, and the functions the kernels call.
//!
//! Operands are `i16` values with zero points already subtracted, so every product and every
//! sum is exact in `i32`: `a[m][k] * w[n][k]` summed over `k` (`k` padded with zeros to a
//! multiple of 16). On x86-64 with AVX2 (detected at run time) the inner loop is `vpmaddwd`
//! on 4x2 output tiles (`avx2`; the 8-bit dot-product GEMM of AVX-512 VNNI is in `avx512`); on
//! aarch64 it is NEON's widening `smlal`, and the 8-bit dot-product GEMM is `sdot`/`udot` where
//! the CPU has the dotprod extension (`neon`); elsewhere a portable loop computes the same
//! integers (`portable`).
// Unsafe code of this module: the dispatching functions (each `#[allow(unsafe_code)]`) call
// the AVX2, AVX-512 and dotprod functions after run-time detection; the unaligned vector loads
// from slices whose bounds are checked before each load are in `avx2` and `neon`.

use super::ops::common::{OutputStage, Q8};
use super::par::Par;
use portable::gemm_portable;
pub(crate) use portable::{gemm_packed_portable, gemm_u8_fused_portable};

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;
#[cfg(test)]
mod tests;

/// Rows of A processed per GEMM call by the convolution kernels.
pub(crate) const ROWS: usize = 24;

/// Rows of A per call of the byte GEMM (`gemm_u8_fused`): a multiple of the AMX kernel's 16-row
/// tiles, and enough rows that its tile configuration, loaded once per call, is amortised.
pub(crate) const VNNI_ROWS: usize = 64;

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// aarch64 without the dotprod extension (Cortex-A53, A72: Raspberry Pi 4, Coral Dev Board):
    /// widening multiply-accumulate.
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// aarch64 with dotprod (Cortex-A55, A76: Raspberry Pi 5): widening multiply-accumulate for
    /// the i16 GEMMs, `sdot`/`udot` for the byte GEMM of the convolutions.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

/// `EDGETPU_CPU_ISA` (read once): `portable` turns the SIMD kernels off, `avx2` keeps to the
/// AVX2 kernels on a CPU with AVX-512 (`avx512` keeps to VNNI on an AMX CPU: `amx::available`),
/// for comparing results and for testing the paths that other CPUs take.
fn forced_isa() -> Option<&'static str> {
    static FORCED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FORCED.get_or_init(|| std::env::var("EDGETPU_CPU_ISA").ok()).as_deref()
}

fn forced_portable() -> bool {
    forced_isa() == Some("portable")
}

/// The best implementation on this CPU.
pub(crate) fn best() -> Isa {
    if forced_portable() {
        return Isa::Portable;
    }
    detected()
}

#[cfg(target_arch = "x86_64")]
fn detected() -> Isa {
    if std::is_x86_feature_detected!("avx2") {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(target_arch = "aarch64")]
fn detected() -> Isa {
    if cfg!(target_endian = "big") {
        // The NEON kernels assume little-endian lanes.
        Isa::Portable
    } else if std::arch::is_aarch64_feature_detected!("dotprod") {
        Isa::NeonDot
    } else {
        Isa::Neon
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detected() -> Isa {
    Isa::Portable
}

/// `dst[i] = src[i] - zp` as i16.
#[inline]
pub(crate) fn widen(q: Q8, src: &[u8], zp: i32, dst: &mut [i16]) {
    // `(x - zp) as i16` equals `x as i16 - zp as i16` in wrapping 16-bit arithmetic (both are the
    // difference modulo 2^16); in i16 the loops vectorise to a widening and a subtraction per
    // vector of bytes.
    let z = zp as i16;
    match q {
        Q8::U8 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s as i16).wrapping_sub(z);
            }
        }
        Q8::I8 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s as i8 as i16).wrapping_sub(z);
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

#[allow(unsafe_code)]
fn requantize_bias_row(acc: &[i32], bias: Option<&[i32]>, stage: &OutputStage, q: Q8, out: &mut [u8]) {
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(unused_mut))]
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if stage.vector {
        // SAFETY: `vector` is only set when AVX2 was detected at run time (`OutputStage::new`).
        start = unsafe { avx2::requantize_avx2(acc, bias, stage, q, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if stage.vector {
        // SAFETY: NEON is part of every aarch64 CPU (and of the target's baseline).
        start = unsafe { neon::requantize_neon(acc, bias, stage, q, out) };
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
#[allow(unsafe_code)]
pub(crate) fn gemm_with(isa: Isa, a: &[i16], m: usize, w: &[i16], n: usize, kp: usize, out: &mut [i32]) {
    assert!(kp.is_multiple_of(16) && a.len() >= m * kp && w.len() >= n * kp && out.len() >= m * n);
    match isa {
        Isa::Portable => gemm_portable(a, m, w, n, kp, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen after `is_x86_feature_detected!("avx2")` (see
        // `best`), or by tests that check the same; slice bounds were asserted above.
        Isa::Avx2 => unsafe { avx2::gemm_avx2(a, m, w, n, kp, out) },
        // NEON is part of every aarch64 CPU; there is no dot product of i16 in dotprod.
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of every aarch64 CPU; slice bounds were asserted above.
        Isa::Neon | Isa::NeonDot => unsafe { neon::gemm_neon(a, m, w, n, kp, out) },
    }
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
#[allow(unsafe_code)]
pub(crate) fn gemm_packed(a: &[i16], m: usize, p: &Packed, out: &mut [i32]) {
    assert!(a.len() >= m * p.kp && out.len() >= m * p.np && p.kp.is_multiple_of(2));
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 {
        // SAFETY: AVX2 was detected at run time (`best`); bounds asserted above.
        unsafe { avx2::gemm_packed_avx2(a, m, p, out) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if best() != Isa::Portable {
        // SAFETY: NEON is part of every aarch64 CPU; bounds asserted above.
        return unsafe { neon::gemm_packed_neon(a, m, p, out) };
    }
    gemm_packed_portable(a, m, p, out)
}

/// Whether [`gemm_packed_fused`] has a kernel on this CPU (aarch64).
pub(crate) fn packed_fused() -> bool {
    cfg!(target_arch = "aarch64") && best() != Isa::Portable
}

/// [`gemm_packed`] with the bias and the output stage fused: `f` holds the bias as its `c` terms
/// (its `a` terms are not used), and `m` rows of `oc` output bytes are stored. Returns false,
/// having done nothing, where there is no such kernel ([`packed_fused`]) or the stage needs the
/// scalar path.
#[allow(unsafe_code)]
pub(crate) fn gemm_packed_fused(a: &[i16], m: usize, p: &Packed, f: &Fold, q: Q8, out: &mut [u8], oc: usize) -> bool {
    assert!(a.len() >= m * p.kp && out.len() >= m * oc && oc <= p.np && f.c.len() >= p.np && p.kp.is_multiple_of(2));
    #[cfg(target_arch = "aarch64")]
    if best() != Isa::Portable && f.vector_shifts {
        // SAFETY: NEON is part of every aarch64 CPU; bounds asserted above.
        return unsafe { neon::gemm_packed_fused_neon(a, m, p, f, q, out, oc) };
    }
    let _ = (a, m, p, f, q, out, oc);
    false
}

/// [`gemm_packed_fused`] on rows of raw input bytes (`m` rows of `p.kp`, of type `q_in`), less the
/// input zero point `zp` (wrapping in 16 bits, like [`widen`]) as the kernel loads them: 1x1
/// convolutions read their input in place. Returns false, having done nothing, where
/// [`gemm_packed_fused`] would.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed_fused_bytes(
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
    assert!(a.len() >= m * p.kp && out.len() >= m * oc && oc <= p.np && f.c.len() >= p.np && p.kp.is_multiple_of(2));
    #[cfg(target_arch = "aarch64")]
    if best() != Isa::Portable && f.vector_shifts {
        // SAFETY: NEON is part of every aarch64 CPU; bounds asserted above.
        return unsafe { neon::gemm_packed_fused_bytes_neon(a, q_in, zp, m, p, f, q, out, oc) };
    }
    let _ = (a, q_in, zp, m, p, f, q, out, oc);
    false
}

/// Whether the CPU has 8-bit dot-product instructions for the byte GEMM of the convolutions:
/// AVX-512 VNNI (with VL) on x86-64, the dotprod extension (`sdot`/`udot`) on aarch64.
pub(crate) fn vnni() -> bool {
    if forced_portable() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if forced_isa() == Some("avx2") {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx2")
    }
    #[cfg(target_arch = "aarch64")]
    {
        best() == Isa::NeonDot
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

/// The signedness of the bytes the byte GEMM multiplies: inputs × weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteSigns {
    /// uint8 inputs × signed weight bytes.
    UnsignedSigned,
    /// int8 inputs × unsigned weight bytes.
    SignedUnsigned,
    /// int8 inputs × raw int8 weights: the AMX kernel's `tdpbssd` only (the other kernels
    /// multiply bytes of opposite signedness).
    SignedSigned,
}

impl ByteSigns {
    /// Inputs of type `q` against weight bytes of the other signedness.
    pub fn mixed(q: Q8) -> ByteSigns {
        match q {
            Q8::U8 => ByteSigns::UnsignedSigned,
            Q8::I8 => ByteSigns::SignedUnsigned,
        }
    }

    /// The weight bytes are unsigned.
    pub fn unsigned_weights(self) -> bool {
        self == ByteSigns::SignedUnsigned
    }

    /// `(input, weight)` bytes as the integers they stand for.
    pub fn values(self, x: u8, w: u8) -> (i32, i32) {
        match self {
            ByteSigns::UnsignedSigned => (x as i32, w as i8 as i32),
            ByteSigns::SignedUnsigned => (x as i8 as i32, w as i32),
            ByteSigns::SignedSigned => (x as i8 as i32, w as i8 as i32),
        }
    }
}

/// Weights for the byte GEMM: k in quads, output channels padded to 16,
/// `w[((kq * np) + j) * 4 + {0..3}] = W[j][4kq + {0..3}]`, bytes of the signedness `signs` says.
#[derive(Debug, Clone)]
pub(crate) struct PackedU8 {
    pub w: Vec<u8>,
    pub signs: ByteSigns,
    /// Output channels padded to 16.
    pub np: usize,
    /// K padded to 4 (rows of A have this length).
    pub kp: usize,
    /// Per output channel (padded to `np`), what turns the dot product of the weights with the
    /// inputs' top bits flipped (`x ^ 0x80`) into the dot product with the inputs: the aarch64
    /// kernel multiplies bytes of one signedness (`sdot`, `udot`), so it flips the inputs to the
    /// weights'. Signed weights: `(x - 128) w` sums to `dot - 128 sum(w)`, so `128 sum(w)`;
    /// unsigned weights: `(x + 128) w`, so `-128 sum(w)` (wrapping).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub sign_fix: Vec<i32>,
}

impl PackedU8 {
    /// Packs `n` rows of `k` weight bytes, as they are, for inputs and weights of `signs`.
    pub fn new(w: &[u8], n: usize, k: usize, signs: ByteSigns) -> PackedU8 {
        Self::pack(w, n, k, signs, 0)
    }

    /// Packs `n` rows of `k` weight bytes with the top bit of each flipped (`w ^ 0x80`) for
    /// inputs of type `q`: raw uint8 weights become the signed bytes `w - 128` for uint8 inputs,
    /// raw int8 ones the unsigned `w + 128` for int8 inputs.
    pub fn new_flipped(w: &[u8], n: usize, k: usize, q: Q8) -> PackedU8 {
        Self::pack(w, n, k, ByteSigns::mixed(q), 0x80)
    }

    fn pack(w: &[u8], n: usize, k: usize, signs: ByteSigns, flip: u8) -> PackedU8 {
        let np = n.div_ceil(16) * 16;
        let kp = k.div_ceil(4) * 4;
        let kq = kp / 4;
        let n = w.len().checked_div(k).map_or(0, |rows| n.min(rows));
        // Quads of 4 bytes as little-endian words: word (g, j) holds bytes 4g..4g + 4 of row j
        // (zero past k, unflipped). Blocks of 16 rows keep the rows read and the 64-byte line
        // written per group in cache.
        let mut out = vec![0u8; kq * np * 4];
        let flip32 = u32::from_ne_bytes([flip; 4]);
        for j0 in (0..n).step_by(16) {
            let rows = j0..(j0 + 16).min(n);
            for g in 0..kq {
                for j in rows.clone() {
                    let row = &w[j * k..(j + 1) * k];
                    let word = match row.get(4 * g..4 * g + 4) {
                        Some(q) => u32::from_le_bytes([q[0], q[1], q[2], q[3]]) ^ flip32,
                        None => {
                            let mut q = [0u8; 4];
                            for (d, &b) in q.iter_mut().zip(&row[4 * g..]) {
                                *d = b ^ flip;
                            }
                            u32::from_le_bytes(q)
                        }
                    };
                    out[(g * np + j) * 4..][..4].copy_from_slice(&word.to_le_bytes());
                }
            }
        }
        // The aarch64 kernel's sign fix-up (see `sign_fix`); other CPUs do not read it.
        let mut sign_fix = vec![0i32; np];
        if cfg!(target_arch = "aarch64") {
            for (j, row) in w.chunks_exact(k.max(1)).take(n).enumerate() {
                sign_fix[j] = if signs.unsigned_weights() {
                    row.iter().fold(0i32, |s, &b| s.wrapping_add((b ^ flip) as i32)).wrapping_mul(-128)
                } else {
                    row.iter().fold(0i32, |s, &b| s.wrapping_add((b ^ flip) as i8 as i32)).wrapping_mul(128)
                };
            }
        }
        PackedU8 { w: out, signs, np, kp, sign_fix }
    }
}

/// Per-channel terms of the fused byte GEMM, padded to [`PackedU8::np`]: the folded zero-point
/// terms `acc + a[c] * rowsum + c[c]`, then the output stage.
#[derive(Debug, Clone)]
// Some fields only feed the vector kernels.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
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
    /// Some channel shifts left (`left` is not all zeros).
    #[cfg_attr(not(any(target_arch = "aarch64", all(target_arch = "x86_64", target_os = "linux"))), allow(dead_code))]
    pub shl: bool,
    /// Every shift is below 31, which the vector output stages require (they do not reproduce
    /// x86's masking of larger shifts), and no multiplier is negative.
    pub vector_shifts: bool,
    /// The output stage's constants for the AMX kernel (`avx512::requant_consts`; empty on
    /// other CPUs).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub rq512: Vec<i64>,
    /// `rq512` includes the output offset.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub offset_folded: bool,
}

impl Fold {
    pub fn new(a: &[i32], c: &[i32], st: &OutputStage, np: usize) -> Fold {
        let pad = |v: &[i32]| {
            let mut x = v.to_vec();
            x.resize(np, 0);
            x
        };
        let a_uniform = a.first().copied().filter(|&a0| a.iter().all(|&v| v == a0));
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let (rq512, offset_folded) = if amx_active() {
            avx512::requant_consts(&st.multiplier, &st.right, st.offset, np.div_ceil(16) * 16)
        } else {
            (Vec::new(), false)
        };
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
            shl: st.left.iter().any(|&l| l != 0),
            vector_shifts: st.shift.iter().all(|&s| s < 31) && st.multiplier.iter().all(|&m| m >= 0),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            rq512,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            offset_folded,
        }
    }
}

/// Whether the byte GEMM runs on AMX here (which alone takes [`ByteSigns::SignedSigned`] weights
/// at speed).
pub(crate) fn amx_active() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        vnni() && amx::available()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// Sum of bytes, unsigned or signed (`signed`): the input row sums of the byte GEMM's fold.
#[allow(unsafe_code)]
pub(crate) fn byte_sum(row: &[u8], signed: bool) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 {
        // SAFETY: AVX2 was detected at run time (`best`).
        return unsafe { avx2::byte_sum_avx2(row, signed) };
    }
    if signed {
        row.iter().map(|&x| x as i8 as i32).sum()
    } else {
        row.iter().map(|&x| x as i32).sum()
    }
}

/// Byte GEMM with the zero-point fold and output stage fused: `m` rows of `a` (`p.kp` bytes)
/// to `m` rows of `oc` output bytes.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_u8_fused(a: &[u8], m: usize, p: &PackedU8, sx: &[i32], f: &Fold, q: Q8, out: &mut [u8], oc: usize) {
    assert!(a.len() >= m * p.kp && out.len() >= m * oc && sx.len() >= m && oc <= p.np && f.a.len() >= p.np);
    #[cfg(target_arch = "x86_64")]
    if vnni() && f.vector_shifts {
        #[cfg(target_os = "linux")]
        if amx::available() {
            // SAFETY: as below; AMX-INT8 was detected and granted at run time (`available`).
            unsafe { amx::gemm_u8_fused_amx(a, m, p, sx, f, q, out, oc) };
            return;
        }
        if p.signs != ByteSigns::SignedSigned {
            // SAFETY: AVX-512 VNNI, VL and AVX2 were detected at run time (`vnni`); bounds
            // asserted.
            unsafe { avx512::gemm_u8_fused_vnni(a, m, p, sx, f, q, out, oc) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if best() == Isa::NeonDot && f.vector_shifts && p.signs != ByteSigns::SignedSigned {
        // SAFETY: dotprod was detected at run time (`best`); bounds asserted above.
        if unsafe { neon::gemm_u8_fused_dot(a, m, p, sx, f, q, out, oc) } {
            return;
        }
    }
    gemm_u8_fused_portable(a, m, p, sx, f, q, out, oc)
}

/// For each row of `len` bytes of `x` (`idx.len()` rows), the index of its first largest byte
/// after XOR with `key` (`0x80` compares int8 values, `0xFF` finds the least byte), into `idx`.
#[allow(unsafe_code)]
pub(crate) fn argmax_rows(x: &[u8], len: usize, key: u8, idx: &mut [u32]) {
    assert!(x.len() >= idx.len() * len, "{} rows of {len} bytes in {} bytes", idx.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 && (1..=32).contains(&len) {
        // SAFETY: AVX2 was detected at run time (`best`); the rows are in `x` (asserted above).
        unsafe { avx2::argmax_rows_avx2(x, len, key, idx) };
        return;
    }
    for (out, row) in idx.iter_mut().zip(x.chunks_exact(len.max(1))) {
        let mut best = row.first().map_or(0, |&b| b ^ key);
        let mut best_k = 0;
        for (k, &b) in row.iter().enumerate().skip(1) {
            if b ^ key > best {
                best = b ^ key;
                best_k = k;
            }
        }
        *out = best_k as u32;
    }
}

/// Runs `f` compiled for AVX-512 (F, BW, VL) where the CPU has the 512-bit kernels' features
/// (and the ISA is not forced down), else as [`with_avx2`] does: plain loops in `f` are then
/// vectorised with 512-bit registers.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if vnni() && avx512::avx512bw() {
        // SAFETY: AVX-512 F, BW and VL (and AVX2) were detected at run time (`vnni`,
        // `avx512bw`); `f` is safe code.
        return unsafe { avx512::call_avx512(f) };
    }
    with_avx2(f)
}

/// Runs `f`, compiled for AVX2 where the CPU has it: `f` is inlined into an AVX2 function, so
/// plain loops in it are vectorised with 256-bit registers. (On aarch64, NEON is part of the
/// baseline, so plain loops are vectorised with it everywhere.)
#[inline]
#[allow(unsafe_code)]
pub(crate) fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if best() == Isa::Avx2 {
        // SAFETY: AVX2 was detected at run time (`best`); `f` is safe code.
        return unsafe { avx2::call_avx2(f) };
    }
    f()
}

/// Most taps the vectorised depthwise pixel handles (larger filters use the row loop).
pub(crate) const DW_MAX_TAPS: usize = 64;

/// One depthwise output pixel (depth multiplier 1) for channels `0..n8` (a multiple of 8):
/// `acc[c] = init[c] + sum over taps (x[base_t + c] - zx) * w[tap_t][c]`, then the output stage
/// (`init` is the bias, or the bias with the zero-point terms folded in when `zx` is 0).
/// Returns how many channels were done (`start` when the CPU has no vector kernels).
#[allow(unsafe_code)]
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
        return unsafe { avx2::dw_pixel_avx2(start, input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if st.vector {
        // SAFETY: NEON is part of every aarch64 CPU.
        return unsafe { neon::dw_pixel_neon(start, input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out) };
    }
    let _ = (input, q_in, zx, bases, taps, weights, oc, bias, st, q_out, out);
    start
}

/// Depthwise weights for full-window pixels, by pairs of taps. On x86-64, two taps per
/// `vpmaddwd`: for each block of 16 channels and each pair of taps, two vectors of interleaved
/// `(w_a, w_b)` i16 pairs in the lane order of `unpacklo/hi_epi16` (channels 0-3 and 8-11, then
/// 4-7 and 12-15). On aarch64, for each block and pair, the 16 i16 weights of tap `a` in channel
/// order, then those of tap `b`.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) struct DwPairs {
    pub w: Vec<i16>,
    /// Channels covered: whole blocks of 16.
    pub n16: usize,
    pub pairs: usize,
    /// On CPUs with AVX-512 VNNI, the weights again in the order of the 512-bit kernel
    /// (`avx512::pack_dw_512`): blocks of 32 channels, the last one zero-padded; empty elsewhere.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub w512: Vec<i16>,
    /// The output stage's constants for every channel, in blocks of 16
    /// (`avx512::requant_consts`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub rq512: Vec<i64>,
    /// Some channel shifts left.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub shl: bool,
    /// `rq512` includes the output offset.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub offset_folded: bool,
}

impl DwPairs {
    /// From `[tap][oc]` weights with the zero point already subtracted (each within i16), and
    /// the layer's output stage.
    pub fn new(weights: &[i32], taps: usize, oc: usize, st: &OutputStage) -> DwPairs {
        let n16 = oc / 16 * 16;
        let pairs = taps.div_ceil(2);
        let mut w = vec![0i16; (n16 / 16) * pairs * 32];
        let at = |t: usize, c: usize| if t < taps { weights[t * oc + c] as i16 } else { 0 };
        for b in 0..n16 / 16 {
            for k in 0..pairs {
                let base = (b * pairs + k) * 32;
                if cfg!(target_arch = "aarch64") {
                    for c in 0..16 {
                        w[base + c] = at(2 * k, 16 * b + c);
                        w[base + 16 + c] = at(2 * k + 1, 16 * b + c);
                    }
                    continue;
                }
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
        #[cfg(target_arch = "x86_64")]
        let (w512, (rq512, offset_folded)) = if vnni() && avx512::avx512bw() && st.vector {
            let n = oc.div_ceil(16) * 16;
            (avx512::pack_dw_512(weights, taps, oc), avx512::requant_consts(&st.multiplier, &st.right, st.offset, n))
        } else {
            (Vec::new(), (Vec::new(), false))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (w512, rq512, offset_folded) = (Vec::new(), Vec::new(), false);
        let shl = st.left.iter().any(|&l| l != 0);
        DwPairs { w, n16, pairs, w512, rq512, shl, offset_folded }
    }
}

/// `count` consecutive full-window depthwise pixels of one output row (depth multiplier 1, raw
/// input bytes, zero-point terms folded into `init`): pixel `k`'s tap `t` reads the input at
/// `origin + k * step + rel[t]`, and its `oc` outputs go to `out[k * oc..]` (`p` packed for
/// `oc` channels). Returns whether it did them: not when this CPU has no row kernel (the caller
/// then goes pixel by pixel).
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dw_row(
    input: &[u8],
    q_in: Q8,
    row: (usize, usize, usize),
    rel: &[usize],
    p: &DwPairs,
    init: &[i32],
    st: &OutputStage,
    oc: usize,
    out: &mut [u8],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if st.vector && rel.len() <= 2 * p.pairs && !p.w512.is_empty() {
        // SAFETY: `w512` is only non-empty when AVX-512 F, BW, VNNI, VL and AVX2 were detected
        // at run time (`DwPairs::new`, `vnni`).
        unsafe { avx512::dw_row_512(input, q_in, row, rel, p, init, st, oc, out) };
        return true;
    }
    let _ = (input, q_in, row, rel, p, init, st, oc, out);
    false
}

/// One full-window depthwise pixel (depth multiplier 1, every tap inside the input, raw input
/// bytes, zero-point terms folded into `init`) for the channels of `p`, two taps per
/// `vpmaddwd` (x86-64) or `smlal` (aarch64). Returns how many channels were done (0 without
/// vector kernels).
#[allow(unsafe_code)]
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
        if dw_row(input, q_in, (0, 0, 1), bases, p, init, st, out.len(), out) {
            return out.len();
        }
        // SAFETY: `vector` is only set when AVX2 was detected at run time (`OutputStage::new`).
        return unsafe { avx2::dw_pixel_pairs_avx2(0, input, q_in, bases, p, init, st, q_out, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if st.vector && bases.len() <= 2 * p.pairs {
        // SAFETY: NEON is part of every aarch64 CPU.
        return unsafe { neon::dw_pixel_pairs_neon(input, q_in, bases, p, init, st, q_out, out) };
    }
    let _ = (input, q_in, bases, p, init, st, q_out, out);
    0
}
