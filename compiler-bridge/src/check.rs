//! Offline compatibility check: which operators of a CPU model `edgetpu_compiler` would map to
//! the Edge TPU, why the others would stay on the CPU, and how much of the on-chip memory the
//! weights would take. No compiler is needed.
//!
//! ```no_run
//! use edgetpu_compiler::check::{check, CheckOptions};
//!
//! let model = edgetpu::Model::open("mobilenet_v1_1.0_224_quant.tflite")?;
//! let report = check(&model, &CheckOptions::default());
//! println!("{} of {} operators on the Edge TPU", report.tpu_ops, report.total_ops);
//! for op in report.operators.iter().filter(|op| !op.on_tpu) {
//!     println!("#{} {}: {}", op.index, op.op, op.reason);
//! }
//! # Ok::<(), edgetpu::Error>(())
//! ```
//!
//! # How the prediction is made
//!
//! 1. Each operator is checked alone against Coral's model requirements and supported-operations
//!    table (see `check_rules.rs`): 8-bit tensors, static shapes, constant parameters, at most
//!    three non-unit innermost dimensions, the operator list and its per-operator limits.
//! 2. Partitioning. Without `-a` the compiler makes **one** Edge TPU subgraph. Operators that
//!    only feed it (a float model's input `QUANTIZE`, a `CAST`) stay on the CPU before it; an
//!    unmapped operator that consumes the subgraph's output cuts it, and every operator that
//!    depends on that operator's result runs on the CPU with the status "More than one subgraph
//!    is not supported", even when it is supported. Operators on branches that do not depend on
//!    the cut still map: the partition follows data flow, not file order (MoveNet's compiled
//!    twin keeps its heatmap and offset heads on the Edge TPU after the first `ARG_MAX`). With
//!    [`CheckOptions::multiple_subgraphs`] (`-a`) every operator that maps alone is predicted on
//!    the Edge TPU.
//! 3. Parameters: the constant weights, biases and other constant operands of the operators
//!    predicted on the Edge TPU, each buffer counted once. This is an **estimate**: the compiler
//!    re-lays weights out for the chip (padding channels, folding biases and scales), so the
//!    package's parameter bytes differ from the sum (on the compiled twins of the test data the
//!    packages hold 6 to 33% more, some 20 to 30 bytes per output channel; an LSTM about 4.5
//!    times more). It is compared with the 8 MiB on-chip memory to say whether the parameters
//!    would be cached on chip or streamed over USB.
//!
//! The operator list is [`SUPPORTED_OPERATIONS`], Coral's table; `docs/edgetpu-ops.md` in the
//! repository gives every row with its limits, the compiler release that added it where a source
//! says so, and the sources.
//!
//! What is not checked ([`NOT_CHECKED`], also in every [`CheckReport`]): operator versions, since
//! Coral documents no highest version per operator and compiler, so "Operation version not
//! supported" (seen from compiler 14.1) is never predicted; size- and precision-dependent
//! rejections (a large `RESHAPE` or `CONCATENATION`, a resize whose precision loss the compiler
//! judges too high) that the compiler reports as "Operation is otherwise supported, but not
//! mapped due to some unspecified limitation"; support beyond Coral's table (an operator missing
//! from it, such as `TILE`, is predicted on the CPU, with what depends on its result after Edge
//! TPU operators); and the runtime version a model is compiled for (`-m`): the prediction is for
//! compiler 16's default, without the narrower limits the table gives for older runtimes.

use crate::check_rules::{op_rule, Unmapped};
pub use crate::check_rules::{SupportedOperation, SUPPORTED_OPERATIONS};
use edgetpu::model::{OpKind, TensorType};
use edgetpu::package::{Package, CUSTOM_OP_CODE, ON_CHIP_MEMORY_BYTES};
use edgetpu::{Model, Operator, Subgraph};
use serde::Serialize;
use std::collections::HashSet;

/// What [`check`] does not look at, one sentence each (copied into
/// [`CheckReport::not_checked`]).
pub const NOT_CHECKED: &[&str] = &[
    "operator versions: Coral documents no highest version per operator and compiler, so \
     \"Operation version not supported\" (compiler 14.1 on a newer converter's RESIZE_NEAREST_NEIGHBOR) \
     is never predicted",
    "size- and precision-dependent limits, reported as \"unspecified limitation\" (a large RESHAPE or \
     CONCATENATION, a resize the compiler judges too imprecise)",
    "support beyond Coral's table of supported operations (docs/edgetpu-ops.md): an operator missing \
     from it, such as TILE or GATHER, is predicted on the CPU, and so is what depends on its result after Edge TPU operators",
    "the runtime version the model is compiled for (-m): the prediction is for compiler 16's default, \
     without the narrower limits Coral's table gives for older runtimes (MEAN and PAD on x and y only, \
     SQUEEZE of leading 1s only)",
];

/// Options of [`check`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CheckOptions {
    /// Predict for `edgetpu_compiler -a` (`--enable_multiple_subgraphs`, compiler 16): every
    /// operator that maps by itself goes to the Edge TPU, in as many subgraphs as needed.
    pub multiple_subgraphs: bool,
}

/// Why an operator runs where it does. Each category has the status text the compiler writes
/// in its operation log ([`Category::status`]), where the compiler has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// Mapped to the Edge TPU.
    Mapped,
    /// A tensor of the operator is not 8-bit (float, int32 activations, int16).
    UnsupportedDataType,
    /// The operator is not in the Edge TPU's list of supported operations.
    UnsupportedOperation,
    /// A tensor has a dimension larger than 1 outside its three innermost dimensions.
    UnsupportedRank,
    /// A tensor's size is not known at compile time.
    DynamicShape,
    /// The operator is supported, but one of its documented limits is broken (or, in compiler
    /// logs, an undocumented size limit).
    Limitation,
    /// The operator depends on a CPU operator that consumes Edge TPU results; a second Edge TPU
    /// subgraph would be needed.
    MoreThanOneSubgraph,
    /// A weights or bias input of a convolution or fully-connected operator is not a constant
    /// tensor (requirement 3: model parameters are constant at compile time).
    NonConstantParameter,
    /// The operator's version is newer than the compiler knows. Never predicted by [`check`]
    /// (see [`NOT_CHECKED`]): known only from compiler logs (compiler 14.1 on a
    /// `RESIZE_NEAREST_NEIGHBOR` of a newer converter).
    VersionNotSupported,
    /// The `edgetpu-custom-op` of a model that is already compiled.
    CompiledCustomOp,
    /// A CPU operator of a model that is already compiled.
    CompiledCpuOp,
}

impl Category {
    /// Every category.
    pub const ALL: &'static [Category] = &[
        Category::Mapped,
        Category::UnsupportedDataType,
        Category::UnsupportedOperation,
        Category::UnsupportedRank,
        Category::DynamicShape,
        Category::Limitation,
        Category::MoreThanOneSubgraph,
        Category::NonConstantParameter,
        Category::VersionNotSupported,
        Category::CompiledCustomOp,
        Category::CompiledCpuOp,
    ];

    /// The status text of the category. For the first nine categories but
    /// [`Category::DynamicShape`] this is the compiler's own wording, as found in real
    /// `*_edgetpu.log` files and logs quoted in Coral's issue tracker
    /// ([`Category::NonConstantParameter`]: compiler 2.0 in google-coral/edgetpu#25;
    /// [`Category::UnsupportedOperation`]: `TRANSPOSE` under compilers 14.1 and 15, before
    /// compiler 16 added it, in google-coral/edgetpu#242 and #342); that one uses the closest
    /// wording known, as no collected log shows it.
    pub fn status(self) -> &'static str {
        match self {
            Category::Mapped => "Mapped to Edge TPU",
            Category::UnsupportedDataType => "Operation is working on an unsupported data type",
            Category::UnsupportedOperation => "Operation not supported",
            Category::UnsupportedRank => "Tensor has unsupported rank (up to 3 innermost dimensions mapped)",
            Category::DynamicShape => "Operation has dynamic-sized tensors",
            Category::Limitation => {
                "Operation is otherwise supported, but not mapped due to some unspecified limitation"
            }
            Category::MoreThanOneSubgraph => "More than one subgraph is not supported",
            Category::NonConstantParameter => "Filter, bias, or other param is not constant at compile-time",
            Category::VersionNotSupported => "Operation version not supported",
            Category::CompiledCustomOp => "Compiled for the Edge TPU",
            Category::CompiledCpuOp => "Left on the CPU by the compiler",
        }
    }

    /// The category of a status string of the compiler's operation log, if it is one of the
    /// known statuses. Besides each category's own [`Category::status`], this knows the
    /// interpolation status of early-2020 compilers ("Image-interpolation layer won't run
    /// precisely enough on Edge TPU", google-coral/edgetpu#63), a [`Category::Limitation`].
    pub fn from_status(status: &str) -> Option<Category> {
        let status = status.trim();
        if status == "Image-interpolation layer won't run precisely enough on Edge TPU" {
            return Some(Category::Limitation);
        }
        Category::ALL.iter().copied().find(|c| c.status() == status)
    }

    /// Whether an operator of this category runs on the Edge TPU.
    pub fn on_tpu(self) -> bool {
        matches!(self, Category::Mapped | Category::CompiledCustomOp)
    }
}

/// The verdict on one operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpVerdict {
    /// Position of the operator in the main subgraph.
    pub index: usize,
    /// Operator name: the builtin name (`CONV_2D`) or the custom code.
    pub op: String,
    /// Operator version.
    pub version: i32,
    /// Whether the operator is predicted to run on the Edge TPU.
    pub on_tpu: bool,
    /// Why it runs where it does.
    pub category: Category,
    /// The compiler's status text of the category ([`Category::status`]).
    pub status: &'static str,
    /// The rule that fired, naming the tensor or value that broke it; `None` for mapped ops.
    pub detail: Option<String>,
    /// `status`, followed by `detail` when there is one.
    pub reason: String,
}

impl OpVerdict {
    fn new(model: &Model, op: &Operator, category: Category, detail: Option<String>) -> OpVerdict {
        let status = category.status();
        let reason = match &detail {
            Some(d) => format!("{status}: {d}"),
            None => status.to_string(),
        };
        OpVerdict {
            index: op.index,
            op: model.op_name(op).to_string(),
            version: model.opcode(op).version,
            on_tpu: category.on_tpu(),
            category,
            status,
            detail,
            reason,
        }
    }
}

/// One `edgetpu-custom-op` of an already compiled model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledOp {
    /// Position of the custom op in the main subgraph.
    pub operator_index: usize,
    /// Names of the tensors it reads.
    pub inputs: Vec<String>,
    /// Names of the tensors it writes.
    pub outputs: Vec<String>,
    /// Version string of the compiler that made the package (when the package decodes).
    pub compiler_version: Option<String>,
    /// Minimum Edge TPU runtime version the package needs.
    pub min_runtime_version: Option<i32>,
    /// Parameter bytes cached in on-chip memory.
    pub cached_parameter_bytes: u64,
    /// Parameter bytes streamed with every inference.
    pub streamed_parameter_bytes: u64,
    /// Why the package could not be decoded, if it could not.
    pub error: Option<String>,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// Index of the subgraph checked (the main subgraph, 0).
    pub subgraph: usize,
    /// Subgraphs of the model besides the main one (control-flow bodies), not checked.
    pub other_subgraphs: usize,
    /// The options the prediction was made for.
    pub options: CheckOptions,
    /// One verdict per operator, in file order.
    pub operators: Vec<OpVerdict>,
    /// Number of operators.
    pub total_ops: usize,
    /// Operators predicted on the Edge TPU.
    pub tpu_ops: usize,
    /// Operators predicted on the CPU.
    pub cpu_ops: usize,
    /// Number of Edge TPU subgraphs (custom ops) the compiler would make: 0 or 1 without
    /// [`CheckOptions::multiple_subgraphs`]; with it, an estimate (mapped operators that depend
    /// on each other through CPU operators need separate subgraphs).
    pub tpu_subgraphs: usize,
    /// Estimated parameter bytes of the Edge TPU part; for a compiled model, the packages' real
    /// parameter bytes. See the module documentation for what the estimate leaves out.
    pub estimated_parameter_bytes: u64,
    /// On-chip parameter memory of the Edge TPU (8 MiB).
    pub on_chip_memory_bytes: u64,
    /// Whether the parameters fit in the on-chip memory (cached) rather than being streamed.
    pub fits_on_chip: bool,
    /// Set when the model is already compiled: what its custom ops hold.
    pub compiled: Option<Vec<CompiledOp>>,
    /// What the prediction does not look at ([`NOT_CHECKED`]).
    pub not_checked: &'static [&'static str],
}

/// Predicts, operator by operator, what `edgetpu_compiler` would do with `model`.
///
/// The model is untrusted input: anything odd in it (missing tensors, strange shapes, undecodable
/// packages) ends up in a verdict or in [`CompiledOp::error`]; this function does not panic.
pub fn check(model: &Model, options: &CheckOptions) -> CheckReport {
    let subgraphs = model.subgraphs();
    let Some(sg) = subgraphs.first() else {
        return summarise(Vec::new(), 0, 0, 0, *options, None);
    };
    let other = subgraphs.len() - 1;
    let is_compiled_op = |op: &Operator| matches!(&model.opcode(op).kind, OpKind::Custom(c) if c == CUSTOM_OP_CODE);
    if sg.operators.iter().any(is_compiled_op) {
        return compiled(model, sg, other, *options);
    }
    let rules: Vec<Result<(), Unmapped>> = sg.operators.iter().map(|op| op_rule(model, sg, op)).collect();
    let verdicts = partition(model, sg, &rules, options.multiple_subgraphs);
    let tpu: Vec<&Operator> =
        sg.operators.iter().filter(|op| verdicts.get(op.index).is_some_and(|v| v.on_tpu)).collect();
    let subgraph_count = count_subgraphs(sg, &verdicts, options.multiple_subgraphs);
    let bytes = parameter_bytes(model, sg, &tpu);
    summarise(verdicts, other, subgraph_count, bytes, *options, None)
}

fn summarise(
    operators: Vec<OpVerdict>,
    other_subgraphs: usize,
    tpu_subgraphs: usize,
    estimated_parameter_bytes: u64,
    options: CheckOptions,
    compiled: Option<Vec<CompiledOp>>,
) -> CheckReport {
    let tpu_ops = operators.iter().filter(|v| v.on_tpu).count();
    let on_chip = ON_CHIP_MEMORY_BYTES as u64;
    let fits_on_chip = match &compiled {
        Some(ops) => ops.iter().all(|c| c.streamed_parameter_bytes == 0 && c.cached_parameter_bytes <= on_chip),
        None => estimated_parameter_bytes <= on_chip,
    };
    CheckReport {
        subgraph: 0,
        other_subgraphs,
        options,
        total_ops: operators.len(),
        cpu_ops: operators.len() - tpu_ops,
        tpu_ops,
        operators,
        tpu_subgraphs,
        estimated_parameter_bytes,
        on_chip_memory_bytes: on_chip,
        fits_on_chip,
        compiled,
        not_checked: NOT_CHECKED,
    }
}

/// Where a tensor stands relative to the Edge TPU subgraph.
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    /// Depends on the output of an operator on the Edge TPU.
    after_tpu: bool,
    /// Depends on a CPU operator that consumed Edge TPU results: the index of the first such
    /// operator.
    cut_by: Option<usize>,
}

/// Turns the per-operator rules into placements (see the module documentation, step 2).
fn partition(model: &Model, sg: &Subgraph, rules: &[Result<(), Unmapped>], multiple: bool) -> Vec<OpVerdict> {
    let mut flow = vec![Flow::default(); sg.tensors.len()];
    let mut out = Vec::with_capacity(sg.operators.len());
    for (op, rule) in sg.operators.iter().zip(rules) {
        let ins: Vec<Flow> = op.inputs.iter().flatten().filter_map(|&i| flow.get(i).copied()).collect();
        let after_tpu = ins.iter().any(|f| f.after_tpu);
        let cut_by = ins.iter().find_map(|f| f.cut_by);
        let (verdict, produced) = match (rule, cut_by) {
            (Ok(()), Some(cpu)) if !multiple => {
                let name = sg.operators.get(cpu).map_or("?", |o| model.op_name(o));
                let detail = format!(
                    "depends on operator {cpu} ({name}), which runs on the CPU after Edge TPU operators \
                     (-a allows a second Edge TPU subgraph)"
                );
                let v = OpVerdict::new(model, op, Category::MoreThanOneSubgraph, Some(detail));
                (v, Flow { after_tpu: true, cut_by: Some(cpu) })
            }
            (Ok(()), _) => (OpVerdict::new(model, op, Category::Mapped, None), Flow { after_tpu: true, cut_by: None }),
            (Err(u), _) => {
                let v = OpVerdict::new(model, op, u.category, Some(u.detail.clone()));
                let cut = cut_by.or(if after_tpu { Some(op.index) } else { None });
                (v, Flow { after_tpu, cut_by: cut })
            }
        };
        for &t in op.outputs.iter().flatten() {
            if let Some(f) = flow.get_mut(t) {
                *f = produced;
            }
        }
        out.push(verdict);
    }
    out
}

/// Number of Edge TPU subgraphs: 0 or 1 without `-a`. With it, the mapped operators are
/// grouped by how many CPU stretches lie between them and the graph inputs (an operator that
/// depends on Edge TPU results through a CPU operator needs a later subgraph than the results it
/// depends on), and each group counts as one subgraph. An estimate: the compiler may split a
/// group further or fail to map parts of it.
fn count_subgraphs(sg: &Subgraph, verdicts: &[OpVerdict], multiple: bool) -> usize {
    let mapped = |i: usize| verdicts.get(i).is_some_and(|v| v.on_tpu);
    if !sg.operators.iter().any(|op| mapped(op.index)) {
        return 0;
    }
    if !multiple {
        return 1;
    }
    // Per tensor: (stage, written by a mapped operator).
    let mut stage = vec![(0usize, false); sg.tensors.len()];
    let mut stages = HashSet::new();
    for op in &sg.operators {
        let ins = op.inputs.iter().flatten().filter_map(|&t| stage.get(t).copied());
        let out = if mapped(op.index) {
            let s = ins.map(|(s, _)| s).max().unwrap_or(0);
            stages.insert(s);
            (s, true)
        } else {
            (ins.map(|(s, tpu)| s + usize::from(tpu)).max().unwrap_or(0), false)
        };
        for &t in op.outputs.iter().flatten() {
            if let Some(x) = stage.get_mut(t) {
                *x = out;
            }
        }
    }
    stages.len()
}

/// Operators whose int32 constants are parameters (biases); elsewhere int32 constants are
/// shapes, axes or sizes that the compiler folds into instructions.
const WEIGHT_OPS: &[&str] =
    &["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM"];

/// Sum of the constant operands of the mapped operators, each buffer once (step 3).
fn parameter_bytes(model: &Model, sg: &Subgraph, tpu: &[&Operator]) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for op in tpu {
        let name = model.op_name(op);
        for (k, t) in
            op.inputs.iter().enumerate().filter_map(|(k, i)| i.and_then(|i| sg.tensors.get(i)).map(|t| (k, t)))
        {
            let Some(data) = model.tensor_data(t) else { continue };
            let counts = match t.dtype {
                TensorType::INT8 | TensorType::UINT8 | TensorType::INT16 => true,
                TensorType::INT32 => WEIGHT_OPS.contains(&name) && !(name == "TRANSPOSE_CONV" && k == 0),
                _ => false,
            };
            if counts && seen.insert(t.buffer) {
                total += data.len() as u64;
            }
        }
    }
    total
}

/// The report of a model that already holds Edge TPU custom ops.
fn compiled(model: &Model, sg: &Subgraph, other: usize, options: CheckOptions) -> CheckReport {
    let names = |ids: &[Option<usize>]| -> Vec<String> {
        ids.iter().flatten().filter_map(|&i| sg.tensors.get(i)).map(|t| t.name.clone()).collect()
    };
    let mut ops = Vec::new();
    let mut verdicts = Vec::new();
    for op in &sg.operators {
        let is_tpu = matches!(&model.opcode(op).kind, OpKind::Custom(c) if c == CUSTOM_OP_CODE);
        if !is_tpu {
            verdicts.push(OpVerdict::new(model, op, Category::CompiledCpuOp, None));
            continue;
        }
        let mut info = CompiledOp {
            operator_index: op.index,
            inputs: names(&op.inputs),
            outputs: names(&op.outputs),
            compiler_version: None,
            min_runtime_version: None,
            cached_parameter_bytes: 0,
            streamed_parameter_bytes: 0,
            error: None,
        };
        let detail = match Package::decode(model, sg, op) {
            Ok(p) => {
                info.compiler_version = Some(p.compiler_version.clone());
                info.min_runtime_version = Some(p.min_runtime_version);
                info.cached_parameter_bytes = p.cached_parameter_bytes() as u64;
                info.streamed_parameter_bytes = p.streamed_parameter_bytes() as u64;
                format!(
                    "{} inputs, {} outputs; {} parameter bytes cached on chip, {} streamed",
                    info.inputs.len(),
                    info.outputs.len(),
                    info.cached_parameter_bytes,
                    info.streamed_parameter_bytes
                )
            }
            Err(e) => {
                info.error = Some(e.to_string());
                format!("the package does not decode: {e}")
            }
        };
        verdicts.push(OpVerdict::new(model, op, Category::CompiledCustomOp, Some(detail)));
        ops.push(info);
    }
    let bytes = ops.iter().map(|c| c.cached_parameter_bytes + c.streamed_parameter_bytes).sum();
    let count = ops.len();
    summarise(verdicts, other, count, bytes, options, Some(ops))
}
