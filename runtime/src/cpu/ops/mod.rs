//! The op registry: one builder per operator, chosen by name and tensor types.
// Kernels index several arrays with one loop variable, as the reference kernels they mirror do.
#![allow(clippy::needless_range_loop)]

use super::kernel::{BuildCtx, Built};
use crate::error::Result;

mod activation;
pub(crate) mod common;
mod conv;
mod conv_common;
#[cfg(test)]
mod conv_tests;
mod depthwise;
mod detection;
mod elementwise;
#[cfg(test)]
mod fast_tests;
mod fully_connected;
mod l2_norm;
mod lstm;
mod lstm_math;
mod minmax;
mod nonlinear;
mod pool;
mod posenet;
mod reduce;
mod resize;
mod shape;
mod slice;
mod space_batch;
mod space_depth;
#[cfg(test)]
mod test_util;
mod tile;
mod transpose;
mod transpose_conv;
mod view;

/// Builds the kernel of one node. Fails with the op, version, types and node index when the
/// runtime has no kernel for it.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    match ctx.op_name {
        "CONV_2D" => conv::build_conv(ctx),
        "DEPTHWISE_CONV_2D" => depthwise::build_depthwise(ctx),
        "FULLY_CONNECTED" => fully_connected::build_fully_connected(ctx),
        "AVERAGE_POOL_2D" => pool::build_average(ctx),
        "MAX_POOL_2D" => pool::build_max(ctx),
        "ADD" | "SUB" => elementwise::build_add_sub(ctx),
        "MUL" => elementwise::build_mul(ctx),
        "DIV" => elementwise::build_div(ctx),
        "FLOOR_DIV" => elementwise::build_floor_div(ctx),
        "SQRT" => elementwise::build_sqrt(ctx),
        "CAST" => elementwise::build_cast(ctx),
        "QUANTIZE" => elementwise::build_quantize(ctx),
        "DEQUANTIZE" => elementwise::build_dequantize(ctx),
        "RELU" | "RELU6" | "RELU_N1_TO_1" => elementwise::build_relu(ctx),
        "SOFTMAX" => activation::build_softmax(ctx),
        "LOGISTIC" => activation::build_logistic(ctx),
        "RESHAPE" | "SQUEEZE" => shape::build_reshape(ctx),
        "CONCATENATION" => shape::build_concatenation(ctx),
        "SPLIT" => shape::build_split(ctx),
        "PACK" => shape::build_pack(ctx),
        "UNPACK" => shape::build_unpack(ctx),
        "PAD" | "PADV2" => shape::build_pad(ctx),
        "GATHER" => shape::build_gather(ctx),
        "GATHER_ND" => shape::build_gather_nd(ctx),
        "MEAN" => reduce::build_mean(ctx, false),
        "SUM" => reduce::build_mean(ctx, true),
        "ARG_MAX" | "ARG_MIN" => reduce::build_arg_min_max(ctx),
        "RESIZE_BILINEAR" => resize::build_bilinear(ctx),
        "RESIZE_NEAREST_NEIGHBOR" => resize::build_nearest(ctx),
        "UNIDIRECTIONAL_SEQUENCE_LSTM" => lstm::build(ctx),
        "TFLite_Detection_PostProcess" => detection::build(ctx),
        "PosenetDecoderOp" => posenet::build(ctx),
        "HARD_SWISH" => nonlinear::build_hard_swish(ctx),
        "TANH" => nonlinear::build_tanh(ctx),
        "LEAKY_RELU" => nonlinear::build_leaky_relu(ctx),
        "PRELU" => nonlinear::build_prelu(ctx),
        "MAXIMUM" | "MINIMUM" => minmax::build_max_min(ctx),
        "L2_NORMALIZATION" => l2_norm::build_l2_norm(ctx),
        "STRIDED_SLICE" => slice::build_strided_slice(ctx),
        "SLICE" => slice::build_slice(ctx),
        "TRANSPOSE" => transpose::build_transpose(ctx),
        "TILE" => tile::build_tile(ctx),
        "BATCH_TO_SPACE_ND" => space_batch::build_batch_to_space(ctx),
        "SPACE_TO_BATCH_ND" => space_batch::build_space_to_batch(ctx),
        "SPACE_TO_DEPTH" | "DEPTH_TO_SPACE" => space_depth::build_depth_space(ctx),
        "TRANSPOSE_CONV" => transpose_conv::build(ctx),
        "edgetpu-custom-op" => Err(ctx.err(
            "this is an Edge TPU step: run the model on an Edge TPU (edgetpu::Interpreter with a device, or a \
             simulator), or run the CPU model it was compiled from (the *_quant.tflite twin) on the CPU",
        )),
        _ => Err(ctx.err("no CPU kernel for this op in this runtime")),
    }
}
