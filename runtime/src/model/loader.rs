//! Mapping a model file and checking it once.

#![allow(unsafe_code)]

use super::tflite_generated::tflite as fb;
use super::types::{BuiltinOp, OpKind, OperatorCode, Quantization, TensorType};
use super::{Metadata, Operator, Signature, Subgraph, Tensor};
use crate::error::{Error, Result};
use crate::fb::{get_bool, offset_in, verify};
use std::fs::File;
use std::ops::Range;
use std::path::Path;

/// Maps `path` read-only.
pub(super) fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Err(Error::invalid(0, "file", "the file is empty; expected a .tflite model").with_path(Some(path)));
    }
    // SAFETY: the map is read-only and private to this process; the runtime never writes through
    // it. Like every mmap-based loader, it relies on the file not being truncated or rewritten
    // while it is mapped (models are immutable inputs); the verifier runs over the mapped bytes.
    // Populated up front (MAP_POPULATE on Linux): weight packing and parameter upload read every
    // byte anyway, and one prefault pass costs less than a page fault per 4 KiB page.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io_err)?;
    Ok(map)
}

/// Everything [`super::Model`] keeps besides the bytes.
pub(super) struct Parsed {
    pub version: u32,
    pub description: Option<String>,
    pub opcodes: Vec<OperatorCode>,
    pub subgraphs: Vec<Subgraph>,
    pub buffers: Vec<Range<usize>>,
    pub metadata: Vec<Metadata>,
    pub signatures: Vec<Signature>,
}

fn loc(tab: &flatbuffers::Table<'_>) -> usize {
    tab.loc()
}

/// Verifies the flatbuffer and checks every cross-reference.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed> {
    if bytes.len() < 8 {
        return Err(Error::invalid(0, "file", format!("{} bytes is too short for a TFLite model", bytes.len())));
    }
    if &bytes[4..8] != b"TFL3" {
        return Err(Error::invalid(
            4,
            "file_identifier",
            format!(
                "expected the TFLite identifier \"TFL3\", found {:?}; is this a .tflite file?",
                String::from_utf8_lossy(&bytes[4..8])
            ),
        ));
    }
    let model = verify::<fb::Model>(bytes, 0, "model")?;

    let version = model.version();
    let buffers = check_buffers(bytes, &model)?;

    let mut opcodes = Vec::new();
    for (i, oc) in model.operator_codes().iter().flatten().enumerate() {
        // Files from before builtin_code existed only have the deprecated byte; newer writers set
        // both, the byte saturating at 127 (PLACEHOLDER_FOR_GREATER_OP_CODES).
        let code = i32::from(oc.deprecated_builtin_code()).max(oc.builtin_code().0);
        let kind = if code == BuiltinOp::CUSTOM.0 {
            match oc.custom_code() {
                Some(c) => OpKind::Custom(c.to_string()),
                None => {
                    return Err(Error::invalid(
                        loc(&oc._tab),
                        format!("operator_codes[{i}].custom_code"),
                        "custom operator without a custom code",
                    ))
                }
            }
        } else {
            OpKind::Builtin(BuiltinOp(code))
        };
        opcodes.push(OperatorCode::new(kind, oc.version()));
    }

    let mut subgraphs = Vec::new();
    for (si, sg) in model.subgraphs().iter().flatten().enumerate() {
        subgraphs.push(parse_subgraph(bytes, si, &sg, &buffers, opcodes.len())?);
    }
    if subgraphs.is_empty() {
        return Err(Error::invalid(loc(&model._tab), "subgraphs", "the model has no subgraph"));
    }

    let mut metadata = Vec::new();
    for (i, m) in model.metadata().iter().flatten().enumerate() {
        let buffer = m.buffer() as usize;
        if buffer >= buffers.len() {
            return Err(Error::invalid(
                loc(&m._tab),
                format!("metadata[{i}].buffer"),
                format!("buffer index {buffer} out of range ({} buffers)", buffers.len()),
            ));
        }
        metadata.push(Metadata { name: m.name().unwrap_or_default().to_string(), buffer });
    }

    let signatures = parse_signatures(&model, &subgraphs)?;

    Ok(Parsed {
        version,
        description: model.description().map(str::to_string),
        opcodes,
        subgraphs,
        buffers,
        metadata,
        signatures,
    })
}

/// The signature defs, with their subgraph and tensor indices checked.
fn parse_signatures(model: &fb::Model<'_>, subgraphs: &[Subgraph]) -> Result<Vec<Signature>> {
    let mut out = Vec::new();
    for (i, sig) in model.signature_defs().iter().flatten().enumerate() {
        let subgraph = sig.subgraph_index() as usize;
        let Some(graph) = subgraphs.get(subgraph) else {
            return Err(Error::invalid(
                loc(&sig._tab),
                format!("signature_defs[{i}].subgraph_index"),
                format!("subgraph {subgraph} out of range ({} subgraphs)", subgraphs.len()),
            ));
        };
        let mut maps = [Vec::new(), Vec::new()];
        for (side, (what, list)) in [("inputs", sig.inputs()), ("outputs", sig.outputs())].into_iter().enumerate() {
            for (j, m) in list.iter().flatten().enumerate() {
                let tensor = m.tensor_index() as usize;
                if tensor >= graph.tensors.len() {
                    return Err(Error::invalid(
                        loc(&m._tab),
                        format!("signature_defs[{i}].{what}[{j}].tensor_index"),
                        format!(
                            "tensor {tensor} out of range ({} tensors in subgraph {subgraph})",
                            graph.tensors.len()
                        ),
                    ));
                }
                maps[side].push((m.name().unwrap_or_default().to_string(), tensor));
            }
        }
        let [inputs, outputs] = maps;
        out.push(Signature { key: sig.signature_key().unwrap_or_default().to_string(), subgraph, inputs, outputs });
    }
    Ok(out)
}

fn check_buffers(bytes: &[u8], model: &fb::Model<'_>) -> Result<Vec<Range<usize>>> {
    let mut out = Vec::new();
    for (i, b) in model.buffers().iter().flatten().enumerate() {
        let range = if let Some(data) = b.data().map(|v| v.bytes()) {
            let start = offset_in(bytes, data);
            start..start + data.len()
        } else if b.offset() > 1 {
            // Models over 2 GiB keep buffer data after the flatbuffer, addressed from the file start.
            let (off, size) = (b.offset(), b.size());
            let end = off.checked_add(size).filter(|&e| e <= bytes.len() as u64);
            match end {
                Some(end) => off as usize..end as usize,
                None => {
                    return Err(Error::invalid(
                        loc(&b._tab),
                        format!("buffers[{i}].offset"),
                        format!("data at offset {off} with size {size} lies outside the {}-byte file", bytes.len()),
                    ))
                }
            }
        } else {
            0..0
        };
        out.push(range);
    }
    Ok(out)
}

fn tensor_index(v: i32, num_tensors: usize, at: usize, field: impl Fn() -> String) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < num_tensors)
        .ok_or_else(|| Error::invalid(at, field(), format!("tensor index {v} out of range ({num_tensors} tensors)")))
}

fn parse_subgraph(
    bytes: &[u8],
    si: usize,
    sg: &fb::SubGraph<'_>,
    buffers: &[Range<usize>],
    num_opcodes: usize,
) -> Result<Subgraph> {
    let mut tensors = Vec::new();
    for (ti, t) in sg.tensors().iter().flatten().enumerate() {
        tensors.push(parse_tensor(si, ti, &t, buffers)?);
    }
    let n = tensors.len();
    let at = loc(&sg._tab);
    let indices = |v: Option<flatbuffers::Vector<'_, i32>>, what: &str| -> Result<Vec<usize>> {
        v.iter()
            .flatten()
            .enumerate()
            .map(|(k, x)| tensor_index(x, n, at, || format!("subgraphs[{si}].{what}[{k}]")))
            .collect()
    };
    let inputs = indices(sg.inputs(), "inputs")?;
    let outputs = indices(sg.outputs(), "outputs")?;

    let mut operators = Vec::new();
    for (oi, op) in sg.operators().iter().flatten().enumerate() {
        let at = loc(&op._tab);
        let opcode_index = op.opcode_index() as usize;
        if opcode_index >= num_opcodes {
            return Err(Error::invalid(
                at,
                format!("subgraphs[{si}].operators[{oi}].opcode_index"),
                format!("operator code {opcode_index} out of range ({num_opcodes} codes)"),
            ));
        }
        let optional = |v: Option<flatbuffers::Vector<'_, i32>>, what: &str| -> Result<Vec<Option<usize>>> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(k, x)| {
                    if x == -1 {
                        Ok(None)
                    } else {
                        tensor_index(x, n, at, || format!("subgraphs[{si}].operators[{oi}].{what}[{k}]")).map(Some)
                    }
                })
                .collect()
        };
        let custom_options = if let Some(c) = op.custom_options().map(|v| v.bytes()) {
            let start = offset_in(bytes, c);
            Some(start..start + c.len())
        } else if op.large_custom_options_size() > 0 {
            let (off, size) = (op.large_custom_options_offset(), op.large_custom_options_size());
            match off.checked_add(size).filter(|&e| e <= bytes.len() as u64) {
                Some(end) => Some(off as usize..end as usize),
                None => {
                    return Err(Error::invalid(
                        at,
                        format!("subgraphs[{si}].operators[{oi}].large_custom_options_offset"),
                        format!(
                            "custom options at offset {off} with size {size} lie outside the {}-byte file",
                            bytes.len()
                        ),
                    ))
                }
            }
        } else {
            None
        };
        operators.push(Operator {
            index: oi,
            opcode_index,
            inputs: optional(op.inputs(), "inputs")?,
            outputs: optional(op.outputs(), "outputs")?,
            intermediates: indices(op.intermediates(), &format!("operators[{oi}].intermediates"))?,
            builtin_options_type: op.builtin_options_type().0,
            options: super::options::decode(&op),
            custom_options,
            file_offset: at,
        });
    }
    Ok(Subgraph { index: si, name: sg.name().map(str::to_string), tensors, operators, inputs, outputs })
}

fn parse_tensor(si: usize, ti: usize, t: &fb::Tensor<'_>, buffers: &[Range<usize>]) -> Result<Tensor> {
    let at = loc(&t._tab);
    let field = |f: &str| format!("subgraphs[{si}].tensors[{ti}].{f}");
    let shape: Vec<i32> = t.shape().iter().flatten().collect();
    if let Some(d) = shape.iter().find(|&&d| d < -1) {
        return Err(Error::invalid(at, field("shape"), format!("negative dimension {d}")));
    }
    let dtype = TensorType(t.type_().0);
    let buffer = t.buffer() as usize;
    // Buffer 0 is the empty sentinel: TFLite accepts it even when the model lists no buffers.
    let empty = 0..0;
    let range = if buffer == 0 { buffers.first().unwrap_or(&empty) } else { buffers.get(buffer).unwrap_or(&empty) };
    if buffer != 0 && buffer >= buffers.len() {
        return Err(Error::invalid(
            at,
            field("buffer"),
            format!("buffer index {buffer} out of range ({} buffers)", buffers.len()),
        ));
    }
    let data = if range.is_empty() { None } else { Some(range.clone()) };
    if let (Some(r), Some(elem)) = (&data, dtype.size_bytes()) {
        let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let expected = dims.and_then(|d| d.iter().try_fold(elem, |acc, &x| acc.checked_mul(x)));
        if let Some(expected) = expected {
            if expected != r.len() {
                return Err(Error::invalid(
                    r.start,
                    field("buffer"),
                    format!(
                        "constant data of tensor {:?} has {} bytes, but shape {:?} of {} needs {expected}",
                        t.name().unwrap_or_default(),
                        r.len(),
                        shape,
                        dtype
                    ),
                ));
            }
        }
    }
    let quantization = match t.quantization() {
        Some(q) => {
            let scale: Vec<f32> = q.scale().iter().flatten().collect();
            let zero_point: Vec<i64> = q.zero_point().iter().flatten().collect();
            let quantized_dimension = q.quantized_dimension();
            if !zero_point.is_empty() && zero_point.len() != scale.len() {
                return Err(Error::invalid(
                    loc(&q._tab),
                    field("quantization.zero_point"),
                    format!("{} zero points for {} scales", zero_point.len(), scale.len()),
                ));
            }
            if scale.len() > 1 {
                let dim = usize::try_from(quantized_dimension).ok().and_then(|d| shape.get(d));
                if dim.is_none_or(|&d| usize::try_from(d).ok() != Some(scale.len())) {
                    return Err(Error::invalid(
                        loc(&q._tab),
                        field("quantization.quantized_dimension"),
                        format!(
                            "{} per-channel scales do not match dimension {quantized_dimension} of shape {:?}",
                            scale.len(),
                            shape
                        ),
                    ));
                }
            }
            if scale.is_empty() {
                None
            } else {
                Some(Quantization {
                    scale,
                    zero_point,
                    quantized_dimension,
                    min: q.min().iter().flatten().collect(),
                    max: q.max().iter().flatten().collect(),
                })
            }
        }
        None => None,
    };
    Ok(Tensor {
        index: ti,
        name: t.name().unwrap_or_default().to_string(),
        shape,
        shape_signature: t.shape_signature().map(|s| s.iter().collect()),
        dtype,
        quantization,
        buffer,
        is_variable: get_bool(&t._tab, fb::Tensor::VT_IS_VARIABLE),
        data,
    })
}
