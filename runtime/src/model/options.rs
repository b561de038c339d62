//! Builtin operator options, decoded once at load time.
//!
//! TFLite stores each operator's options as a union of ~130 tables. The interpreter needs a
//! handful of fields from the tables of the ops it implements; they are read here, through the
//! verified flatbuffer, into one flat [`OpOptions`] value whose fields keep TFLite's defaults when
//! a table (or a field) is absent.

use super::tflite_generated::tflite as fb;
use crate::fb::get_bool;

/// Padding scheme of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Output size `ceil(in / stride)`, input padded evenly (extra on the bottom/right).
    #[default]
    Same,
    /// No padding.
    Valid,
}

/// Fused activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, -1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
    /// tanh.
    Tanh,
    /// Sign bit.
    SignBit,
    /// An activation value this runtime does not know.
    Unknown(i8),
}

impl Activation {
    fn from_fb(a: fb::ActivationFunctionType) -> Activation {
        match a.0 {
            0 => Activation::None,
            1 => Activation::Relu,
            2 => Activation::ReluN1To1,
            3 => Activation::Relu6,
            4 => Activation::Tanh,
            5 => Activation::SignBit,
            v => Activation::Unknown(v),
        }
    }
}

/// The options of one builtin operator that the CPU interpreter reads. Fields that do not apply
/// to an operator keep their defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpOptions {
    /// Padding (CONV_2D, DEPTHWISE_CONV_2D, pools, TRANSPOSE_CONV).
    pub padding: Padding,
    /// Horizontal stride.
    pub stride_w: i32,
    /// Vertical stride.
    pub stride_h: i32,
    /// Horizontal dilation (1 when absent).
    pub dilation_w: i32,
    /// Vertical dilation (1 when absent).
    pub dilation_h: i32,
    /// Pool filter width.
    pub filter_w: i32,
    /// Pool filter height.
    pub filter_h: i32,
    /// DEPTHWISE_CONV_2D depth multiplier.
    pub depth_multiplier: i32,
    /// Fused activation.
    pub activation: Activation,
    /// Axis (CONCATENATION, PACK, UNPACK, GATHER).
    pub axis: i32,
    /// GATHER batch_dims.
    pub batch_dims: i32,
    /// Count (SPLIT num_splits, PACK values_count, UNPACK num).
    pub num: i32,
    /// Reducers and FULLY_CONNECTED (keep_num_dims): keep reduced dimensions.
    pub keep_dims: bool,
    /// RESIZE_*: align corners.
    pub align_corners: bool,
    /// RESIZE_*: half-pixel centres.
    pub half_pixel_centers: bool,
    /// SOFTMAX beta.
    pub beta: f32,
    /// LEAKY_RELU alpha.
    pub alpha: f32,
    /// RESHAPE new_shape, when given in the options.
    pub new_shape: Option<Vec<i32>>,
    /// SQUEEZE squeeze_dims.
    pub squeeze_dims: Vec<i32>,
    /// STRIDED_SLICE begin mask.
    pub begin_mask: i32,
    /// STRIDED_SLICE end mask.
    pub end_mask: i32,
    /// STRIDED_SLICE ellipsis mask.
    pub ellipsis_mask: i32,
    /// STRIDED_SLICE new-axis mask.
    pub new_axis_mask: i32,
    /// STRIDED_SLICE shrink-axis mask.
    pub shrink_axis_mask: i32,
    /// STRIDED_SLICE `offset` flag (end is relative to begin).
    pub offset: bool,
    /// ARG_MAX/ARG_MIN output type (TFLite tensor type number).
    pub output_type: i8,
    /// LSTM cell clip.
    pub cell_clip: f32,
    /// LSTM projection clip.
    pub proj_clip: f32,
    /// Sequence ops: time-major layout.
    pub time_major: bool,
    /// Hybrid ops: asymmetric input quantization.
    pub asymmetric_quantize_inputs: bool,
    /// SPACE_TO_DEPTH / DEPTH_TO_SPACE block size.
    pub block_size: i32,
    /// FULLY_CONNECTED weights format (0 = default).
    pub weights_format: i8,
}

/// Reads the options the interpreter uses from one operator table.
pub(super) fn decode(op: &fb::Operator<'_>) -> OpOptions {
    let mut o = OpOptions { dilation_w: 1, dilation_h: 1, beta: 1.0, ..OpOptions::default() };
    let pad = |p: fb::Padding| if p == fb::Padding::VALID { Padding::Valid } else { Padding::Same };
    let act = Activation::from_fb;
    if let Some(x) = op.builtin_options_as_conv_2_doptions() {
        o.padding = pad(x.padding());
        o.stride_w = x.stride_w();
        o.stride_h = x.stride_h();
        o.dilation_w = x.dilation_w_factor();
        o.dilation_h = x.dilation_h_factor();
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_depthwise_conv_2_doptions() {
        o.padding = pad(x.padding());
        o.stride_w = x.stride_w();
        o.stride_h = x.stride_h();
        o.dilation_w = x.dilation_w_factor();
        o.dilation_h = x.dilation_h_factor();
        o.depth_multiplier = x.depth_multiplier();
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_pool_2_doptions() {
        o.padding = pad(x.padding());
        o.stride_w = x.stride_w();
        o.stride_h = x.stride_h();
        o.filter_w = x.filter_width();
        o.filter_h = x.filter_height();
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_transpose_conv_options() {
        o.padding = pad(x.padding());
        o.stride_w = x.stride_w();
        o.stride_h = x.stride_h();
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_fully_connected_options() {
        o.activation = act(x.fused_activation_function());
        o.weights_format = x.weights_format().0;
        o.keep_dims = get_bool(&x._tab, fb::FullyConnectedOptions::VT_KEEP_NUM_DIMS);
        o.asymmetric_quantize_inputs = get_bool(&x._tab, fb::FullyConnectedOptions::VT_ASYMMETRIC_QUANTIZE_INPUTS);
    } else if let Some(x) = op.builtin_options_as_concatenation_options() {
        o.axis = x.axis();
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_add_options() {
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_sub_options() {
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_mul_options() {
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_div_options() {
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_l2_norm_options() {
        o.activation = act(x.fused_activation_function());
    } else if let Some(x) = op.builtin_options_as_reshape_options() {
        o.new_shape = x.new_shape().map(|v| v.iter().collect());
    } else if let Some(x) = op.builtin_options_as_softmax_options() {
        o.beta = x.beta();
    } else if let Some(x) = op.builtin_options_as_leaky_relu_options() {
        o.alpha = x.alpha();
    } else if let Some(x) = op.builtin_options_as_resize_bilinear_options() {
        o.align_corners = get_bool(&x._tab, fb::ResizeBilinearOptions::VT_ALIGN_CORNERS);
        o.half_pixel_centers = get_bool(&x._tab, fb::ResizeBilinearOptions::VT_HALF_PIXEL_CENTERS);
    } else if let Some(x) = op.builtin_options_as_resize_nearest_neighbor_options() {
        o.align_corners = get_bool(&x._tab, fb::ResizeNearestNeighborOptions::VT_ALIGN_CORNERS);
        o.half_pixel_centers = get_bool(&x._tab, fb::ResizeNearestNeighborOptions::VT_HALF_PIXEL_CENTERS);
    } else if let Some(x) = op.builtin_options_as_reducer_options() {
        o.keep_dims = get_bool(&x._tab, fb::ReducerOptions::VT_KEEP_DIMS);
    } else if let Some(x) = op.builtin_options_as_gather_options() {
        o.axis = x.axis();
        o.batch_dims = x.batch_dims();
    } else if let Some(x) = op.builtin_options_as_split_options() {
        o.num = x.num_splits();
    } else if let Some(x) = op.builtin_options_as_pack_options() {
        o.num = x.values_count();
        o.axis = x.axis();
    } else if let Some(x) = op.builtin_options_as_unpack_options() {
        o.num = x.num();
        o.axis = x.axis();
    } else if let Some(x) = op.builtin_options_as_arg_max_options() {
        o.output_type = x.output_type().0;
    } else if let Some(x) = op.builtin_options_as_arg_min_options() {
        o.output_type = x.output_type().0;
    } else if let Some(x) = op.builtin_options_as_unidirectional_sequence_lstmoptions() {
        o.activation = act(x.fused_activation_function());
        o.cell_clip = x.cell_clip();
        o.proj_clip = x.proj_clip();
        o.time_major = get_bool(&x._tab, fb::UnidirectionalSequenceLSTMOptions::VT_TIME_MAJOR);
        o.asymmetric_quantize_inputs =
            get_bool(&x._tab, fb::UnidirectionalSequenceLSTMOptions::VT_ASYMMETRIC_QUANTIZE_INPUTS);
    } else if let Some(x) = op.builtin_options_as_strided_slice_options() {
        o.begin_mask = x.begin_mask();
        o.end_mask = x.end_mask();
        o.ellipsis_mask = x.ellipsis_mask();
        o.new_axis_mask = x.new_axis_mask();
        o.shrink_axis_mask = x.shrink_axis_mask();
        o.offset = get_bool(&x._tab, fb::StridedSliceOptions::VT_OFFSET);
    } else if let Some(x) = op.builtin_options_as_squeeze_options() {
        o.squeeze_dims = x.squeeze_dims().map(|v| v.iter().collect()).unwrap_or_default();
    } else if let Some(x) = op.builtin_options_as_space_to_depth_options() {
        o.block_size = x.block_size();
    } else if let Some(x) = op.builtin_options_as_depth_to_space_options() {
        o.block_size = x.block_size();
    }
    o
}
