//! The latency of `Interpreter::invoke` through the Rust API, for comparison with the Python
//! binding (`python/bench.py` runs this and the same loop in Python, on the same model and device).
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example invoke_latency -- --model split_concat.tflite
//! cargo run --release -p edgetpu-examples --example invoke_latency -- --model seg_edgetpu.tflite --device sim --frame
//! ```
//!
//! Prints one line, `median_us=<µs> mean_us=<µs> runs=<n>`: per `invoke()`, or with `--frame`
//! per input copy + `invoke()` + output copy (what `set_tensor`, `invoke` and `get_tensor` do).

use anyhow::{bail, Result};
use clap::Parser;
use edgetpu::{DeviceSpec, Interpreter, Model, Runtime, RuntimeOptions};
use std::path::PathBuf;
use std::time::Instant;

/// Latency of invoke() through the Rust API.
#[derive(Parser)]
struct Args {
    /// The model (.tflite, or a compiled *_edgetpu.tflite with --device).
    #[arg(long)]
    model: PathBuf,
    /// `cpu`, or the Edge TPU devices (`usb`, `pci`, `sim`, ...) as `load_delegate` opens them.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs (after as many warm-up runs, at most 50).
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Time input copy + invoke + output copy instead of invoke alone.
    #[arg(long)]
    frame: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let model = Model::open(&args.model)?;
    let spec = DeviceSpec::parse(&args.device)?;
    let runtime = match spec {
        DeviceSpec::Cpu => None,
        spec => Some(Runtime::open(&spec, RuntimeOptions::default())?),
    };
    let builder = Interpreter::builder(model).threads(args.threads);
    let mut it = match &runtime {
        Some(rt) => builder.runtime(rt).build()?,
        None => builder.device(DeviceSpec::Cpu).build()?,
    };
    let inputs: Vec<Vec<u8>> = (0..it.inputs().len())
        .map(|i| it.inputs()[i].byte_len())
        .map(|n| (0..n).map(|k| (k * 7 % 251) as u8).collect())
        .collect();
    for (i, bytes) in inputs.iter().enumerate() {
        it.set_input(i, bytes)?;
    }
    let mut out = vec![0u8; it.output(0)?.len()];
    let mut times = Vec::with_capacity(args.runs);
    for run in 0..args.runs + args.runs.min(50) {
        let start = Instant::now();
        if args.frame {
            it.set_input(0, &inputs[0])?;
            it.invoke()?;
            out.copy_from_slice(it.output(0)?);
        } else {
            it.invoke()?;
        }
        let elapsed = start.elapsed();
        if run >= args.runs.min(50) {
            times.push(elapsed.as_secs_f64() * 1e6);
        }
    }
    std::hint::black_box(&out);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    println!("median_us={:.2} mean_us={:.2} runs={}", times[times.len() / 2], mean, times.len());
    Ok(())
}
