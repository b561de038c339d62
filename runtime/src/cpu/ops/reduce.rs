//! Not implemented yet.

use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_mean(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_arg_min_max(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}
