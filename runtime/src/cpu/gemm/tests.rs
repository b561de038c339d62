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
