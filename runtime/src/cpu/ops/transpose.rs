//! TRANSPOSE, for any fixed-size element type: a view of the input with permuted strides.

use super::view::{const_ints, io_types, strides_of, view};
use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_transpose(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    let perm = const_ints(ctx, 1)?;
    let rank = x.shape.len();
    let mut seen = vec![false; rank];
    for &p in &perm {
        if p < 0 || p as usize >= rank || std::mem::replace(&mut seen[p as usize], true) {
            return Err(ctx.err(format!("perm {perm:?} is not a permutation of the {rank} input dimensions")));
        }
    }
    if perm.len() != rank {
        return Err(ctx.err(format!("perm {perm:?} does not match the input rank {rank}")));
    }
    let st = strides_of(&x.shape);
    let dims: Vec<usize> = perm.iter().map(|&p| x.shape[p as usize]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| st[p as usize]).collect();
    ctx.outputs[0].shape = dims.clone();
    view(ctx, es, x.num_elements(), 0, &dims, &strides)
}
