//! Property tests of the GEMMs: every implementation against a naive product.

use super::portable::gemm_u8_portable;
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
        let pu = PackedU8::new(&wb, n, kp, ByteSigns::UnsignedSigned);
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

/// Names the implementation this CPU runs (`--nocapture` prints it). Where `EDGETPU_EXPECT_ISA`
/// is set (CI sets it for each emulated aarch64 CPU), requires that one, so a run shows which
/// kernels it tested.
#[test]
fn chosen_isa() {
    let isa = best();
    eprintln!("cpu kernels: {isa:?}, 8-bit dot-product GEMM: {}", vnni());
    if let Ok(want) = std::env::var("EDGETPU_EXPECT_ISA") {
        assert_eq!(format!("{isa:?}"), want, "EDGETPU_EXPECT_ISA");
    }
}

/// xorshift64*.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A random output stage with the vector kernels' shifts (below 31): multipliers as
/// `quantize_multiplier` makes them (0, or in `[2^30, 2^31)`; often exactly 2^30, where rounding
/// ties are common), left shifts up to 30, right shifts up to 31.
fn random_stage(next: &mut impl FnMut() -> u64, n: usize, q: Q8) -> OutputStage {
    let multiplier = (0..n)
        .map(|_| match next() % 8 {
            0 => 0,
            1 | 2 => 1 << 30,
            3 => i32::MAX,
            _ => (1 << 30) + (next() % (1 << 30)) as i32,
        })
        .collect();
    let shift = (0..n)
        .map(|_| match next() % 4 {
            0 => -((next() % 32) as i32),
            1 => (next() % 31) as i32,
            _ => -((next() % 12) as i32),
        })
        .collect();
    let (lo, hi) = if q == Q8::U8 { (0, 255) } else { (-128, 127) };
    let span = (hi - lo + 1) as u64;
    let offset = lo + (next() % span) as i32;
    let (a, b) = (lo + (next() % span) as i32, lo + (next() % span) as i32);
    let (min, max) = if next().is_multiple_of(2) { (lo, hi) } else { (a.min(b), a.max(b)) };
    OutputStage::new(multiplier, shift, offset, min, max)
}

/// An accumulator: extremes, small values (where rounding shows), or anything.
fn random_acc(next: &mut impl FnMut() -> u64) -> i32 {
    match next() % 6 {
        0 => [i32::MIN, i32::MAX, 0, 1, -1, i32::MIN + 1, 1 << 30, -(1 << 30)][(next() % 8) as usize],
        1 | 2 => (next() % 4096) as i32 - 2048,
        _ => next() as i32,
    }
}

/// The output stage of the vector kernels against the scalar one over the whole i32 range, every
/// shift the vector kernels take and multipliers up to `i32::MAX`.
#[test]
fn requantize_matches_scalar_everywhere() {
    let mut next = rng(0x005E_ED0F_0DD5);
    for _ in 0..400 {
        let n = 1 + (next() % 40) as usize;
        let rows = 1 + (next() % 3) as usize;
        let q = if next().is_multiple_of(2) { Q8::U8 } else { Q8::I8 };
        let stage = random_stage(&mut next, n, q);
        let acc: Vec<i32> = (0..rows * n).map(|_| random_acc(&mut next)).collect();
        let bias: Vec<i32> = (0..n).map(|_| random_acc(&mut next)).collect();
        let mut got = vec![0u8; n];
        requantize_row(&acc[..n], &stage, q, &mut got);
        let want: Vec<u8> = (0..n).map(|c| q.put(stage.apply(acc[c], c))).collect();
        assert_eq!(got, want, "requantize_row, stage {stage:?}, acc {:?}", &acc[..n]);
        let mut got = vec![0u8; rows * n];
        requantize(&acc, &bias, &stage, q, &mut got);
        let want: Vec<u8> =
            (0..rows * n).map(|i| q.put(stage.apply(acc[i].wrapping_add(bias[i % n]), i % n))).collect();
        assert_eq!(got, want, "requantize, stage {stage:?}");
    }
}

/// The 16-lane output stage of the AVX-512 kernels (one 64-bit shift instead of gemmlowp's two
/// roundings) against TFLite's `MultiplyByQuantizedMultiplier`, over the whole i32 range, every
/// shift the vector kernels take and multipliers up to `i32::MAX`.
#[cfg(target_arch = "x86_64")]
#[test]
#[allow(unsafe_code)]
fn avx512_requant_matches_scalar_everywhere() {
    if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")) {
        eprintln!("this CPU has no AVX-512: the 16-lane output stage is not used here, nor tested");
        return;
    }
    let mut next = rng(0x0A5C_512F);
    for _ in 0..20_000 {
        let q = if next().is_multiple_of(2) { Q8::U8 } else { Q8::I8 };
        let stage = random_stage(&mut next, 16, q);
        // The output offset, folded into the constants where they have room for it.
        let offset = (next() % 511) as i32 - 255;
        let (rq, folded) = super::avx512::requant_consts(&stage.multiplier, &stage.right, offset, 16);
        assert_eq!(folded, stage.right.iter().all(|&e| e <= 21), "shifts {:?}", stage.right);
        let x: [i32; 16] = std::array::from_fn(|_| random_acc(&mut next));
        let left: [i32; 16] = std::array::from_fn(|c| stage.left[c]);
        for shl in [true, false] {
            if !shl && left.iter().any(|&l| l != 0) {
                continue;
            }
            // SAFETY: AVX-512 F and BW were detected above.
            let got = unsafe { super::avx512::requant16_lanes(shl, &x, &left, &rq) };
            let got = got.map(|v| if folded { v } else { v.wrapping_add(offset) });
            let want: [i32; 16] = std::array::from_fn(|c| {
                crate::cpu::quant::multiply_by_quantized_multiplier(x[c], stage.multiplier[c], stage.shift[c])
                    .wrapping_add(offset)
            });
            assert_eq!(got, want, "x {x:?}, multipliers {:?}, shifts {:?}", stage.multiplier, stage.shift);
        }
    }
}

/// The AVX-512 kernels' last step (clamp, narrow to bytes, full and masked stores) against
/// clamping and truncating lane by lane: the saturating form on the whole int8 range, the
/// clamping one on ranges within uint8 and int8.
#[cfg(target_arch = "x86_64")]
#[test]
#[allow(unsafe_code)]
fn avx512_narrowing_matches_scalar_clamp() {
    use std::arch::x86_64::{_mm512_loadu_si512, _mm512_set1_epi32};
    if !std::is_x86_feature_detected!("avx512f") {
        eprintln!("this CPU has no AVX-512: the 16-lane narrowing is not used here, nor tested");
        return;
    }
    let mut next = rng(0x0A77_0B17);
    let ranges = [(-128, 127), (-128, 40), (-3, 127), (-100, 90), (0, 255), (0, 6), (17, 255), (0, 127)];
    for &(lo, hi) in &ranges {
        let sat = super::avx512::saturates(lo, hi);
        assert_eq!(sat, (lo, hi) == (-128, 127));
        for _ in 0..200 {
            let lanes: [i32; 16] = std::array::from_fn(|_| match next() % 3 {
                0 => random_acc(&mut next),
                _ => (next() % 600) as i32 - 300,
            });
            let want: Vec<u8> = lanes.iter().map(|&v| v.clamp(lo, hi) as u8).collect();
            let n = (next() % 16 + 1) as usize;
            let (mut full, mut part) = ([0xAAu8; 16], [0xAAu8; 17]);
            // SAFETY: AVX-512 F was detected above; the load reads exactly 16 i32.
            unsafe {
                let (v, l, h) =
                    (_mm512_loadu_si512(lanes.as_ptr().cast()), _mm512_set1_epi32(lo), _mm512_set1_epi32(hi));
                if sat {
                    super::avx512::store_bytes::<true>(v, l, h, &mut full);
                    super::avx512::store_bytes::<true>(v, l, h, &mut part[..n]);
                } else {
                    super::avx512::store_bytes::<false>(v, l, h, &mut full);
                    super::avx512::store_bytes::<false>(v, l, h, &mut part[..n]);
                }
            }
            assert_eq!(&full[..], &want[..], "range [{lo}, {hi}], lanes {lanes:?}");
            assert_eq!(&part[..n], &want[..n], "range [{lo}, {hi}], first {n} of {lanes:?}");
            assert!(part[n..].iter().all(|&b| b == 0xAA), "a masked store wrote past {n} bytes");
        }
    }
}

#[test]
fn byte_sums_match_scalar() {
    let mut next = rng(0x5AD_5AD);
    for len in (0..200).chain([1000, 4099]) {
        let row: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert_eq!(byte_sum(&row, false), row.iter().map(|&x| x as i32).sum::<i32>(), "len {len}");
        assert_eq!(byte_sum(&row, true), row.iter().map(|&x| x as i8 as i32).sum::<i32>(), "len {len}");
    }
    assert_eq!(byte_sum(&[0xFF; 64], false), 255 * 64);
    assert_eq!(byte_sum(&[0x80; 64], true), -128 * 64);
}

proptest! {
    /// The fused byte GEMM (AMX, AVX-512 VNNI or aarch64 dotprod, where the CPU has it) against
    /// the portable one: any bytes, the three signedness layouts (both signed: AMX only), uniform or per-channel fold terms,
    /// any depth (tails of the 16-byte steps and of AMX's 64-byte tiles), row count (several
    /// 16-row AMX blocks and a partial one) and channel count (partial tiles).
    #[test]
    fn gemm_u8_fused_matches_portable(
        m in 1usize..=40,
        oc in 1usize..=40,
        k in 1usize..=200,
        signs in 0u8..3,
        uniform in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut next = rng(seed);
        let wb: Vec<u8> = (0..oc * k).map(|_| next() as u8).collect();
        let p = match signs {
            0 => PackedU8::new(&wb, oc, k, ByteSigns::UnsignedSigned),
            1 => PackedU8::new(&wb, oc, k, ByteSigns::SignedUnsigned),
            _ => PackedU8::new(&wb, oc, k, ByteSigns::SignedSigned),
        };
        let a: Vec<u8> = (0..m * p.kp).map(|_| next() as u8).collect();
        let sx: Vec<i32> = (0..m).map(|_| random_acc(&mut next)).collect();
        let q = if next().is_multiple_of(2) { Q8::U8 } else { Q8::I8 };
        let fa: Vec<i32> =
            if uniform { vec![(next() % 256) as i32 - 128; oc] } else { (0..oc).map(|_| (next() % 512) as i32 - 256).collect() };
        let fc: Vec<i32> = (0..oc).map(|_| random_acc(&mut next)).collect();
        let f = Fold::new(&fa, &fc, &random_stage(&mut next, oc, q), p.np);
        let mut got = vec![0xA5u8; m * oc];
        gemm_u8_fused(&a, m, &p, &sx, &f, q, &mut got, oc);
        let mut want = vec![0x5Au8; m * oc];
        gemm_u8_fused_portable(&a, m, &p, &sx, &f, q, &mut want, oc);
        prop_assert_eq!(got, want);
    }
}
