//! TFLite models: a verified, zero-copy view over a memory-mapped `.tflite` file.
//!
//! [`Model::open`] maps the file, verifies the flatbuffer once and checks every index, offset and
//! length the rest of the runtime relies on (tensor buffers, operator codes, tensor indices,
//! buffer ranges, constant data sizes). After that, tensors' constant data, custom options and
//! metadata are handed out as slices borrowed from the map: nothing is copied.
//!
//! ```no_run
//! let model = edgetpu::Model::open("mobilenet_v1_0.25_128_quant_edgetpu.tflite")?;
//! let graph = &model.subgraphs()[0];
//! for op in &graph.operators {
//!     println!("{} {}", op.index, model.op_name(op));
//! }
//! # Ok::<(), edgetpu::Error>(())
//! ```

mod associated;
mod loader;
mod options;
#[allow(unsafe_code, unused_imports, dead_code, non_camel_case_types, non_snake_case, missing_docs, mismatched_lifetime_syntaxes)]
#[allow(clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub(crate) mod tflite_generated;
mod types;

pub use associated::AssociatedFile;
pub use options::{Activation, OpOptions, Padding};
pub use types::{BuiltinOp, OpKind, OperatorCode, Quantization, TensorType};

use crate::error::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The bytes of a model: a read-only file mapping or an owned buffer.
enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A loaded, verified TFLite model.
pub struct Model {
    storage: Storage,
    path: Option<PathBuf>,
    version: u32,
    description: Option<String>,
    opcodes: Vec<OperatorCode>,
    subgraphs: Vec<Subgraph>,
    /// File range of each buffer's data (empty range for buffers without data).
    buffers: Vec<Range<usize>>,
    metadata: Vec<Metadata>,
    signatures: Vec<Signature>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("size", &self.bytes().len())
            .field("subgraphs", &self.subgraphs.len())
            .finish_non_exhaustive()
    }
}

/// One subgraph: its tensors, operators (in execution order), inputs and outputs.
#[derive(Debug, Clone)]
pub struct Subgraph {
    /// Position in the model.
    pub index: usize,
    /// Name, if the file has one.
    pub name: Option<String>,
    /// All tensors.
    pub tensors: Vec<Tensor>,
    /// All operators, in the order the file says to run them.
    pub operators: Vec<Operator>,
    /// Tensor indices of the subgraph's inputs.
    pub inputs: Vec<usize>,
    /// Tensor indices of the subgraph's outputs.
    pub outputs: Vec<usize>,
}

/// One tensor.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Position in its subgraph.
    pub index: usize,
    /// Name (empty if the file has none).
    pub name: String,
    /// Shape; empty for scalars and for outputs whose shape an op sets at prepare time.
    pub shape: Vec<i32>,
    /// Shape with -1 for dynamic dimensions, when the file has one.
    pub shape_signature: Option<Vec<i32>>,
    /// Element type.
    pub dtype: TensorType,
    /// Quantization, when the tensor has scales.
    pub quantization: Option<Quantization>,
    /// Index of the tensor's buffer in the model.
    pub buffer: usize,
    /// Whether the tensor is a variable (state kept across invocations).
    pub is_variable: bool,
    /// File range of the constant data, if the tensor has any.
    data: Option<Range<usize>>,
}

impl Tensor {
    /// Number of elements of the shape (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).product()
    }

    /// Whether the tensor has constant data in the file.
    pub fn is_constant(&self) -> bool {
        self.data.is_some()
    }
}

/// One operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Position in its subgraph (execution order).
    pub index: usize,
    /// Index into [`Model::operator_codes`].
    pub opcode_index: usize,
    /// Input tensor indices; `None` marks an omitted optional input.
    pub inputs: Vec<Option<usize>>,
    /// Output tensor indices.
    pub outputs: Vec<Option<usize>>,
    /// Intermediate tensor indices (used by LSTM kernels).
    pub intermediates: Vec<usize>,
    /// Type tag of the builtin options table (0 = none), as in TFLite's `BuiltinOptions` union.
    pub builtin_options_type: u8,
    /// Decoded builtin options (TFLite's defaults where the file has none).
    pub options: OpOptions,
    /// File range of the custom options.
    custom_options: Option<Range<usize>>,
    /// Byte offset of the operator table in the file, for error messages.
    pub file_offset: usize,
}

/// A named metadata entry of the model.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Name, e.g. `min_runtime_version` or `TFLITE_METADATA`.
    pub name: String,
    /// Index of its buffer.
    pub buffer: usize,
}

/// A signature def: named inputs and outputs of a subgraph (what TFLite's signature runners
/// call by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signature key, e.g. `serving_default`.
    pub key: String,
    /// The subgraph it runs.
    pub subgraph: usize,
    /// Input names and their tensor indices in that subgraph, in the file's order.
    pub inputs: Vec<(String, usize)>,
    /// Output names and their tensor indices in that subgraph, in the file's order.
    pub outputs: Vec<(String, usize)>,
}

impl Model {
    /// Memory-maps and verifies a model file.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory, not a model file: name a .tflite file in it",
                ),
            });
        }
        let map = loader::map_file(path)?;
        Self::build(Storage::Mapped(map), Some(path.to_path_buf()))
    }

    /// Verifies a model held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        Self::build(Storage::Owned(bytes), None)
    }

    fn build(storage: Storage, path: Option<PathBuf>) -> Result<Model> {
        let parsed = loader::parse(storage.bytes()).map_err(|e| e.with_path(path.as_deref()))?;
        Ok(Model {
            storage,
            path,
            version: parsed.version,
            description: parsed.description,
            opcodes: parsed.opcodes,
            subgraphs: parsed.subgraphs,
            buffers: parsed.buffers,
            metadata: parsed.metadata,
            signatures: parsed.signatures,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The path the model was opened from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Schema version of the file (3 for current TFLite files).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The model's description string.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Operator codes, indexed by [`Operator::opcode_index`].
    pub fn operator_codes(&self) -> &[OperatorCode] {
        &self.opcodes
    }

    /// Subgraphs; the first is the main graph.
    pub fn subgraphs(&self) -> &[Subgraph] {
        &self.subgraphs
    }

    /// The operator code of an operator.
    pub fn opcode(&self, op: &Operator) -> &OperatorCode {
        // Checked at load: every opcode_index is in range.
        &self.opcodes[op.opcode_index]
    }

    /// The operator's name: the builtin name such as `CONV_2D`, or the custom code.
    pub fn op_name(&self, op: &Operator) -> &str {
        self.opcode(op).name()
    }

    /// A tensor's constant data, borrowed from the file.
    pub fn tensor_data(&self, tensor: &Tensor) -> Option<&[u8]> {
        tensor.data.clone().map(|r| &self.bytes()[r])
    }

    /// An operator's custom options, borrowed from the file.
    pub fn custom_options(&self, op: &Operator) -> Option<&[u8]> {
        op.custom_options.clone().map(|r| &self.bytes()[r])
    }

    /// File offset of an operator's custom options.
    pub fn custom_options_offset(&self, op: &Operator) -> Option<usize> {
        op.custom_options.as_ref().map(|r| r.start)
    }

    /// The data of buffer `index` (empty for buffers without data).
    pub fn buffer(&self, index: usize) -> Option<&[u8]> {
        self.buffers.get(index).map(|r| &self.bytes()[r.clone()])
    }

    /// Number of buffers.
    pub fn num_buffers(&self) -> usize {
        self.buffers.len()
    }

    /// Named metadata entries.
    pub fn metadata(&self) -> &[Metadata] {
        &self.metadata
    }

    /// The bytes of the metadata entry called `name`.
    pub fn metadata_bytes(&self, name: &str) -> Option<&[u8]> {
        self.metadata.iter().find(|m| m.name == name).and_then(|m| self.buffer(m.buffer))
    }

    /// The signature defs (empty when the file has none).
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The minimum TFLite runtime version the converter recorded, if any.
    pub fn min_runtime_version(&self) -> Option<&str> {
        let b = self.metadata_bytes("min_runtime_version")?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        std::str::from_utf8(&b[..end]).ok()
    }

    /// Files packed into the model (the zip archive that TFLite metadata writers append to the
    /// flatbuffer, holding e.g. the label file). Empty if the model carries none.
    pub fn associated_files(&self) -> Result<Vec<AssociatedFile<'_>>> {
        associated::read(self.bytes()).map_err(|e| e.with_path(self.path()))
    }

    /// Labels from the first `.txt` file packed into the model, one per line.
    pub fn labels(&self) -> Result<Option<Vec<String>>> {
        let files = self.associated_files()?;
        let Some(file) = files.iter().find(|f| f.name.ends_with(".txt")) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(file.data);
        Ok(Some(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect()))
    }

    /// Indices of the operators in subgraph `subgraph` whose custom code is `code`.
    pub fn custom_ops<'m>(&'m self, subgraph: &'m Subgraph, code: &'m str) -> impl Iterator<Item = &'m Operator> + 'm {
        subgraph.operators.iter().filter(move |op| matches!(&self.opcode(op).kind, OpKind::Custom(c) if c == code))
    }
}

/// The custom code of the operator that holds an Edge TPU package (`edgetpu-custom-op`).
pub const EDGETPU_CUSTOM_OP: &str = "edgetpu-custom-op";

/// The CPU twin of a compiled model: the file beside it with `_edgetpu` removed from its name
/// (`x_edgetpu.tflite` → `x.tflite`), if that file exists.
pub fn cpu_twin_path(compiled: &Path) -> Option<PathBuf> {
    let name = compiled.file_name()?.to_str()?;
    let twin = name.replacen("_edgetpu", "", 1);
    (twin != name).then(|| compiled.with_file_name(twin)).filter(|p| p.is_file())
}

/// The compiled twin of a CPU model: `x_edgetpu.tflite` beside `x.tflite`, if that file exists.
pub fn compiled_twin_path(cpu_model: &Path) -> Option<PathBuf> {
    let stem = cpu_model.file_stem()?.to_str()?;
    let p = cpu_model.with_file_name(format!("{stem}_edgetpu.tflite"));
    p.is_file().then_some(p)
}

impl Model {
    /// Whether the model holds Edge TPU code (an `edgetpu-custom-op` in any subgraph).
    pub fn is_compiled(&self) -> bool {
        self.subgraphs().iter().any(|sg| self.custom_ops(sg, EDGETPU_CUSTOM_OP).next().is_some())
    }
}
