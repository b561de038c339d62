//! A small writer of TFLite flatbuffers for tests: enough of the schema (tensors with shapes,
//! types, per-tensor quantization, constant data and the variable flag; builtin and custom
//! operators with a few scalar options) to assemble graphs that exercise the checker's rules.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

/// TFLite tensor type numbers.
pub const F32: i8 = 0;
pub const I32: i8 = 2;
pub const U8: i8 = 3;
pub const I16: i8 = 7;
pub const I8: i8 = 9;

/// TFLite builtin operator numbers used by the tests.
pub mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const L2_NORMALIZATION: i32 = 11;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU_N1_TO_1: i32 = 20;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const RESIZE_BILINEAR: i32 = 23;
    pub const SOFTMAX: i32 = 25;
    pub const SPACE_TO_DEPTH: i32 = 26;
    pub const TANH: i32 = 28;
    pub const PAD: i32 = 34;
    pub const GATHER: i32 = 36;
    pub const TRANSPOSE: i32 = 39;
    pub const MEAN: i32 = 40;
    pub const SUB: i32 = 41;
    pub const SQUEEZE: i32 = 43;
    pub const UNIDIRECTIONAL_SEQUENCE_LSTM: i32 = 44;
    pub const STRIDED_SLICE: i32 = 45;
    pub const SPLIT: i32 = 49;
    pub const BIDIRECTIONAL_SEQUENCE_LSTM: i32 = 52;
    pub const PRELU: i32 = 54;
    pub const MAXIMUM: i32 = 55;
    pub const MINIMUM: i32 = 57;
    pub const SLICE: i32 = 65;
    pub const TRANSPOSE_CONV: i32 = 67;
    pub const TILE: i32 = 69;
    pub const EXPAND_DIMS: i32 = 70;
    pub const SUM: i32 = 74;
    pub const RSQRT: i32 = 76;
    pub const REDUCE_MAX: i32 = 82;
    pub const PACK: i32 = 83;
    pub const REDUCE_MIN: i32 = 89;
    pub const RESIZE_NEAREST_NEIGHBOR: i32 = 97;
    pub const SQUARED_DIFFERENCE: i32 = 99;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
}

/// TFLite `BuiltinOptions` union numbers used by the tests.
pub mod opts {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const CONCATENATION: u8 = 10;
    pub const ADD: u8 = 11;
    pub const RESIZE_BILINEAR: u8 = 15;
    pub const REDUCER: u8 = 27;
    pub const STRIDED_SLICE: u8 = 32;
    pub const SPLIT: u8 = 35;
    pub const PACK: u8 = 59;
}

/// One scalar field of a builtin options table: `(field id, value)`.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    /// An 8-bit field (padding, fused activation, booleans).
    I8(u16, i8),
    /// A 32-bit field (strides, dilations, axes, masks).
    I32(u16, i32),
}

/// Builtin options: the union type number and its scalar fields.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub union_type: u8,
    pub fields: Vec<Field>,
}

impl Options {
    pub fn new(union_type: u8, fields: &[Field]) -> Options {
        Options { union_type, fields: fields.to_vec() }
    }
}

struct Tensor {
    name: String,
    shape: Vec<i32>,
    signature: Option<Vec<i32>>,
    dtype: i8,
    buffer: u32,
    quant: Option<(f32, i64)>,
    variable: bool,
}

struct Op {
    code: usize,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    options: Options,
}

/// A one-subgraph model under construction.
#[derive(Default)]
pub struct Tiny {
    tensors: Vec<Tensor>,
    ops: Vec<Op>,
    codes: Vec<(i32, Option<String>)>,
    buffers: Vec<Vec<u8>>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
}

impl Tiny {
    pub fn new() -> Tiny {
        // Buffer 0 is the empty sentinel.
        Tiny { buffers: vec![Vec::new()], ..Tiny::default() }
    }

    fn push(&mut self, name: &str, shape: &[i32], dtype: i8, data: Option<Vec<u8>>) -> usize {
        let buffer = match data {
            Some(d) => {
                self.buffers.push(d);
                (self.buffers.len() - 1) as u32
            }
            None => 0,
        };
        let quant = (dtype == I8 || dtype == U8).then_some((0.05, if dtype == U8 { 128 } else { 0 }));
        let t =
            Tensor { name: name.into(), shape: shape.to_vec(), signature: None, dtype, buffer, quant, variable: false };
        self.tensors.push(t);
        self.tensors.len() - 1
    }

    /// A tensor without data (an activation).
    pub fn tensor(&mut self, name: &str, shape: &[i32], dtype: i8) -> usize {
        self.push(name, shape, dtype, None)
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, shape: &[i32], dtype: i8) -> usize {
        let t = self.tensor(name, shape, dtype);
        self.inputs.push(t as i32);
        t
    }

    /// Marks a tensor as a graph output.
    pub fn output(&mut self, t: usize) {
        self.outputs.push(t as i32);
    }

    /// A constant tensor with the given raw bytes.
    pub fn constant(&mut self, name: &str, shape: &[i32], dtype: i8, data: Vec<u8>) -> usize {
        self.push(name, shape, dtype, Some(data))
    }

    /// A constant int32 tensor.
    pub fn ints(&mut self, name: &str, values: &[i32]) -> usize {
        let shape = [values.len() as i32];
        self.constant(name, &shape, I32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A variable tensor (recurrent state, such as an LSTM's), without data.
    pub fn variable(&mut self, name: &str, shape: &[i32], dtype: i8) -> usize {
        let t = self.tensor(name, shape, dtype);
        self.tensors[t].variable = true;
        t
    }

    /// Gives tensor `t` a shape signature (-1 marks a dynamic dimension).
    pub fn signature(&mut self, t: usize, signature: &[i32]) {
        self.tensors[t].signature = Some(signature.to_vec());
    }

    fn code(&mut self, builtin: i32, custom: Option<&str>) -> usize {
        let key = (builtin, custom.map(str::to_string));
        match self.codes.iter().position(|c| *c == key) {
            Some(i) => i,
            None => {
                self.codes.push(key);
                self.codes.len() - 1
            }
        }
    }

    /// A builtin operator; `None` in `inputs` marks an omitted optional input.
    pub fn op(&mut self, builtin: i32, inputs: &[Option<usize>], outputs: &[usize], options: Options) {
        let code = self.code(builtin, None);
        let inputs = inputs.iter().map(|i| i.map_or(-1, |i| i as i32)).collect();
        self.ops.push(Op { code, inputs, outputs: outputs.iter().map(|&o| o as i32).collect(), options });
    }

    /// A custom operator.
    pub fn custom(&mut self, code: &str, inputs: &[usize], outputs: &[usize]) {
        let code = self.code(32, Some(code));
        let inputs = inputs.iter().map(|&i| i as i32).collect();
        let outputs = outputs.iter().map(|&o| o as i32).collect();
        self.ops.push(Op { code, inputs, outputs, options: Options::default() });
    }

    /// The finished `.tflite` bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        let slot = |id: u16| 4 + 2 * id;

        let buffers: Vec<_> = self
            .buffers
            .iter()
            .map(|d| {
                let data = (!d.is_empty()).then(|| b.create_vector(d));
                let s = b.start_table();
                if let Some(data) = data {
                    b.push_slot_always(slot(0), data);
                }
                b.end_table(s)
            })
            .collect();
        let buffers = b.create_vector(&buffers);

        let codes: Vec<_> = self
            .codes
            .iter()
            .map(|(builtin, custom)| {
                let custom = custom.as_deref().map(|c| b.create_string(c));
                let s = b.start_table();
                b.push_slot::<i8>(slot(0), (*builtin).min(127) as i8, 0);
                if let Some(c) = custom {
                    b.push_slot_always(slot(1), c);
                }
                b.push_slot::<i32>(slot(2), 1, 0);
                b.push_slot::<i32>(slot(3), *builtin, 0);
                b.end_table(s)
            })
            .collect();
        let codes = b.create_vector(&codes);

        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|t| {
                let shape = b.create_vector(&t.shape);
                let signature = t.signature.as_ref().map(|s| b.create_vector(s));
                let name = b.create_string(&t.name);
                let quant = t.quant.map(|(scale, zp)| {
                    let scale = b.create_vector(&[scale]);
                    let zp = b.create_vector(&[zp]);
                    let s = b.start_table();
                    b.push_slot_always(slot(2), scale);
                    b.push_slot_always(slot(3), zp);
                    b.end_table(s)
                });
                let s = b.start_table();
                b.push_slot_always(slot(0), shape);
                b.push_slot::<i8>(slot(1), t.dtype, 0);
                b.push_slot::<u32>(slot(2), t.buffer, 0);
                b.push_slot_always(slot(3), name);
                if let Some(q) = quant {
                    b.push_slot_always(slot(4), q);
                }
                if t.variable {
                    b.push_slot::<bool>(slot(5), true, false);
                }
                if let Some(sig) = signature {
                    b.push_slot_always(slot(7), sig);
                }
                b.end_table(s)
            })
            .collect();
        let tensors = b.create_vector(&tensors);

        let ops: Vec<_> = self
            .ops
            .iter()
            .map(|o| {
                let inputs = b.create_vector(&o.inputs);
                let outputs = b.create_vector(&o.outputs);
                let options = (o.options.union_type != 0).then(|| {
                    let s = b.start_table();
                    for f in &o.options.fields {
                        match *f {
                            Field::I8(id, v) => b.push_slot_always::<i8>(slot(id), v),
                            Field::I32(id, v) => b.push_slot_always::<i32>(slot(id), v),
                        }
                    }
                    b.end_table(s)
                });
                let s = b.start_table();
                b.push_slot::<u32>(slot(0), o.code as u32, 0);
                b.push_slot_always(slot(1), inputs);
                b.push_slot_always(slot(2), outputs);
                if let Some(opt) = options {
                    b.push_slot::<u8>(slot(3), o.options.union_type, 0);
                    b.push_slot_always(slot(4), opt);
                }
                b.end_table(s)
            })
            .collect();
        let ops = b.create_vector(&ops);
        let inputs = b.create_vector(&self.inputs);
        let outputs = b.create_vector(&self.outputs);
        let s = b.start_table();
        b.push_slot_always(slot(0), tensors);
        b.push_slot_always(slot(1), inputs);
        b.push_slot_always(slot(2), outputs);
        b.push_slot_always(slot(3), ops);
        let subgraph: WIPOffset<_> = b.end_table(s);
        let subgraphs = b.create_vector(&[subgraph]);

        let s = b.start_table();
        b.push_slot::<u32>(slot(0), 3, 0);
        b.push_slot_always(slot(1), codes);
        b.push_slot_always(slot(2), subgraphs);
        b.push_slot_always(slot(4), buffers);
        let model = b.end_table(s);
        b.finish(model, Some("TFL3"));
        b.finished_data().to_vec()
    }
}
