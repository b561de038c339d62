//! The per-operator rules of the offline check: whether one operator, taken alone, is something
//! the Edge TPU compiler maps, and if not, which rule says so.
//!
//! The rules follow Coral's list of supported operations and model requirements (8-bit tensors,
//! static shapes, constant parameters, at most three non-unit innermost dimensions, per-operator
//! limits; `docs/edgetpu-ops.md` has the table with its sources and the rule and test of each
//! limit), checked in the order the compiler's logs suggest: a float tensor is reported as an
//! unsupported data type before anything else (float `RESHAPE`, `ARG_MAX` with an int32 output,
//! `DEQUANTIZE` and float custom ops all get that status in real logs). The one exception is a
//! weights or bias input that is not constant, reported first as such, whatever its type.
//!
//! Operator versions are not checked: Coral documents no highest version per operator and
//! compiler, so "Operation version not supported" is never predicted.
//!
//! Where the documentation and real compiler output disagree, the compiler's behaviour wins and
//! the rule says so: `SOFTMAX` is documented as "1-D input only", yet compiler 16 maps the
//! multi-row softmax of YOLOv8's box decoder, so the limit is applied to the softmax axis.

use crate::check::Category;
use edgetpu::model::{Activation, TensorType};
use edgetpu::{Model, Operator, Subgraph, Tensor};

/// Why an operator does not map, by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmapped {
    /// The compiler status the rule corresponds to.
    pub category: Category,
    /// The rule that fired, with the tensor or value that broke it.
    pub detail: String,
}

fn unmapped(category: Category, detail: impl Into<String>) -> Result<(), Unmapped> {
    Err(Unmapped { category, detail: detail.into() })
}

fn limit(detail: impl Into<String>) -> Result<(), Unmapped> {
    unmapped(Category::Limitation, detail)
}

/// One row of Coral's table of supported operations ("TensorFlow models on the Edge TPU",
/// coral.ai/docs/edgetpu/models-intro/#supported-operations). `docs/edgetpu-ops.md` holds the
/// table with its limits and the sources for each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedOperation {
    /// The TFLite builtin operator, as model files and compiler logs name it.
    pub builtin: &'static str,
    /// The operation's name in Coral's table.
    pub coral_name: &'static str,
    /// The compiler release that added the operation, where a source says so: `"before 2.0"` for
    /// the rows of the first published table (2019), a compiler version otherwise; `None` where
    /// no source gives it.
    pub added_in: Option<&'static str>,
}

const fn row(builtin: &'static str, coral_name: &'static str, added_in: Option<&'static str>) -> SupportedOperation {
    SupportedOperation { builtin, coral_name, added_in }
}

/// In the first published table (2019), before compiler 2.0.
const FIRST_TABLE: Option<&str> = Some("before 2.0");
/// Release notes of runtime 13 and compiler 2.0.291256449 (January 2020).
const V2_0_291256449: Option<&str> = Some("2.0.291256449");

/// Coral's table of supported operations, in the table's order. An operator that is not here
/// stays on the CPU.
///
/// The LSTM row is the TFLite `UNIDIRECTIONAL_SEQUENCE_LSTM` ("unidirectional LSTM only"; the
/// compiled Keras LSTM of the test data maps it); the older TFLite `LSTM` builtin is not taken as
/// part of the row, as no source says the compiler maps it.
pub const SUPPORTED_OPERATIONS: &[SupportedOperation] = &[
    row("ADD", "Add", FIRST_TABLE),
    row("AVERAGE_POOL_2D", "AveragePool2d", FIRST_TABLE),
    row("CONCATENATION", "Concatenation", FIRST_TABLE),
    row("CONV_2D", "Conv2d", FIRST_TABLE),
    row("DEPTHWISE_CONV_2D", "DepthwiseConv2d", FIRST_TABLE),
    row("EXPAND_DIMS", "ExpandDims", V2_0_291256449),
    row("FULLY_CONNECTED", "FullyConnected", FIRST_TABLE),
    row("L2_NORMALIZATION", "L2Normalization", FIRST_TABLE),
    row("LOGISTIC", "Logistic", FIRST_TABLE),
    row("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", None),
    row("MAXIMUM", "Maximum", FIRST_TABLE),
    row("MAX_POOL_2D", "MaxPool2d", FIRST_TABLE),
    row("MEAN", "Mean", FIRST_TABLE),
    row("MINIMUM", "Minimum", FIRST_TABLE),
    row("MUL", "Mul", FIRST_TABLE),
    row("PACK", "Pack", V2_0_291256449),
    row("PAD", "Pad", FIRST_TABLE),
    row("PRELU", "PReLU", None),
    row("QUANTIZE", "Quantize", V2_0_291256449),
    row("REDUCE_MAX", "ReduceMax", None),
    row("REDUCE_MIN", "ReduceMin", None),
    row("RELU", "ReLU", FIRST_TABLE),
    row("RELU6", "ReLU6", FIRST_TABLE),
    row("RELU_N1_TO_1", "ReLUN1To1", FIRST_TABLE),
    row("RESHAPE", "Reshape", FIRST_TABLE),
    row("RESIZE_BILINEAR", "ResizeBilinear", FIRST_TABLE),
    row("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighbor", FIRST_TABLE),
    row("RSQRT", "Rsqrt", None),
    row("SLICE", "Slice", FIRST_TABLE),
    row("SOFTMAX", "Softmax", FIRST_TABLE),
    row("SPACE_TO_DEPTH", "SpaceToDepth", FIRST_TABLE),
    row("SPLIT", "Split", FIRST_TABLE),
    row("SQUEEZE", "Squeeze", FIRST_TABLE),
    row("STRIDED_SLICE", "StridedSlice", FIRST_TABLE),
    row("SUB", "Sub", FIRST_TABLE),
    row("SUM", "Sum", V2_0_291256449),
    row("SQUARED_DIFFERENCE", "Squared-difference", None),
    row("TANH", "Tanh", FIRST_TABLE),
    row("TRANSPOSE", "Transpose", Some("16.0")),
    row("TRANSPOSE_CONV", "TransposeConv", V2_0_291256449),
];

/// Whether `name` is a TFLite builtin of Coral's table.
fn is_supported(name: &str) -> bool {
    SUPPORTED_OPERATIONS.iter().any(|s| s.builtin == name)
}

/// Largest softmax axis the documentation allows.
const SOFTMAX_MAX_ELEMENTS: i64 = 16_000;

fn is_8bit(t: TensorType) -> bool {
    t == TensorType::INT8 || t == TensorType::UINT8
}

fn is_float(t: TensorType) -> bool {
    t == TensorType::FLOAT32 || t == TensorType::FLOAT16 || t == TensorType::FLOAT64
}

/// A short description of a tensor for reasons: `tensor 12 "conv/Relu6" [1, 8, 8, 3] int8`.
pub(crate) fn describe(t: &Tensor) -> String {
    format!("tensor {} {:?} {:?} {}", t.index, t.name, t.shape, t.dtype)
}

/// The operator's input tensors (omitted optional inputs skipped), with their input position.
fn inputs<'s>(sg: &'s Subgraph, op: &Operator) -> impl Iterator<Item = (usize, &'s Tensor)> + 's {
    let idx: Vec<(usize, usize)> = op.inputs.iter().enumerate().filter_map(|(k, i)| i.map(|i| (k, i))).collect();
    idx.into_iter().filter_map(move |(k, i)| sg.tensors.get(i).map(|t| (k, t)))
}

fn outputs<'s>(sg: &'s Subgraph, op: &Operator) -> impl Iterator<Item = &'s Tensor> + 's {
    let idx: Vec<usize> = op.outputs.iter().flatten().copied().collect();
    idx.into_iter().filter_map(move |i| sg.tensors.get(i))
}

fn input<'s>(sg: &'s Subgraph, op: &Operator, k: usize) -> Option<&'s Tensor> {
    op.inputs.get(k).copied().flatten().and_then(|i| sg.tensors.get(i))
}

/// Activation tensors: the non-constant, non-variable inputs and all outputs.
fn activations<'s>(sg: &'s Subgraph, op: &Operator) -> Vec<&'s Tensor> {
    let ins = inputs(sg, op).map(|(_, t)| t).filter(|t| !t.is_constant() && !t.is_variable);
    ins.chain(outputs(sg, op)).collect()
}

/// The integer values of a constant int32/int64 tensor.
fn const_ints(model: &Model, t: &Tensor) -> Option<Vec<i64>> {
    let data = model.tensor_data(t)?;
    if t.dtype == TensorType::INT32 {
        Some(data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
    } else if t.dtype == TensorType::INT64 {
        Some(
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )
    } else {
        None
    }
}

/// `axis` normalised against `rank` (negative axes count from the end).
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis + r } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank)
}

/// Whether the operator, taken alone, maps to the Edge TPU; if not, why.
pub(crate) fn op_rule(model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let name = model.op_name(op);
    // Before the data types: a computed (non-constant) int32 bias would otherwise be reported as
    // an int32 activation.
    constant_parameters(name, sg, op)?;
    data_types(name, sg, op)?;
    if !is_supported(name) {
        let custom = matches!(model.opcode(op).kind, edgetpu::model::OpKind::Custom(_));
        let what = if custom { "custom operator" } else { "builtin operator" };
        let mut detail = format!("{what} {name} is not in the Edge TPU's list of supported operations");
        if name == "BIDIRECTIONAL_SEQUENCE_LSTM" {
            detail.push_str(" (its LSTM row is for unidirectional LSTM only)");
        }
        return unmapped(Category::UnsupportedOperation, detail);
    }
    static_shapes(sg, op)?;
    ranks(sg, op)?;
    op_limits(name, model, sg, op)
}

/// The inputs that are parameters (filter, bias), by operator and input position, as the TFLite
/// schema orders them: `CONV_2D`, `DEPTHWISE_CONV_2D` and `FULLY_CONNECTED` take input, filter,
/// bias; `TRANSPOSE_CONV` takes output shape, filter, input, bias. Biases are optional for
/// `FULLY_CONNECTED` and `TRANSPOSE_CONV` (an omitted input is not checked).
fn parameter_inputs(name: &str) -> &'static [(usize, &'static str)] {
    match name {
        "CONV_2D" | "DEPTHWISE_CONV_2D" | "FULLY_CONNECTED" => &[(1, "weights"), (2, "bias")],
        "TRANSPOSE_CONV" => &[(1, "weights"), (3, "bias")],
        _ => &[],
    }
}

/// Requirement 3: model parameters (weights and biases) are constant at compile time.
fn constant_parameters(name: &str, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    for &(k, what) in parameter_inputs(name) {
        match input(sg, op, k) {
            Some(t) if !t.is_constant() => {
                return unmapped(
                    Category::NonConstantParameter,
                    format!("{name} {what} (input {k}) {} is not constant", describe(t)),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Requirement 1: 8-bit activations. Float constants are refused as well; int32 constants
/// (biases, shapes, axes) and variable tensors (LSTM state) are allowed.
fn data_types(name: &str, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    if name == "QUANTIZE" {
        let from_float = input(sg, op, 0).is_some_and(|t| is_float(t.dtype));
        if from_float && outputs(sg, op).all(|t| is_8bit(t.dtype)) {
            // Logs 08 and 12 (and the input QUANTIZE of the YOLO logs) report the float-to-int8
            // QUANTIZE at a model's input with this status, not as a data-type problem.
            return limit("QUANTIZE from a float tensor (the float-to-integer conversion stays on the CPU)");
        }
    }
    for (k, t) in inputs(sg, op) {
        if t.is_variable {
            continue;
        }
        let bad = if t.is_constant() { is_float(t.dtype) } else { !is_8bit(t.dtype) };
        if bad {
            return unmapped(
                Category::UnsupportedDataType,
                format!("input {k} is {}; only int8 and uint8 map", describe(t)),
            );
        }
    }
    for t in outputs(sg, op) {
        if !is_8bit(t.dtype) {
            return unmapped(Category::UnsupportedDataType, format!("output {}; only int8 and uint8 map", describe(t)));
        }
    }
    Ok(())
}

/// Requirement 2: tensor sizes are known at compile time.
fn static_shapes(sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    for t in activations(sg, op) {
        let dynamic = t.shape.iter().any(|&d| d < 0)
            || t.shape_signature.as_ref().is_some_and(|s| s.iter().skip(1).any(|&d| d < 0));
        if dynamic {
            return unmapped(
                Category::DynamicShape,
                format!(
                    "{} has a dynamic size (signature {:?})",
                    describe(t),
                    t.shape_signature.as_deref().unwrap_or(&[])
                ),
            );
        }
    }
    Ok(())
}

/// Requirement 4: only the three innermost dimensions may be larger than 1.
fn ranks(sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    for t in activations(sg, op) {
        let n = t.shape.len();
        if n > 3 && t.shape[..n - 3].iter().any(|&d| d != 1) {
            return unmapped(
                Category::UnsupportedRank,
                format!("{} has a dimension > 1 outside the 3 innermost", describe(t)),
            );
        }
    }
    Ok(())
}

fn fused_activation_ok(a: Activation) -> bool {
    matches!(a, Activation::None | Activation::Relu | Activation::Relu6 | Activation::ReluN1To1)
}

/// The per-operator limits of the supported-operations table.
fn op_limits(name: &str, model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let o = &op.options;
    // An LSTM's activation is its cell activation (tanh), not a fused output activation.
    if name != "UNIDIRECTIONAL_SEQUENCE_LSTM" && !fused_activation_ok(o.activation) {
        return limit(format!("fused {:?} activation", o.activation));
    }
    let in0 = input(sg, op, 0);
    let rank0 = in0.map_or(0, |t| t.shape.len());
    match name {
        "AVERAGE_POOL_2D" | "MAX_POOL_2D" | "CONCATENATION" if o.activation != Activation::None => {
            limit(format!("{name} with a fused {:?} activation", o.activation))
        }
        "CONV_2D" | "DEPTHWISE_CONV_2D" | "FULLY_CONNECTED" | "TRANSPOSE_CONV" => weights(name, sg, op),
        "CONCATENATION" => concatenation(model, sg, op),
        "MEAN" | "SUM" | "REDUCE_MAX" | "REDUCE_MIN" => reduction(name, model, sg, op),
        "PACK" => match norm_axis(i64::from(o.axis), rank0 + 1) {
            Some(0) => limit("PACK along the batch dimension (axis 0)"),
            _ => Ok(()),
        },
        "PAD" => pad(model, sg, op),
        "PRELU" => match input(sg, op, 1) {
            Some(alpha) if alpha.shape.iter().rev().skip(1).any(|&d| d != 1) => {
                limit(format!("PRELU alpha {} has more than the innermost dimension", describe(alpha)))
            }
            _ => Ok(()),
        },
        "SOFTMAX" => match in0.and_then(|t| t.shape.last()) {
            Some(&n) if i64::from(n) > SOFTMAX_MAX_ELEMENTS => {
                limit(format!("SOFTMAX over {n} elements (at most {SOFTMAX_MAX_ELEMENTS})"))
            }
            _ => Ok(()),
        },
        "SPLIT" => {
            let data_rank = input(sg, op, 1).map_or(0, |t| t.shape.len());
            match constant_axes(model, sg, op, 0, data_rank, "SPLIT axis")?.as_slice() {
                [0] if data_rank >= 2 => limit("SPLIT along the batch dimension (axis 0)"),
                _ => Ok(()),
            }
        }
        "STRIDED_SLICE" => strided_slice(model, sg, op),
        "RESIZE_BILINEAR" if o.align_corners => resize_align_corners(sg, op),
        _ => Ok(()),
    }
}

/// Conv, depthwise, fully connected and transposed conv: a weights input (its constancy is
/// checked first, by `constant_parameters`), equal dilations, the default weights format and a
/// one-dimensional fully-connected output.
fn weights(name: &str, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    // Input 1 holds the filter in all four (TRANSPOSE_CONV's input 0 is its output shape).
    if input(sg, op, 1).is_none() {
        return limit(format!("{name} has no weights input"));
    }
    let o = &op.options;
    if matches!(name, "CONV_2D" | "DEPTHWISE_CONV_2D") && o.dilation_w != o.dilation_h {
        return limit(format!("{name} with different dilations in x ({}) and y ({})", o.dilation_w, o.dilation_h));
    }
    if name == "FULLY_CONNECTED" {
        if o.weights_format != 0 {
            return limit(format!("FULLY_CONNECTED with the non-default weights format {}", o.weights_format));
        }
        if let Some(out) = outputs(sg, op).next() {
            if out.shape.iter().filter(|&&d| d != 1).count() > 1 {
                return limit(format!("FULLY_CONNECTED output {} is not one-dimensional", describe(out)));
            }
        }
    }
    Ok(())
}

/// A constant input may only be the second of two inputs and all zeros (a zero padding).
fn concatenation(model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let n = inputs(sg, op).count();
    for (k, t) in inputs(sg, op).filter(|(_, t)| t.is_constant()) {
        if n != 2 {
            return limit(format!("CONCATENATION of {n} inputs with constant input {k}"));
        }
        let zp = t.quantization.as_ref().and_then(|q| q.zero_point.first().copied()).unwrap_or(0);
        let data = model.tensor_data(t).unwrap_or(&[]);
        let zero = if t.dtype == TensorType::INT8 {
            data.iter().all(|&b| i64::from(b as i8) == zp)
        } else {
            data.iter().all(|&b| i64::from(b) == zp)
        };
        if !zero {
            return limit(format!("CONCATENATION with constant input {k} that is not all zeros"));
        }
    }
    Ok(())
}

/// The axes of a constant axis input, normalised; a non-constant axis breaks requirement 3.
fn constant_axes(
    model: &Model,
    sg: &Subgraph,
    op: &Operator,
    k: usize,
    rank: usize,
    what: &str,
) -> Result<Vec<usize>, Unmapped> {
    let Some(t) = input(sg, op, k) else { return Ok(Vec::new()) };
    let Some(values) = const_ints(model, t) else {
        return Err(Unmapped {
            category: Category::Limitation,
            detail: format!("{what} {} is not a constant", describe(t)),
        });
    };
    Ok(values.into_iter().filter_map(|a| norm_axis(a, rank)).collect())
}

fn reduction(name: &str, model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let Some(data) = input(sg, op, 0) else { return Ok(()) };
    let rank = data.shape.len();
    let axes = constant_axes(model, sg, op, 1, rank, &format!("{name} axis"))?;
    if rank >= 2 && axes.contains(&0) {
        return limit(format!("{name} over the batch dimension (axis 0)"));
    }
    if name == "MEAN" && rank >= 1 && axes.contains(&(rank - 1)) {
        let z = data.shape[rank - 1];
        if z % 4 != 0 {
            return limit(format!("MEAN over the innermost dimension of size {z}, which is not a multiple of 4"));
        }
    }
    Ok(())
}

fn pad(model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let Some(p) = input(sg, op, 1) else { return Ok(()) };
    let Some(values) = const_ints(model, p) else {
        return limit(format!("PAD paddings {} are not constant", describe(p)));
    };
    let rank = input(sg, op, 0).map_or(0, |t| t.shape.len());
    if rank >= 2 && values.len() >= 2 && (values[0] != 0 || values[1] != 0) {
        return limit(format!("PAD in the batch dimension ({} before, {} after)", values[0], values[1]));
    }
    Ok(())
}

fn strided_slice(model: &Model, sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let o = &op.options;
    if o.ellipsis_mask != 0 {
        return limit(format!("STRIDED_SLICE with ellipsis mask {}", o.ellipsis_mask));
    }
    if o.new_axis_mask != 0 {
        return limit(format!("STRIDED_SLICE with new-axis mask {}", o.new_axis_mask));
    }
    for (k, what) in [(1, "begin"), (2, "end"), (3, "strides")] {
        let Some(t) = input(sg, op, k) else { continue };
        let Some(values) = const_ints(model, t) else {
            return limit(format!("STRIDED_SLICE {what} {} is not constant", describe(t)));
        };
        if k == 3 && values.iter().any(|&s| s != 1) {
            return limit(format!("STRIDED_SLICE with strides {values:?} (all strides must be 1)"));
        }
    }
    Ok(())
}

/// `RESIZE_BILINEAR` with `align_corners`: compiler 16 left the align-corners resizes of DeepLab
/// v3 (test data `deeplabv3_mnv2_dm05_pascal_quant`, a 1x1 to 33x33 upscale) on the CPU while it
/// maps half-pixel and plain resizes (MoveNet, YOLO). The documentation only says a resize "may
/// not be mapped to avoid loss in precision"; this rule is the part of that the test data shows.
fn resize_align_corners(sg: &Subgraph, op: &Operator) -> Result<(), Unmapped> {
    let shape = |t: Option<&Tensor>| t.map(|t| t.shape.clone()).unwrap_or_default();
    let (from, to) = (shape(input(sg, op, 0)), shape(outputs(sg, op).next()));
    limit(format!(
        "RESIZE_BILINEAR with align_corners=true ({from:?} to {to:?}) is not mapped, to avoid a loss in precision"
    ))
}
