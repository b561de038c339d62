//! Not implemented yet.

use crate::cpu::kernel::{BuildCtx, Built};
use crate::error::Result;

pub(crate) fn build_add_sub(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_mul(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_div(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_floor_div(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_sqrt(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_cast(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_quantize(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_dequantize(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}

pub(crate) fn build_relu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    Err(ctx.err("not implemented yet in this runtime"))
}
