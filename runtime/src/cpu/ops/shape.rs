//! Not implemented yet.

use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_reshape(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_concatenation(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_split(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_pack(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_unpack(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_pad(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_gather_nd(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}
