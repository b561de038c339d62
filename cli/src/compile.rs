//! `edgetpu compile`: runs `edgetpu_compiler`, then summarises what it made.

use crate::inspect;
use anyhow::{Context, Result};
use edgetpu::package::Package;
use edgetpu::Model;
use edgetpu_compiler::{format_size, CompileOptions, CompileOutput, Compiler, ModelReport, Progress};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Highest package runtime version that every runtime still in use loads; runtime 14 came with
/// libedgetpu 16.0 ("Grouper").
const WIDELY_SUPPORTED_RUNTIME: i64 = 13;

/// How much longer than `--timeout` the compiler may run before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The CPU models (full-integer quantized .tflite); several are co-compiled to share the on-chip
    /// parameter cache.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Where the compiled models and logs go (default: the current directory).
    #[arg(long, short = 'o')]
    out_dir: Option<PathBuf>,
    /// Split each model into N segments, to pipeline over N Edge TPUs (compiler -n).
    #[arg(short = 'n', long, value_name = "N")]
    num_segments: Option<u32>,
    /// Lowest Edge TPU runtime version the models must run on, 10 to 14 (compiler -m).
    #[arg(short = 'm', long, value_name = "N")]
    min_runtime_version: Option<u32>,
    /// Tensors that must become outputs of the Edge TPU part, comma-separated (compiler -i).
    #[arg(short = 'i', long, value_name = "T1,T2", value_delimiter = ',')]
    intermediate_tensors: Vec<String>,
    /// If compilation fails, search backwards for a cut point that compiles (compiler -d).
    #[arg(short = 'd', long)]
    search_delegate: bool,
    /// Step, in ops, of that search (compiler -k; needs -d).
    #[arg(short = 'k', long, value_name = "N")]
    delegate_search_step: Option<u32>,
    /// Allow more than one Edge TPU subgraph (compiler -a, experimental).
    #[arg(short = 'a', long)]
    enable_multiple_subgraphs: bool,
    /// Compiler timeout in seconds (compiler -t; the process is killed 30 s after it).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u32>,
    /// The edgetpu_compiler to run (default: EDGETPU_COMPILER, then edgetpu_compiler on PATH).
    #[arg(long, value_name = "PATH")]
    compiler: Option<PathBuf>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn options(&self) -> CompileOptions {
        CompileOptions {
            out_dir: self.out_dir.clone(),
            num_segments: self.num_segments,
            min_runtime_version: self.min_runtime_version,
            intermediate_tensors: self.intermediate_tensors.clone(),
            search_delegate: self.search_delegate,
            delegate_search_step: self.delegate_search_step,
            enable_multiple_subgraphs: self.enable_multiple_subgraphs,
            show_operations: true,
            timeout_sec: self.timeout,
            wall_timeout: self.timeout.map(|t| Duration::from_secs(u64::from(t)) + KILL_MARGIN),
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let options = args.options();
    // Bad options and missing models are reported before the compiler is looked for.
    options.args(&args.models)?;
    let compiler = Compiler::locate(args.compiler.as_deref())?;
    let output = compile(&compiler, &args.models, &options)?;
    let mut warnings = Vec::new();
    let mut compiled = Vec::new();
    let files: Vec<&Path> = output.models.iter().flat_map(|m| &m.outputs).map(|f| f.paths.model.as_path()).collect();
    for (i, &path) in files.iter().enumerate() {
        // The stdout block of this file: by its output path, else by position.
        let blocks = &output.report.models;
        let block = blocks.iter().find(|b| b.output.as_deref() == Some(path)).or_else(|| {
            if blocks.len() == files.len() {
                blocks.get(i)
            } else {
                None
            }
        });
        let summary = summarize(path);
        warnings.extend(model_warnings(path, summary.as_ref().ok(), block.and_then(|b| b.off_chip_streamed_bytes)));
        compiled.push((path.to_path_buf(), summary));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document(&output, &compiled, &warnings))?);
    } else {
        print!("{}", text(&output, &compiled));
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// Runs the compiler with a progress indicator on stderr: a live elapsed-time line on a terminal,
/// plain start and end lines otherwise.
fn compile(compiler: &Compiler, models: &[PathBuf], options: &CompileOptions) -> Result<CompileOutput> {
    let tty = std::io::stderr().is_terminal();
    let what = if models.len() == 1 { models[0].display().to_string() } else { format!("{} models", models.len()) };
    let version = compiler.version()?;
    eprintln!("compiling {what} with edgetpu_compiler {version} ({})", compiler.path.display());
    let mut shown = 0u64;
    let result = compiler.compile_with_progress(models, options, &mut |p| {
        let Progress::Elapsed(d) = p else { return };
        if tty {
            let tenths = (d.as_millis() / 100) as u64;
            if tenths != shown {
                shown = tenths;
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r  running... {:.1} s", d.as_secs_f64());
                let _ = err.flush();
            }
        } else if d.as_secs() / 10 > shown {
            // A plain line every 10 s for logs.
            shown = d.as_secs() / 10;
            eprintln!("  still running after {} s", shown * 10);
        }
    });
    if tty {
        eprint!("\r\x1b[2K");
    }
    let output = result.with_context(|| format!("compiling {what}"))?;
    eprintln!("compiler finished in {:.1} s", output.elapsed.as_secs_f64());
    Ok(output)
}

/// What the runtime's loader says about a compiled model (the `inspect` figures).
struct Summary {
    operators: usize,
    tpu_ops: usize,
    cpu_ops: usize,
    packages: Vec<Value>,
}

fn summarize(path: &Path) -> Result<Summary> {
    let model = Model::open(path)?;
    let packages = Package::all(&model)?;
    let doc = inspect::report(&model, path, &packages)?;
    let ops: Vec<&Value> =
        doc["subgraphs"].as_array().into_iter().flatten().flat_map(|sg| sg["operators"].as_array()).flatten().collect();
    let tpu_ops = ops.iter().filter(|o| o["runs_on"] == "tpu").count();
    Ok(Summary {
        operators: ops.len(),
        tpu_ops,
        cpu_ops: ops.len() - tpu_ops,
        packages: doc["edgetpu"].as_array().cloned().unwrap_or_default(),
    })
}

/// Warnings about a compiled model: parameters streamed per inference (from the compiler's
/// off-chip figure, else from the package), a runtime version older runtimes refuse, no Edge TPU
/// part at all.
fn model_warnings(path: &Path, s: Option<&Summary>, off_chip: Option<u64>) -> Vec<String> {
    let p = path.display();
    let mut out = Vec::new();
    let packages = s.map_or(&[][..], |s| s.packages.as_slice());
    let streamed: u64 = packages.iter().filter_map(|k| k["streamed_parameter_bytes"].as_u64()).sum();
    if let Some(b) = off_chip.filter(|&b| b > 0).or((streamed > 0).then_some(streamed)) {
        out.push(format!(
            "{p}: {} of parameters do not fit in the on-chip memory and are streamed to the Edge TPU with every \
             inference, which is slower; use a smaller model, or co-compile fewer models (they share the memory)",
            format_size(b)
        ));
    }
    if s.is_some() && packages.is_empty() {
        out.push(format!(
            "{p}: no operator runs on the Edge TPU (no edgetpu-custom-op); the whole model runs on the CPU"
        ));
    }
    let runtime = packages.iter().filter_map(|k| k["min_runtime_version"].as_i64()).max();
    if let Some(v) = runtime.filter(|&v| v > WIDELY_SUPPORTED_RUNTIME) {
        out.push(format!(
            "{p}: needs Edge TPU runtime version {v}; older runtimes (libedgetpu before 16.0, runtime version \
             {WIDELY_SUPPORTED_RUNTIME} and below) refuse it; compile with -m {WIDELY_SUPPORTED_RUNTIME} to support them"
        ));
    }
    for k in packages {
        if k["runnable"] == false {
            out.push(format!("{p}: this runtime cannot run it: {}", k["unsupported_reason"].as_str().unwrap_or("")));
        }
    }
    out
}

fn opt_size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), format_size)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn block_text(s: &mut String, m: &ModelReport) {
    let name = |p: &Option<PathBuf>| p.as_ref().map_or_else(|| "?".into(), |p| p.display().to_string());
    let _ = writeln!(s, "{} -> {}", name(&m.input), name(&m.output));
    let _ = writeln!(s, "  size: input {}, output {}", opt_size(m.input_bytes), opt_size(m.output_bytes));
    let _ = writeln!(
        s,
        "  on-chip memory: {} used for caching parameters, {} left; off-chip: {} streamed per inference",
        opt_size(m.on_chip_used_bytes),
        opt_size(m.on_chip_remaining_bytes),
        opt_size(m.off_chip_streamed_bytes)
    );
    let _ = writeln!(
        s,
        "  operations: {} total, {} on the Edge TPU, {} on the CPU; {} Edge TPU subgraph(s)",
        opt(m.ops_total()),
        opt(m.ops_on_tpu()),
        opt(m.ops_on_cpu()),
        opt(m.subgraphs)
    );
    for r in m.unmapped() {
        let _ = writeln!(s, "    CPU: {} x{}: {} ({})", r.operator, r.count, r.status, r.reason.explanation());
    }
}

fn text(out: &CompileOutput, compiled: &[(PathBuf, Result<Summary>)]) -> String {
    let r = &out.report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "edgetpu_compiler {}: {} in {} ms{}",
        opt(r.version),
        if r.cocompiled { "co-compiled" } else { "compiled" },
        opt(r.compile_time_ms),
        if r.delegate_search_attempts.is_empty() {
            String::new()
        } else {
            format!(" (delegate search tried {:?} ops)", r.delegate_search_attempts)
        }
    );
    for m in &r.models {
        block_text(&mut s, m);
    }
    for (path, summary) in compiled {
        let _ = writeln!(s, "compiled model {}:", path.display());
        match summary {
            Ok(sum) => {
                let _ = writeln!(
                    s,
                    "  operators: {} ({} edgetpu-custom-op, {} on the CPU)",
                    sum.operators, sum.tpu_ops, sum.cpu_ops
                );
                for k in &sum.packages {
                    let _ = writeln!(
                        s,
                        "  parameters: {} cached on chip, {} streamed per inference; min runtime version {}",
                        format_size(k["cached_parameter_bytes"].as_u64().unwrap_or(0)),
                        format_size(k["streamed_parameter_bytes"].as_u64().unwrap_or(0)),
                        k["min_runtime_version"]
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "  cannot inspect it: {e:#}");
            }
        }
    }
    if !r.unparsed.is_empty() {
        let _ = writeln!(s, "compiler output not understood ({} lines):", r.unparsed.len());
        for l in &r.unparsed {
            let _ = writeln!(s, "  {l}");
        }
    }
    s
}

fn document(out: &CompileOutput, compiled: &[(PathBuf, Result<Summary>)], warnings: &[String]) -> Value {
    let models: Vec<Value> = compiled
        .iter()
        .map(|(path, summary)| match summary {
            Ok(s) => json!({
                "path": path.display().to_string(),
                "operators": s.operators,
                "tpu_ops": s.tpu_ops,
                "cpu_ops": s.cpu_ops,
                "edgetpu": s.packages.iter().map(|k| json!({
                    "min_runtime_version": k["min_runtime_version"],
                    "cached_parameter_bytes": k["cached_parameter_bytes"],
                    "streamed_parameter_bytes": k["streamed_parameter_bytes"],
                    "runnable": k["runnable"],
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({ "path": path.display().to_string(), "error": format!("{e:#}") }),
        })
        .collect();
    json!({
        "compiler": out.compiler.display().to_string(),
        "run": out,
        "compiled_models": models,
        "warnings": warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(packages: Vec<Value>) -> Summary {
        Summary { operators: 3, tpu_ops: 1, cpu_ops: 2, packages }
    }

    #[test]
    fn warnings_for_streaming_new_runtime_and_no_tpu_part() {
        let p = Path::new("m_edgetpu.tflite");
        let ok = json!({ "min_runtime_version": 13, "streamed_parameter_bytes": 0, "runnable": true });
        assert!(model_warnings(p, Some(&summary(vec![ok.clone()])), Some(0)).is_empty());
        let new = json!({ "min_runtime_version": 14, "streamed_parameter_bytes": 0, "runnable": true });
        let w = model_warnings(p, Some(&summary(vec![new])), None);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("runtime version 14") && w[0].contains("libedgetpu before 16.0") && w[0].contains("-m 13")
        );
        let streamed = json!({ "min_runtime_version": 12, "streamed_parameter_bytes": 1_782_579, "runnable": true });
        let w = model_warnings(p, Some(&summary(vec![streamed])), None);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("1.70MiB of parameters") && w[0].contains("streamed"), "{w:?}");
        // The compiler's own figure wins, and one warning is given.
        let w = model_warnings(p, Some(&summary(vec![ok])), Some(320 * 1024));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("320.00KiB of parameters"), "{w:?}");
        let w = model_warnings(p, Some(&summary(vec![])), None);
        assert!(w[0].contains("no operator runs on the Edge TPU"), "{w:?}");
        assert!(model_warnings(p, None, None).is_empty());
    }
}
