//! Small value types of the model view: tensor types, quantization, operator codes.

use super::tflite_generated::tflite as fb;
use std::fmt;

/// Element type of a tensor, with TFLite's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorType(pub i8);

impl TensorType {
    /// 32-bit float.
    pub const FLOAT32: TensorType = TensorType(0);
    /// 16-bit float.
    pub const FLOAT16: TensorType = TensorType(1);
    /// 32-bit signed integer.
    pub const INT32: TensorType = TensorType(2);
    /// 8-bit unsigned integer.
    pub const UINT8: TensorType = TensorType(3);
    /// 64-bit signed integer.
    pub const INT64: TensorType = TensorType(4);
    /// Strings.
    pub const STRING: TensorType = TensorType(5);
    /// Booleans.
    pub const BOOL: TensorType = TensorType(6);
    /// 16-bit signed integer.
    pub const INT16: TensorType = TensorType(7);
    /// 8-bit signed integer.
    pub const INT8: TensorType = TensorType(9);
    /// 64-bit float.
    pub const FLOAT64: TensorType = TensorType(10);

    /// TFLite's lower-case name (`uint8`, `float32`, ...), or `unknown(N)`.
    pub fn name(self) -> String {
        match fb::TensorType(self.0).variant_name() {
            Some(n) => n.to_ascii_lowercase(),
            None => format!("unknown({})", self.0),
        }
    }

    /// Size of one element in bytes, for fixed-size types.
    pub fn size_bytes(self) -> Option<usize> {
        Some(match self.0 {
            0 | 2 | 15 => 4,          // float32, int32, uint32
            1 | 7 | 16 | 18 => 2,     // float16, int16, uint16, bfloat16
            3 | 6 | 9 | 22 | 23 => 1, // uint8, bool, int8, float8 variants
            4 | 8 | 10 | 12 => 8,     // int64, complex64, float64, uint64
            11 => 16,                 // complex128
            _ => return None,         // string, resource, variant, sub-byte types
        })
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Quantization of a tensor: `real = scale * (q - zero_point)`, per tensor (one scale) or per
/// channel along `quantized_dimension`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// Scales: one, or one per channel.
    pub scale: Vec<f32>,
    /// Zero points, as many as scales (or empty, meaning 0).
    pub zero_point: Vec<i64>,
    /// The channel dimension of per-channel quantization.
    pub quantized_dimension: i32,
    /// Recorded float minimums, if any.
    pub min: Vec<f32>,
    /// Recorded float maximums, if any.
    pub max: Vec<f32>,
}

impl Quantization {
    /// Whether there is one scale per channel.
    pub fn is_per_channel(&self) -> bool {
        self.scale.len() > 1
    }
}

/// A builtin operator code, with TFLite's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuiltinOp(pub i32);

impl BuiltinOp {
    /// The custom-op marker code.
    pub const CUSTOM: BuiltinOp = BuiltinOp(32);

    /// TFLite's name of the operator (`CONV_2D`, ...), if the code is known.
    pub fn name(self) -> Option<&'static str> {
        fb::BuiltinOperator(self.0).variant_name()
    }
}

/// What an operator code denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// A builtin operator.
    Builtin(BuiltinOp),
    /// A custom operator with its custom code (e.g. `edgetpu-custom-op`).
    Custom(String),
}

/// One entry of the model's operator code table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCode {
    /// Builtin or custom.
    pub kind: OpKind,
    /// Operator version.
    pub version: i32,
    name: String,
}

impl OperatorCode {
    pub(crate) fn new(kind: OpKind, version: i32) -> Self {
        let name = match &kind {
            OpKind::Builtin(b) => b.name().map_or_else(|| format!("BUILTIN_{}", b.0), str::to_string),
            OpKind::Custom(c) => c.clone(),
        };
        OperatorCode { kind, version, name }
    }

    /// The builtin name (`CONV_2D`) or the custom code.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The builtin code, for builtin operators.
    pub fn builtin(&self) -> Option<BuiltinOp> {
        match self.kind {
            OpKind::Builtin(b) => Some(b),
            OpKind::Custom(_) => None,
        }
    }
}
