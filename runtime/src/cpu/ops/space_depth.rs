//! SPACE_TO_DEPTH and DEPTH_TO_SPACE, for any fixed-size element type: each a strided view of
//! the 4-D input seen as 6-D.

use super::view::{io_types, view};
use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_depth_space(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let bs = ctx.options.block_size;
    let &[b, h, w, c] = x.shape.as_slice() else {
        return Err(ctx.err(format!("the input must be 4-D, not {:?}", x.shape)));
    };
    if bs < 1 {
        return Err(ctx.err(format!("block size {bs}")));
    }
    let bs = bs as usize;
    let (sb, sh, sw) = ((h * w * c) as isize, (w * c) as isize, c as isize);
    // The output dimensions multiply by the block size (squared): an absurd one must not overflow.
    let grow = |v: usize, by: usize| v.checked_mul(by).ok_or_else(|| ctx.err(format!("block size {bs} is too large")));
    let bs2 = grow(bs, bs)?;
    let (dims, strides, out) = if ctx.op_name == "SPACE_TO_DEPTH" {
        if h % bs != 0 || w % bs != 0 {
            return Err(ctx.err(format!("height {h} and width {w} must be multiples of the block size {bs}")));
        }
        let bsi = bs as isize;
        (
            vec![b, h / bs, w / bs, bs, bs, c],
            vec![sb, bsi * sh, bsi * sw, sh, sw, 1],
            vec![b, h / bs, w / bs, grow(c, bs2)?],
        )
    } else {
        if c % bs2 != 0 {
            return Err(ctx.err(format!("depth {c} must be a multiple of the squared block size {bs}")));
        }
        let co = c / bs2;
        let out = vec![b, grow(h, bs)?, grow(w, bs)?, co];
        (vec![b, h, bs, w, bs, co], vec![sb, sh, (bs * co) as isize, sw, co as isize, 1], out)
    };
    ctx.outputs[0].shape = out;
    view(ctx, es, x.num_elements(), 0, &dims, &strides)
}
