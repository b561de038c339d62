//! BATCH_TO_SPACE_ND and SPACE_TO_BATCH_ND for 3-D and 4-D inputs of any fixed-size element
//! type: copies of whole pixels between the batch and the spatial blocks, with crops or padding.

use super::view::{const_i32, io_types};
use crate::cpu::kernel::{BuildCtx, Built, Io, Kernel};
use crate::error::Result;
use crate::model::TensorType;

/// NHWC geometry of the batch ops (a 3-D input is N,H,1,C).
#[derive(Clone, Copy)]
struct BatchGeom {
    es: usize,
    in_nhw: [usize; 3],
    out_nhw: [usize; 3],
    depth: usize,
    block: [usize; 2],
    /// Crops (batch-to-space) or paddings (space-to-batch): top, left.
    before: [usize; 2],
}

/// Checks the 3-D/4-D input and the `[M]` block and `[M, 2]` crops/paddings constants.
fn batch_geom(ctx: &BuildCtx<'_>, what: &str) -> Result<(BatchGeom, [[usize; 2]; 2])> {
    let (x, es) = io_types(ctx)?;
    let (block, pads) = (const_i32(ctx, 1)?, const_i32(ctx, 2)?);
    let (n, h, w, depth) = match x.shape.as_slice() {
        &[n, h, w, c] => (n, h, w, c),
        &[n, h, c] => (n, h, 1, c),
        s => return Err(ctx.err(format!("the input must be 3-D or 4-D, not {s:?}"))),
    };
    let m = x.shape.len() - 2;
    if block.len() != m || pads.len() != 2 * m {
        return Err(ctx.err(format!("{m} spatial dimensions need {m} block sizes and {m}x2 {what}")));
    }
    if block.iter().any(|&b| b < 1) || pads.iter().any(|&p| p < 0) {
        return Err(ctx.err(format!("block sizes {block:?} must be >= 1 and {what} {pads:?} >= 0")));
    }
    let get = |v: &[i64], i: usize, default: usize| v.get(i).map_or(default, |&x| x as usize);
    let g = BatchGeom {
        es,
        in_nhw: [n, h, w],
        out_nhw: [0; 3],
        depth,
        block: [block[0] as usize, get(&block, 1, 1)],
        before: [pads[0] as usize, get(&pads, 2, 0)],
    };
    Ok((g, [[pads[0] as usize, pads[1] as usize], [get(&pads, 2, 0), get(&pads, 3, 0)]]))
}

/// Output shape in the input's rank.
fn batch_out_shape(rank: usize, g: &BatchGeom) -> Vec<usize> {
    let [n, h, w] = g.out_nhw;
    if rank == 4 {
        vec![n, h, w, g.depth]
    } else {
        vec![n, h, g.depth]
    }
}

struct BatchToSpace {
    g: BatchGeom,
}

impl Kernel for BatchToSpace {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = &self.g;
        let (x, y) = (io.ins[0], &mut *io.outs[0]);
        let row = g.depth * g.es;
        let ([in_n, in_h, in_w], [out_n, out_h, out_w]) = (g.in_nhw, g.out_nhw);
        for ib in 0..in_n {
            let (ob, spatial) = (ib % out_n, ib / out_n);
            let (dh, dw) = (spatial / g.block[1], spatial % g.block[1]);
            for ih in 0..in_h {
                let Some(oh) = (ih * g.block[0] + dh).checked_sub(g.before[0]).filter(|&v| v < out_h) else {
                    continue;
                };
                for iw in 0..in_w {
                    let Some(ow) = (iw * g.block[1] + dw).checked_sub(g.before[1]).filter(|&v| v < out_w) else {
                        continue;
                    };
                    let src = ((ib * in_h + ih) * in_w + iw) * row;
                    let dst = ((ob * out_h + oh) * out_w + ow) * row;
                    y[dst..dst + row].copy_from_slice(&x[src..src + row]);
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn build_batch_to_space(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (mut g, crops) = batch_geom(ctx, "crops")?;
    let prod = g.block[0].checked_mul(g.block[1]).ok_or_else(|| ctx.err("the block sizes are too large"))?;
    let [n, h, w] = g.in_nhw;
    if n % prod != 0 {
        return Err(ctx.err(format!("batch {n} is not a multiple of the block size product {prod}")));
    }
    let crop = |size: usize, k: usize| size.checked_mul(g.block[k])?.checked_sub(crops[k][0] + crops[k][1]);
    let (Some(oh), Some(ow)) = (crop(h, 0), crop(w, 1)) else {
        return Err(ctx.err(format!("crops {crops:?} exceed the output size")));
    };
    g.out_nhw = [n / prod, oh, ow];
    ctx.outputs[0].shape = batch_out_shape(ctx.input(0)?.shape.len(), &g);
    Built::new(BatchToSpace { g })
}

struct SpaceToBatch {
    g: BatchGeom,
    pad: u8,
}

impl Kernel for SpaceToBatch {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let g = &self.g;
        let (x, y) = (io.ins[0], &mut *io.outs[0]);
        let row = g.depth * g.es;
        let ([in_n, in_h, in_w], [out_n, out_h, out_w]) = (g.in_nhw, g.out_nhw);
        for ob in 0..out_n {
            let ib = ob % in_n;
            let (sh, sw) = ((ob / in_n) / g.block[1], (ob / in_n) % g.block[1]);
            for oh in 0..out_h {
                for ow in 0..out_w {
                    let dst = ((ob * out_h + oh) * out_w + ow) * row;
                    let out = &mut y[dst..dst + row];
                    let h = (oh * g.block[0] + sh).checked_sub(g.before[0]).filter(|&v| v < in_h);
                    let w = (ow * g.block[1] + sw).checked_sub(g.before[1]).filter(|&v| v < in_w);
                    match (h, w) {
                        (Some(h), Some(w)) => {
                            let src = ((ib * in_h + h) * in_w + w) * row;
                            out.copy_from_slice(&x[src..src + row]);
                        }
                        _ => out.fill(self.pad),
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn build_space_to_batch(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (mut g, pads) = batch_geom(ctx, "paddings")?;
    let [n, h, w] = g.in_nhw;
    let batch = n.checked_mul(g.block[0]).and_then(|b| b.checked_mul(g.block[1]));
    let mut out = [batch.ok_or_else(|| ctx.err(format!("block sizes {:?} are too large", g.block)))?, 0, 0];
    for (k, size) in [h, w].into_iter().enumerate() {
        let padded = size + pads[k][0] + pads[k][1];
        if padded % g.block[k] != 0 {
            return Err(ctx.err(format!("padded size {padded} is not a multiple of the block size {}", g.block[k])));
        }
        out[k + 1] = padded / g.block[k];
    }
    g.out_nhw = out;
    let y = ctx.output(0)?;
    // TFLite pads quantized 8-bit tensors with the output zero point, everything else with zeros.
    let pad = match (y.dtype, &y.quant) {
        (TensorType::UINT8 | TensorType::INT8, Some(q)) => q.zero_point() as u8,
        _ => 0,
    };
    ctx.outputs[0].shape = batch_out_shape(ctx.input(0)?.shape.len(), &g);
    Built::new(SpaceToBatch { g, pad })
}
