//! Measures a model's inference latency: warm-up runs, then timed ones, and percentiles.
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example bench -- --model mobilenet_v1_1.0_224_quant_edgetpu.tflite
//! cargo run --release -p edgetpu-examples --example bench -- --model mobilenet_v1_1.0_224   # a catalog name
//! ```
//!
//! On a Coral the first inference also loads the model's parameters into the chip's memory;
//! the warm-up runs keep that out of the figures.

use anyhow::{bail, Result};
use clap::Parser;
use edgetpu_examples::{DeviceArgs, Session};
use std::path::PathBuf;
use std::time::Instant;

/// A model's inference latency: warm-up runs, then timed ones.
#[derive(Parser)]
struct Args {
    /// The model (.tflite, or its compiled *_edgetpu.tflite).
    #[arg(long)]
    model: PathBuf,
    /// Timed inferences.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Untimed inferences first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let mut session = Session::open(&args.model, &args.device)?;
    println!("{}", session.describe());

    // Any bytes do for timing; a fixed pattern keeps runs comparable.
    for i in 0..session.it.inputs().len() {
        for (k, b) in session.it.input_mut(i)?.iter_mut().enumerate() {
            *b = (k % 251) as u8;
        }
    }
    for _ in 0..args.warmup {
        session.it.invoke()?;
    }
    let mut ms = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        let start = Instant::now();
        session.it.invoke()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }

    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{} inferences: mean {mean:.3} ms, p50 {:.3}, p90 {:.3}, p99 {:.3}, min {:.3}, max {:.3}",
        ms.len(),
        at(50.0),
        at(90.0),
        at(99.0),
        ms[0],
        ms[ms.len() - 1]
    );
    println!("{:.1} inferences/s, one at a time", 1e3 / mean);
    if let Some(rt) = session.runtime() {
        for m in rt.metrics() {
            println!(
                "{}: {} runs, {} parameter bytes sent, busy {:.1} ms",
                m.name,
                m.inferences,
                m.parameter_bytes,
                m.busy.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
