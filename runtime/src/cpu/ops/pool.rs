//! AVERAGE_POOL_2D and MAX_POOL_2D (uint8, int8, float32), as TFLite's reference pooling.

use super::common::{dims4, out_size_and_pad, positive, set_output_shape, Q8};
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant;
use crate::error::Result;
use crate::model::TensorType;

#[derive(Clone, Copy)]
enum Elem {
    Q(Q8),
    F32,
}

struct Pool {
    max: bool,
    elem: Elem,
    n: usize,
    ih: usize,
    iw: usize,
    c: usize,
    oh: usize,
    ow: usize,
    fh: usize,
    fw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    act: (i32, i32),
    act_f: (f32, f32),
}

fn build(ctx: &mut BuildCtx<'_>, max: bool) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let elem = match input.dtype {
        TensorType::FLOAT32 => Elem::F32,
        t => Elem::Q(Q8::of(ctx, t)?),
    };
    if ctx.output(0)?.dtype != input.dtype {
        return Err(ctx.err("input and output types differ"));
    }
    let [n, ih, iw, c] = dims4(ctx, &input, "input")?;
    let o = ctx.options.clone();
    let (sh, sw) = (positive(ctx, "stride_h", o.stride_h)?, positive(ctx, "stride_w", o.stride_w)?);
    let (fh, fw) = (positive(ctx, "filter_height", o.filter_h)?, positive(ctx, "filter_width", o.filter_w)?);
    let (oh, ph) = out_size_and_pad(o.padding, ih, fh, sh, 1);
    let (ow, pw) = out_size_and_pad(o.padding, iw, fw, sw, 1);
    set_output_shape(ctx, 0, vec![n, oh, ow, c])?;
    let out = ctx.output(0)?.clone();
    let act = match elem {
        Elem::Q(_) => {
            let (s, z) = out.qparams()?;
            let (lo, hi) = quant::type_range(out.dtype);
            quant::activation_range_quantized(o.activation, s, z, lo, hi)
        }
        Elem::F32 => (0, 0),
    };
    let act_f = quant::activation_range_f32(o.activation);
    Built::new(Pool { max, elem, n, ih, iw, c, oh, ow, fh, fw, sh, sw, ph, pw, act, act_f })
}

pub(crate) fn build_average(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    build(ctx, false)
}

pub(crate) fn build_max(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    build(ctx, true)
}

impl Pool {
    /// Window of output (oy, ox): clipped filter ranges.
    fn window(&self, oy: usize, ox: usize) -> (usize, usize, usize, usize, isize, isize) {
        let iy0 = (oy * self.sh) as isize - self.ph as isize;
        let ix0 = (ox * self.sw) as isize - self.pw as isize;
        let fy0 = (-iy0).max(0) as usize;
        let fy1 = (self.ih as isize - iy0).clamp(0, self.fh as isize) as usize;
        let fx0 = (-ix0).max(0) as usize;
        let fx1 = (self.iw as isize - ix0).clamp(0, self.fw as isize) as usize;
        (fy0, fy1, fx0, fx1, iy0, ix0)
    }
}

impl Kernel for Pool {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let input = io.ins[0];
        match self.elem {
            Elem::Q(q) => {
                let out = &mut *io.outs[0];
                for b in 0..self.n {
                    for oy in 0..self.oh {
                        for ox in 0..self.ow {
                            let (fy0, fy1, fx0, fx1, iy0, ix0) = self.window(oy, ox);
                            for ch in 0..self.c {
                                // TFLite sums in int32; i64 gives the same result wherever that
                                // does not overflow (huge windows), and never panics.
                                let mut acc: i64 = if self.max { i64::from(i32::MIN) } else { 0 };
                                let mut count = 0i64;
                                for fy in fy0..fy1 {
                                    for fx in fx0..fx1 {
                                        let iy = (iy0 + fy as isize) as usize;
                                        let ix = (ix0 + fx as isize) as usize;
                                        let v = q.get(input, ((b * self.ih + iy) * self.iw + ix) * self.c + ch) as i64;
                                        if self.max {
                                            acc = acc.max(v);
                                        } else {
                                            acc += v;
                                        }
                                        count += 1;
                                    }
                                }
                                let v = if self.max {
                                    acc
                                } else if count == 0 {
                                    0
                                } else if acc > 0 {
                                    (acc + count / 2) / count
                                } else {
                                    (acc - count / 2) / count
                                };
                                let v = v.clamp(self.act.0.into(), self.act.1.into()) as i32;
                                out[((b * self.oh + oy) * self.ow + ox) * self.c + ch] = q.put(v);
                            }
                        }
                    }
                }
            }
            Elem::F32 => {
                let input: &[f32] = cast(input)?;
                let out: &mut [f32] = cast_mut(io.outs[0])?;
                for b in 0..self.n {
                    for oy in 0..self.oh {
                        for ox in 0..self.ow {
                            let (fy0, fy1, fx0, fx1, iy0, ix0) = self.window(oy, ox);
                            for ch in 0..self.c {
                                let mut acc = if self.max { f32::MIN } else { 0.0 };
                                let mut count = 0;
                                for fy in fy0..fy1 {
                                    for fx in fx0..fx1 {
                                        let iy = (iy0 + fy as isize) as usize;
                                        let ix = (ix0 + fx as isize) as usize;
                                        let v = input[((b * self.ih + iy) * self.iw + ix) * self.c + ch];
                                        if self.max {
                                            acc = acc.max(v);
                                        } else {
                                            acc += v;
                                        }
                                        count += 1;
                                    }
                                }
                                let v = if self.max || count == 0 { acc } else { acc / count as f32 };
                                out[((b * self.oh + oy) * self.ow + ox) * self.c + ch] =
                                    v.clamp(self.act_f.0, self.act_f.1);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
