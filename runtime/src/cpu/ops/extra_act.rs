//! Not implemented yet.

use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}
