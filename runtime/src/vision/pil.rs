//! Pillow-compatible pixel operations, reproducing Pillow's 8-bit code paths exactly so that
//! preprocessing matches the Python tools that made the test goldens (and pycoral's examples).
//!
//! - [`resample`]: `Image.resize((w, h), LANCZOS)` (or BILINEAR): separable convolution, horizontal
//!   pass first into an 8-bit intermediate, then vertical; filter support widened by the
//!   downscale factor; coefficients normalised to sum 1 and converted to 22-bit fixed point,
//!   sums rounded by adding half and shifting, clamped to 0..255.
//! - [`rgb_to_luma`]: `convert('L')`: ITU-R 601-2 weights in 16-bit fixed point.

use std::f64::consts::PI;

/// Fixed-point bits of the 8-bit resampling coefficients (32 - 8 - 2, as in Pillow).
const PRECISION_BITS: u32 = 22;

/// A resampling kernel and its support radius at scale 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Lanczos, a = 3.
    Lanczos,
    /// Triangle (bilinear), support 1.
    Bilinear,
}

impl Kernel {
    fn support(self) -> f64 {
        match self {
            Kernel::Lanczos => 3.0,
            Kernel::Bilinear => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Kernel::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            Kernel::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * PI;
    x.sin() / x
}

/// Fixed-point coefficients of a 1-D resampling: for output `i`, source `first[i]..first[i]+len[i]`.
struct Coeffs {
    first: Vec<usize>,
    taps: Vec<Vec<i32>>,
}

fn coefficients(in_size: usize, out_size: usize, kernel: Kernel) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = kernel.support() * filter_scale;
    let inv = 1.0 / filter_scale;
    let mut first = Vec::with_capacity(out_size);
    let mut taps = Vec::with_capacity(out_size);
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's (int) truncation toward zero, then clamping.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
        let weights: Vec<f64> = (xmin..xmax).map(|x| kernel.eval((x as f64 - center + 0.5) * inv)).collect();
        let total: f64 = weights.iter().sum();
        let fixed = weights
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let v = w * (1u32 << PRECISION_BITS) as f64;
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        taps.push(fixed);
    }
    Coeffs { first, taps }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel, row-major `width x height`) to
/// `out_w x out_h` exactly like Pillow's `Image.resize`. Sizes must be non-zero.
///
/// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
/// pixels as the width (and neither grows), else the horizontal pass first. The rule is the one
/// that reproduces all the goldens (made with Pillow 13.0.0): e.g. 500x610 -> 481x353 is
/// vertical-first, 500x610 -> 192x192 and 512x600 -> 128x128 horizontal-first.
pub(crate) fn resample(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    kernel: Kernel,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), width * height * channels);
    let vert = coefficients(height, out_h, kernel);
    let vertical_first = width >= out_w && height >= out_h && height - out_h > 2 * (width - out_w);
    if vertical_first {
        let tmp = vertical(src, width, channels, &vert, 0);
        if out_w == width {
            return tmp;
        }
        return horizontal(&tmp, width, 0..out_h, channels, &coefficients(width, out_w, kernel));
    }
    // Horizontal pass (only when the width changes), over the rows the vertical pass reads.
    let y_first = vert.first[0];
    let y_last = vert.first[out_h - 1] + vert.taps[out_h - 1].len();
    let tmp;
    let (rows, row0) = if out_w != width {
        tmp = horizontal(src, width, y_first..y_last, channels, &coefficients(width, out_w, kernel));
        (&tmp[..], y_first)
    } else {
        (src, 0)
    };
    if out_h == height {
        // Pillow skips the vertical pass when the height does not change.
        return rows.to_vec();
    }
    vertical(rows, out_w, channels, &vert, row0)
}

/// Horizontal pass over source rows `rows` (each `width` pixels): `out_w x rows.len()` pixels.
fn horizontal(src: &[u8], width: usize, rows: std::ops::Range<usize>, channels: usize, c: &Coeffs) -> Vec<u8> {
    let out_w = c.first.len();
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; out_w * rows.len() * channels];
    for (y, sy) in rows.enumerate() {
        let src_row = &src[sy * width * channels..][..width * channels];
        let dst_row = &mut out[y * out_w * channels..][..out_w * channels];
        for (x, (first, taps)) in c.first.iter().zip(&c.taps).enumerate() {
            for ch in 0..channels {
                let mut acc = half;
                for (k, &w) in taps.iter().enumerate() {
                    acc += src_row[(first + k) * channels + ch] as i32 * w;
                }
                dst_row[x * channels + ch] = clip8(acc);
            }
        }
    }
    out
}

/// Vertical pass over rows of `width` pixels whose first row is source row `row0`.
fn vertical(src: &[u8], width: usize, channels: usize, c: &Coeffs, row0: usize) -> Vec<u8> {
    let stride = width * channels;
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; stride * c.first.len()];
    for (y, (first, taps)) in c.first.iter().zip(&c.taps).enumerate() {
        let base = first - row0;
        let dst_row = &mut out[y * stride..][..stride];
        for (i, d) in dst_row.iter_mut().enumerate() {
            let mut acc = half;
            for (k, &w) in taps.iter().enumerate() {
                acc += src[(base + k) * stride + i] as i32 * w;
            }
            *d = clip8(acc);
        }
    }
    out
}

/// Pillow's `convert('L')` of one RGB pixel.
pub(crate) fn rgb_to_luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(512, 128), (343, 224), (7, 3), (3, 7), (1, 5)] {
            let c = coefficients(i, o, Kernel::Lanczos);
            for t in &c.taps {
                let s: i32 = t.iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= t.len() as i32, "{i}->{o}: {s}");
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![77u8; 9 * 5 * 3];
        for (w, h) in [(4, 3), (13, 11), (9, 2), (1, 1)] {
            let out = resample(&src, 9, 5, 3, w, h, Kernel::Lanczos);
            assert_eq!(out.len(), w * h * 3);
            assert!(out.iter().all(|&v| v == 77), "{w}x{h}: {out:?}");
        }
    }

    #[test]
    fn gray_level_is_kept_by_luma() {
        for v in [0u8, 1, 128, 254, 255] {
            assert_eq!(rgb_to_luma(v, v, v), v);
        }
        assert_eq!(rgb_to_luma(255, 0, 0), 76);
        assert_eq!(rgb_to_luma(0, 255, 0), 150);
        assert_eq!(rgb_to_luma(0, 0, 255), 29);
    }
}
