//! RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR, as TFLite's reference kernels (float
//! interpolation for uint8 and float32, 10-bit fixed point for int8).

use super::common::{dims4, le_i32, set_output_shape, Q8};
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::Result;
use crate::model::TensorType;

#[derive(Clone, Copy)]
enum Elem {
    U8,
    I8,
    F32,
}

struct Resize {
    bilinear: bool,
    elem: Elem,
    n: usize,
    ih: usize,
    iw: usize,
    c: usize,
    oh: usize,
    ow: usize,
    align: bool,
    half: bool,
    /// Run the reference loop (no shared row products, no threads).
    reference: bool,
    /// Per output row / column: (lower, upper, scaled coordinate), computed once.
    ys: Vec<(usize, usize, f32)>,
    xs: Vec<(usize, usize, f32)>,
}

fn build(ctx: &mut BuildCtx<'_>, bilinear: bool) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let [n, ih, iw, c] = dims4(ctx, &input, "input")?;
    let size = le_i32(ctx.constant(1)?);
    if size.len() != 2 || size.iter().any(|&s| s <= 0) {
        return Err(ctx.err(format!("size {size:?} must be two positive values")));
    }
    let (oh, ow) = (size[0] as usize, size[1] as usize);
    if oh.max(ow) > 1 << 24 {
        return Err(ctx.err(format!("size {size:?} is not supported (at most {} per dimension)", 1 << 24)));
    }
    // Empty inputs have nothing to interpolate; the int8 kernel's 10-bit fixed-point coordinates
    // (as TFLite computes them in int32) need sizes below 2^20.
    if ih == 0 || iw == 0 || ih.max(iw) > 1 << 20 {
        return Err(ctx.err(format!("input {:?} is not supported (height and width 1 to 2^20)", input.shape)));
    }
    set_output_shape(ctx, 0, vec![n, oh, ow, c])?;
    let elem = match input.dtype {
        TensorType::FLOAT32 => Elem::F32,
        TensorType::UINT8 => Elem::U8,
        TensorType::INT8 => Elem::I8,
        t => return Err(ctx.err(format!("type {} is not supported", t.name()))),
    };
    if ctx.output(0)?.dtype != input.dtype {
        return Err(ctx.err("input and output types differ"));
    }
    let (align, half) = (ctx.options.align_corners, ctx.options.half_pixel_centers);
    let reference = ctx.reference;
    let mut r = Resize { bilinear, elem, n, ih, iw, c, oh, ow, align, half, reference, ys: Vec::new(), xs: Vec::new() };
    let (hs, ws) = (r.scale(ih, oh), r.scale(iw, ow));
    r.ys = (0..oh)
        .map(|y| {
            let (v, a, b) = interp(y as f32, hs, half, ih);
            (a, b, v)
        })
        .collect();
    let scratch = 2 * iw * c * 4 + 8;
    r.xs = (0..ow)
        .map(|x| {
            let (v, a, b) = interp(x as f32, ws, half, iw);
            (a, b, v)
        })
        .collect();
    Built::with_scratch(r, scratch)
}

pub(crate) fn build_bilinear(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    build(ctx, true)
}

pub(crate) fn build_nearest(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    build(ctx, false)
}

fn interp(value: f32, scale: f32, half: bool, size: usize) -> (f32, usize, usize) {
    let scaled = if half { (value + 0.5) * scale - 0.5 } else { value * scale };
    let lower = (scaled.floor() as i32).max(0) as usize;
    let upper = (scaled.ceil() as i32).min(size as i32 - 1).max(0) as usize;
    (scaled, lower, upper)
}

fn interp_int(value: i32, scale10: i32, half: bool, size: usize) -> (i32, usize, usize) {
    let scaled = if half { value * scale10 + scale10 / 2 - (1 << 9) } else { value * scale10 };
    let lower = (scaled / (1 << 10)).max(0) as usize;
    let upper = ((scaled + (1 << 10) - 1) / (1 << 10)).min(size as i32 - 1).max(0) as usize;
    (scaled, lower, upper)
}

fn nearest(v: usize, input: usize, output: usize, align: bool, half: bool) -> usize {
    let scale =
        if align && output > 1 { (input - 1) as f32 / (output - 1) as f32 } else { input as f32 / output as f32 };
    let offset = if half { 0.5 } else { 0.0 };
    let x = (v as f32 + offset) * scale;
    let r = if align { x.round() as i32 } else { x.floor() as i32 };
    let r = r.min(input as i32 - 1);
    r.max(0) as usize
}

impl Resize {
    fn scale(&self, input: usize, output: usize) -> f32 {
        if self.align && output > 1 {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            input as f32 / output as f32
        }
    }
    fn scale10(&self, input: usize, output: usize) -> i32 {
        let (i, o) = (input as i32, output as i32);
        if self.align && output > 1 {
            ((1 << 10) * (i - 1) + (o - 1) / 2) / (o - 1)
        } else {
            ((1 << 10) * i + o / 2) / o
        }
    }
    fn at(&self, b: usize, y: usize, x: usize, c: usize) -> usize {
        ((b * self.ih + y) * self.iw + x) * self.c + c
    }
}

impl Kernel for Resize {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input = io.ins[0];
        if !self.bilinear {
            let es = match self.elem {
                Elem::F32 => 4,
                _ => 1,
            };
            let out = &mut *io.outs[0];
            for b in 0..self.n {
                for y in 0..self.oh {
                    let iy = nearest(y, self.ih, self.oh, self.align, self.half);
                    for x in 0..self.ow {
                        let ix = nearest(x, self.iw, self.ow, self.align, self.half);
                        let src = self.at(b, iy, ix, 0) * es;
                        let dst = ((b * self.oh + y) * self.ow + x) * self.c * es;
                        out[dst..dst + self.c * es].copy_from_slice(&input[src..src + self.c * es]);
                    }
                }
            }
            return Ok(());
        }
        match self.elem {
            Elem::I8 => {
                let (hs, ws) = (self.scale10(self.ih, self.oh), self.scale10(self.iw, self.ow));
                let q = Q8::I8;
                // Output rows (batch * out_h + y) spread over the threads.
                let row_len = self.ow * self.c;
                io.par.rows(&mut *io.outs[0], row_len, 4, &mut [], |first, rows, _| {
                    for (r, out_row) in rows.chunks_mut(row_len.max(1)).enumerate() {
                        let (b, y) = ((first + r) / self.oh, (first + r) % self.oh);
                        let (iy, y0, y1) = interp_int(y as i32, hs, self.half, self.ih);
                        for x in 0..self.ow {
                            let (ix, x0, x1) = interp_int(x as i32, ws, self.half, self.iw);
                            let dy = (iy - (1 << 10) * y0 as i32) as i64;
                            let dx = (ix - (1 << 10) * x0 as i32) as i64;
                            for c in 0..self.c {
                                let v = |yy, xx| q.get(input, self.at(b, yy, xx, c)) as i64;
                                let o20 = v(y0, x0) * ((1 << 10) - dy) * ((1 << 10) - dx)
                                    + v(y1, x0) * dy * ((1 << 10) - dx)
                                    + v(y0, x1) * ((1 << 10) - dy) * dx
                                    + v(y1, x1) * dy * dx;
                                let round = if o20 > 0 { 1i64 << 19 } else { -(1i64 << 19) };
                                out_row[x * self.c + c] = ((o20 + round) / (1 << 20)) as i8 as u8;
                            }
                        }
                    }
                });
            }
            Elem::U8 if self.reference => {
                let out = &mut *io.outs[0];
                self.bilinear_float(|i| input[i] as f32, |i, v| out[i] = v as u8, 0.5);
            }
            Elem::U8 => {
                // Output rows spread over the threads; each row is independent.
                let row_len = self.ow * self.c;
                let w = self.iw * self.c;
                io.par.rows(&mut *io.outs[0], row_len, 8, io.scratch, |first, rows, scratch| {
                    let rows_f: &mut [f32] = bytemuck::cast_slice_mut(&mut scratch[..2 * w * 4]);
                    // AVX2, not AVX-512: compiled for AVX-512 the row loop took 12.5 ms instead of
                    // 7.2 in deeplabv3's 513x513x21 upsampling.
                    crate::cpu::gemm::with_avx2(|| {
                        for (r, out_row) in rows.chunks_mut(row_len.max(1)).enumerate() {
                            self.bilinear_u8_row(input, first + r, out_row, rows_f);
                        }
                    })
                });
            }
            Elem::F32 => {
                let x: &[f32] = cast(input)?;
                let out: &mut [f32] = cast_mut(io.outs[0])?;
                self.bilinear_float(|i| x[i], |i, v| out[i] = v, 0.0);
            }
        }
        Ok(())
    }
}

impl Resize {
    /// One uint8 output row (`row` = batch * out_h + y), same float arithmetic as
    /// [`Resize::bilinear_float`]: the products `in * (1 - dy)` and `in * dy` of the two source
    /// rows are computed once per source column into `rows_f` (they are the same values the
    /// per-pixel expression computes first), then combined per output pixel in the same order.
    #[inline(always)]
    fn bilinear_u8_row(&self, input: &[u8], row: usize, out: &mut [u8], rows_f: &mut [f32]) {
        let (b, y) = (row / self.oh, row % self.oh);
        let (y0, y1, iy) = self.ys[y];
        let dy = iy - y0 as f32;
        let c = self.c;
        let w = self.iw * c;
        let (top, bottom) = rows_f[..2 * w].split_at_mut(w);
        let r0 = &input[self.at(b, y0, 0, 0)..][..w];
        let r1 = &input[self.at(b, y1, 0, 0)..][..w];
        for i in 0..w {
            top[i] = r0[i] as f32 * (1.0 - dy);
            bottom[i] = r1[i] as f32 * dy;
        }
        for (x, &(x0, x1, ix)) in self.xs.iter().enumerate() {
            let dx = ix - x0 as f32;
            let (t0, b0) = (&top[x0 * c..][..c], &bottom[x0 * c..][..c]);
            let (t1, b1) = (&top[x1 * c..][..c], &bottom[x1 * c..][..c]);
            let dst = &mut out[x * c..(x + 1) * c];
            for i in 0..c {
                let v = t0[i] * (1.0 - dx) + b0[i] * (1.0 - dx) + t1[i] * dx + b1[i] * dx + 0.5;
                dst[i] = v as u8;
            }
        }
    }

    fn bilinear_float(&self, get: impl Fn(usize) -> f32, mut put: impl FnMut(usize, f32), rounding: f32) {
        for b in 0..self.n {
            for (y, &(y0, y1, iy)) in self.ys.iter().enumerate() {
                let dy = iy - y0 as f32;
                for (x, &(x0, x1, ix)) in self.xs.iter().enumerate() {
                    let dx = ix - x0 as f32;
                    let (a, bb, cc, d) =
                        (self.at(b, y0, x0, 0), self.at(b, y1, x0, 0), self.at(b, y0, x1, 0), self.at(b, y1, x1, 0));
                    let o = ((b * self.oh + y) * self.ow + x) * self.c;
                    for c in 0..self.c {
                        let v = get(a + c) * (1.0 - dy) * (1.0 - dx)
                            + get(bb + c) * dy * (1.0 - dx)
                            + get(cc + c) * (1.0 - dy) * dx
                            + get(d + c) * dy * dx
                            + rounding;
                        put(o + c, v);
                    }
                }
            }
        }
    }
}
