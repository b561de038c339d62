//! `edgetpu check`: predicts, without the compiler, which operators of a CPU model
//! `edgetpu_compiler` would map to the Edge TPU, and whether the weights would fit on chip.

use anyhow::Result;
use edgetpu::Model;
use edgetpu_compiler::check::{check, CheckOptions, CheckReport};
use edgetpu_compiler::format_size;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The CPU model (.tflite), or the name of a catalog model fetched with `edgetpu models fetch`.
    model: PathBuf,
    /// Predict for `edgetpu_compiler -a`: more than one Edge TPU subgraph allowed.
    #[arg(short = 'a', long)]
    multiple_subgraphs: bool,
    /// Print a JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    // A catalog name means its CPU model: that is what the compiler takes.
    let resolved = crate::models::resolve(&args.model, || crate::models::Want::Cpu)?;
    let path = resolved.path.as_path();
    let model = Model::open(path)?;
    let report = check(&model, &CheckOptions { multiple_subgraphs: args.multiple_subgraphs });
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        if let Value::Object(map) = &mut doc {
            map.insert("path".into(), Value::String(path.display().to_string()));
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", text(path, &report));
    }
    Ok(())
}

fn text(path: &Path, r: &CheckReport) -> String {
    let mut s = String::new();
    if let Some(compiled) = &r.compiled {
        compiled_text(&mut s, path, r, compiled);
        return s;
    }
    let mode =
        if r.options.multiple_subgraphs { "with -a (several Edge TPU subgraphs)" } else { "one Edge TPU subgraph" };
    let _ = writeln!(s, "{}: prediction for edgetpu_compiler 16, {mode}", path.display());
    if r.other_subgraphs > 0 {
        let _ = writeln!(s, "(only the main subgraph is checked; the model has {} more)", r.other_subgraphs);
    }
    let _ = writeln!(s);
    let width = r.operators.iter().map(|v| v.op.len()).max().unwrap_or(8).max(8);
    let _ = writeln!(s, "{:>5}  {:<width$}  where  reason", "#", "operator");
    for v in &r.operators {
        let place = if v.on_tpu { "TPU" } else { "CPU" };
        let _ = writeln!(s, "{:>5}  {:<width$}  {place:<5}  {}", v.index, v.op, v.reason);
    }
    // The compiler's own operator table: one row per (operator, status).
    let mut rows: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for v in &r.operators {
        *rows.entry((v.op.as_str(), v.status)).or_default() += 1;
    }
    let _ = writeln!(s, "\n{:<30} {:<10} Status", "Operator", "Count");
    for ((op, status), n) in &rows {
        let _ = writeln!(s, "{op:<30} {n:<10} {status}");
    }
    let _ = writeln!(s);
    let subgraphs = match r.tpu_subgraphs {
        1 => "1 Edge TPU subgraph".to_string(),
        n => format!("{n} Edge TPU subgraphs"),
    };
    let _ = writeln!(
        s,
        "{} of {} operations would run on the Edge TPU, {} on the CPU ({subgraphs}).",
        r.tpu_ops, r.total_ops, r.cpu_ops
    );
    let placement = if r.fits_on_chip {
        "cached in on-chip memory"
    } else {
        "more than the on-chip memory: the rest would be streamed over USB with every inference"
    };
    let _ = writeln!(
        s,
        "Estimated parameters: {} of {} on-chip memory, {placement}.",
        format_size(r.estimated_parameter_bytes),
        format_size(r.on_chip_memory_bytes)
    );
    let _ = writeln!(
        s,
        "(The estimate sums the model's constant weights; the compiler re-lays them out and needed \
         6 to 33% more on the test models, an LSTM 4.5 times more.)"
    );
    let _ = writeln!(s, "Not checked (run `edgetpu compile` for the final word):");
    for item in r.not_checked {
        let _ = writeln!(s, "  - {item}");
    }
    s
}

fn compiled_text(s: &mut String, path: &Path, r: &CheckReport, ops: &[edgetpu_compiler::check::CompiledOp]) {
    let _ = writeln!(s, "{}: already compiled for the Edge TPU; nothing to predict.", path.display());
    for c in ops {
        let _ = write!(s, "  edgetpu-custom-op (operator {})", c.operator_index);
        if let Some(e) = &c.error {
            let _ = writeln!(s, ": its package does not decode: {e}");
            continue;
        }
        let version = c.compiler_version.as_deref().unwrap_or("?");
        let runtime = c.min_runtime_version.map_or("?".to_string(), |v| v.to_string());
        let _ = writeln!(s, ": compiler {version}, minimum runtime version {runtime}");
        let _ = writeln!(s, "    reads  {}", c.inputs.join(", "));
        let _ = writeln!(s, "    writes {}", c.outputs.join(", "));
        let _ = writeln!(
            s,
            "    parameters: {} cached on chip, {} streamed with every inference",
            format_size(c.cached_parameter_bytes),
            format_size(c.streamed_parameter_bytes)
        );
    }
    let cpu: Vec<String> = r.operators.iter().filter(|v| !v.on_tpu).map(|v| format!("#{} {}", v.index, v.op)).collect();
    if cpu.is_empty() {
        let _ = writeln!(s, "Every operator runs in the Edge TPU custom op.");
    } else {
        let verb = if cpu.len() == 1 { "operator stays" } else { "operators stay" };
        let _ = writeln!(s, "{} {verb} on the CPU: {}", cpu.len(), cpu.join(", "));
    }
    let _ = writeln!(s, "To see why, check the CPU model it was compiled from.");
}
