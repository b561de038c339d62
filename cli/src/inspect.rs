//! `edgetpu inspect`: a readable summary or a stable JSON document of a model.

use anyhow::{Context, Result};
use edgetpu::model::OpKind;
use edgetpu::package::{DmaHint, Executable, Layer, Package, CUSTOM_OP_CODE, ON_CHIP_MEMORY_BYTES};
use edgetpu::Model;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

pub fn run(path: &Path, as_json: bool) -> Result<()> {
    // A fetched catalog model may be named instead of a path: its compiled variant if fetched.
    let resolved = crate::models::resolve(path, || crate::models::Want::CompiledIfCached)?;
    let path = resolved.path.as_path();
    let model = Model::open(path)?;
    let packages = Package::all(&model)?;
    let doc = report(&model, path, &packages)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", text(&doc));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    edgetpu_models::download::sha256_hex(bytes)
}

/// The JSON document of `edgetpu inspect --json`.
pub fn report(model: &Model, path: &Path, packages: &[Package<'_>]) -> Result<Value> {
    let subgraphs: Vec<Value> = model
        .subgraphs()
        .iter()
        .map(|sg| {
            let tensors: Vec<Value> = sg
                .tensors
                .iter()
                .map(|t| {
                    let q = t.quantization.as_ref();
                    json!({
                        "index": t.index,
                        "name": t.name,
                        "shape": t.shape,
                        "type": t.dtype.name(),
                        "buffer": t.buffer,
                        "constant_bytes": model.tensor_data(t).map_or(0, <[u8]>::len),
                        "is_variable": t.is_variable,
                        "quantization": q.map(|q| json!({
                            "scale": q.scale,
                            "zero_point": q.zero_point,
                            "quantized_dimension": q.quantized_dimension,
                        })),
                    })
                })
                .collect();
            let operators: Vec<Value> = sg
                .operators
                .iter()
                .map(|op| {
                    let code = model.opcode(op);
                    let on_tpu = matches!(&code.kind, OpKind::Custom(c) if c == CUSTOM_OP_CODE);
                    json!({
                        "index": op.index,
                        "op": code.name(),
                        "custom": matches!(code.kind, OpKind::Custom(_)),
                        "version": code.version,
                        "inputs": op.inputs.iter().map(|i| i.map_or(-1, |i| i as i64)).collect::<Vec<_>>(),
                        "outputs": op.outputs.iter().map(|i| i.map_or(-1, |i| i as i64)).collect::<Vec<_>>(),
                        "runs_on": if on_tpu { "tpu" } else { "cpu" },
                    })
                })
                .collect();
            json!({
                "index": sg.index,
                "name": sg.name,
                "inputs": sg.inputs,
                "outputs": sg.outputs,
                "tensors": tensors,
                "operators": operators,
            })
        })
        .collect();
    let labels = match model.labels() {
        Ok(l) => l.map(|l| json!({ "count": l.len(), "first": l.iter().take(3).collect::<Vec<_>>() })),
        Err(e) => Some(json!({ "error": e.to_string() })),
    };
    let files: Vec<Value> = model
        .associated_files()
        .unwrap_or_default()
        .iter()
        .map(|f| json!({ "name": f.name, "size_bytes": f.data.len(), "offset": f.offset }))
        .collect();
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    Ok(json!({
        "path": path.display().to_string(),
        "size_bytes": size,
        "sha256": hex(model.bytes()),
        "schema_version": model.version(),
        "description": model.description(),
        "min_runtime_version": model.min_runtime_version(),
        "metadata": model.metadata().iter().map(|m| json!({ "name": m.name, "size_bytes": model.buffer(m.buffer).map_or(0, <[u8]>::len) })).collect::<Vec<_>>(),
        "associated_files": files,
        "labels": labels,
        "subgraphs": subgraphs,
        "edgetpu": packages.iter().map(package).collect::<Vec<_>>(),
    }))
}

fn layer(l: &Layer, is_output: bool) -> Value {
    let mut v = json!({
        "name": l.name,
        "y": l.y_dim,
        "x": l.x_dim,
        "z": l.z_dim,
        "type": l.data_type.name(),
        "zero_point": l.zero_point,
        "scale": l.scale,
        "size_bytes": l.size_bytes,
        "execution_count": l.execution_count,
    });
    if is_output {
        v["tiled"] = json!(l.is_tiled());
    }
    v
}

fn hint(h: &DmaHint) -> Value {
    match h {
        DmaHint::Instruction { chunk } => json!({ "kind": "instruction", "chunk": chunk }),
        DmaHint::Input { name, batch, offset, size } => {
            json!({ "kind": "input", "name": name, "batch": batch, "offset": offset, "size": size })
        }
        DmaHint::Output { name, batch, offset, size } => {
            json!({ "kind": "output", "name": name, "batch": batch, "offset": offset, "size": size })
        }
        DmaHint::Parameter { offset, size } => json!({ "kind": "parameter", "offset": offset, "size": size }),
        DmaHint::Scratch { infeed, offset, size } => {
            json!({ "kind": "scratch", "direction": if *infeed { "infeed" } else { "outfeed" }, "offset": offset, "size": size })
        }
        DmaHint::Interrupt { number } => json!({ "kind": "interrupt", "number": number }),
        DmaHint::Fence => json!({ "kind": "fence" }),
    }
}

fn executable(e: &Executable<'_>) -> Value {
    let field_offsets: Vec<Value> = e
        .bitstreams
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            b.field_offsets.iter().map(move |f| {
                json!({
                    "bitstream": i,
                    "offset_bit": f.offset_bit,
                    "desc": f.desc.name(),
                    "position": f.position.name(),
                    "name": f.name,
                    "batch": f.batch,
                })
            })
        })
        .collect();
    json!({
        "type": e.kind.name(),
        "name": e.name,
        "offset": e.offset,
        "size_bytes": e.bytes.len(),
        "instruction_bytes": e.bitstreams.iter().map(|b| b.data.len()).collect::<Vec<_>>(),
        "parameter_bytes": e.parameters.len(),
        "parameter_caching_token": format!("{:#018x}", e.parameter_caching_token),
        "field_offsets": field_offsets,
        "batch_size": e.batch_size,
        "scratch_size_bytes": e.scratch_size_bytes,
        "used_narrow_memory_bytes_per_tile": e.used_narrow_memory_bytes_per_tile,
        "dma_hints": e.dma_hints.hints.iter().map(hint).collect::<Vec<_>>(),
        "fully_deterministic": e.dma_hints.fully_deterministic,
        "input_layers": e.input_layers.iter().map(|l| layer(l, false)).collect::<Vec<_>>(),
        "output_layers": e.output_layers.iter().map(|l| layer(l, true)).collect::<Vec<_>>(),
    })
}

fn package(p: &Package<'_>) -> Value {
    let main = p.main();
    let unsupported = p.ensure_runnable().err();
    json!({
        "operator_index": p.operator_index,
        "subgraph": p.subgraph,
        "package_offset": p.offset,
        "package_bytes": p.bytes.len(),
        "compiler_version": p.compiler_version,
        "min_runtime_version": p.min_runtime_version,
        "runnable": unsupported.is_none(),
        "unsupported_reason": unsupported.map(|e| e.to_string()),
        "parameter_caching_token": format!("{:#018x}", p.caching_token()),
        "cached_parameter_bytes": p.cached_parameter_bytes(),
        "streamed_parameter_bytes": p.streamed_parameter_bytes(),
        "fits_on_chip": p.fits_on_chip(),
        "on_chip_memory_bytes": ON_CHIP_MEMORY_BYTES,
        "main_executable": main.index,
        "executables": p.executables.iter().map(executable).collect::<Vec<_>>(),
        "input_layers": main.input_layers.iter().map(|l| layer(l, false)).collect::<Vec<_>>(),
        "output_layers": main.output_layers.iter().map(|l| layer(l, true)).collect::<Vec<_>>(),
    })
}

fn text(doc: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  ({} bytes, sha256 {})",
        doc["path"].as_str().unwrap_or(""),
        doc["size_bytes"],
        doc["sha256"].as_str().unwrap_or("")
    );
    if let Some(labels) = doc["labels"].get("count") {
        let _ = writeln!(s, "labels: {labels} packed in the model");
    }
    for sg in doc["subgraphs"].as_array().into_iter().flatten() {
        let ops = sg["operators"].as_array().cloned().unwrap_or_default();
        let tpu = ops.iter().filter(|o| o["runs_on"] == "tpu").count();
        let _ = writeln!(
            s,
            "subgraph {}: {} tensors, {} operators ({} on the Edge TPU, {} on the CPU)",
            sg["index"],
            sg["tensors"].as_array().map_or(0, Vec::len),
            ops.len(),
            tpu,
            ops.len() - tpu
        );
        let tensors = sg["tensors"].as_array().cloned().unwrap_or_default();
        let describe = |i: &Value| -> String {
            let t = &tensors[i.as_u64().unwrap_or(0) as usize];
            let q = &t["quantization"];
            let quant =
                if q.is_null() { String::new() } else { format!(" scale {} zp {}", q["scale"][0], q["zero_point"][0]) };
            format!(
                "#{} {:?} {} {}{}",
                t["index"],
                t["name"].as_str().unwrap_or(""),
                t["type"].as_str().unwrap_or(""),
                t["shape"],
                quant
            )
        };
        for i in sg["inputs"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "  input  {}", describe(i));
        }
        for i in sg["outputs"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "  output {}", describe(i));
        }
        for op in &ops {
            let _ = writeln!(
                s,
                "  op {:>3} {:<24} v{} {} in {} out {}",
                op["index"],
                op["op"].as_str().unwrap_or(""),
                op["version"],
                op["runs_on"].as_str().unwrap_or(""),
                op["inputs"],
                op["outputs"]
            );
        }
    }
    for p in doc["edgetpu"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "edgetpu-custom-op at operator {}: compiler {:?}, min runtime version {}{}",
            p["operator_index"],
            p["compiler_version"].as_str().unwrap_or(""),
            p["min_runtime_version"],
            if p["runnable"] == true {
                String::new()
            } else {
                format!(" (cannot run: {})", p["unsupported_reason"].as_str().unwrap_or(""))
            }
        );
        let _ = writeln!(
            s,
            "  caching token {}, {} B cached on chip ({}), {} B streamed per inference",
            p["parameter_caching_token"].as_str().unwrap_or(""),
            p["cached_parameter_bytes"],
            if p["fits_on_chip"] == true { "fits in 8 MiB" } else { "does NOT fit in 8 MiB" },
            p["streamed_parameter_bytes"]
        );
        for e in p["executables"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  executable {}: instructions {} B, parameters {} B, {} field offsets, {} DMA hints{}",
                e["type"].as_str().unwrap_or(""),
                e["instruction_bytes"],
                e["parameter_bytes"],
                e["field_offsets"].as_array().map_or(0, Vec::len),
                e["dma_hints"].as_array().map_or(0, Vec::len),
                if e["fully_deterministic"] == true { "" } else { " (not fully deterministic)" }
            );
        }
        for (dir, key) in [("in ", "input_layers"), ("out", "output_layers")] {
            for l in p[key].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "  {dir} {:?} {}x{}x{} {} zp {} scale {} padded {} B{}",
                    l["name"].as_str().unwrap_or(""),
                    l["y"],
                    l["x"],
                    l["z"],
                    l["type"].as_str().unwrap_or(""),
                    l["zero_point"],
                    l["scale"],
                    l["size_bytes"],
                    if l["tiled"] == true { ", tiled" } else { "" }
                );
            }
        }
    }
    s
}
