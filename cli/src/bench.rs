//! `edgetpu bench`: latency of a model on the CPU, or on Edge TPU devices (`--device`): with
//! several devices, throughput of data-parallel inferences; with `--segments`, of a pipeline.

use crate::common::{self, ModelArgs};
use anyhow::{bail, Result};
use edgetpu::model::TensorType;
use serde_json::json;
use std::time::Instant;

/// Arguments of `edgetpu bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Timed invocations.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Untimed invocations first (caches, thread start-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// With Edge TPU devices: the model is compiled into these segments (comma-separated, in
    /// order; --model is the first): run them as a pipeline, segment k on device k.
    #[arg(long, value_delimiter = ',')]
    pub segments: Option<Vec<std::path::PathBuf>>,
    /// CPU models: after the timed invocations, as many again timing every node, then print the
    /// time per operator type and the slowest nodes.
    #[arg(long)]
    pub profile: bool,
}

/// Per-operator-type and per-node times of `iterations` invocations, in ms per invocation.
struct Profile {
    /// (op, ms, nodes), slowest first.
    by_op: Vec<(String, f64, usize)>,
    /// (node index, op, ms), slowest first.
    slowest: Vec<(usize, String, f64)>,
    total_ms: f64,
}

fn profile(it: &mut edgetpu::cpu::Interpreter, iterations: usize) -> Result<Profile> {
    let names: Vec<String> = it.plan().node_names().map(str::to_string).collect();
    let mut per_node = vec![std::time::Duration::ZERO; names.len()];
    for _ in 0..iterations {
        it.invoke_timed(&mut per_node)?;
    }
    let ms: Vec<f64> = per_node.iter().map(|d| d.as_secs_f64() * 1e3 / iterations as f64).collect();
    let mut by_op: Vec<(String, f64, usize)> = Vec::new();
    for (name, &t) in names.iter().zip(&ms) {
        // Node names are `OP/vVERSION`.
        let op = name.split('/').next().unwrap_or(name).to_string();
        match by_op.iter_mut().find(|(o, _, _)| *o == op) {
            Some(e) => {
                e.1 += t;
                e.2 += 1;
            }
            None => by_op.push((op, t, 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut slowest: Vec<(usize, String, f64)> =
        names.iter().zip(&ms).enumerate().map(|(i, (n, &t))| (i, n.clone(), t)).collect();
    slowest.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(Profile { by_op, slowest, total_ms: ms.iter().sum() })
}

/// The `p`-th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Deterministic input bytes: pseudo-random for 8-bit inputs, small values for float and int
/// inputs (a random bit pattern could be NaN or an out-of-range index).
pub fn fill(bytes: &mut [u8], dtype: TensorType, seed: &mut u64) {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    };
    match dtype {
        TensorType::FLOAT32 => {
            for c in bytes.chunks_exact_mut(4) {
                let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        TensorType::UINT8 | TensorType::INT8 => bytes.iter_mut().for_each(|b| *b = next() as u8),
        _ => bytes.fill(0),
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let mut loaded = common::load(&args.model, None)?;
    if let Some(rt) = loaded.runtime.take() {
        if args.profile {
            bail!("--profile times the nodes of CPU models; it does not profile Edge TPU devices yet (use --device cpu with the CPU model)");
        }
        return crate::bench_devices::run(args, &loaded.it, &rt);
    }
    if args.segments.is_some() {
        bail!("--segments needs Edge TPU devices (--device usb:0,usb:1,... or sim:0,sim:1,...)");
    }
    let it = &mut loaded.it;
    let mut seed = 0x5eed_u64;
    let types: Vec<TensorType> = it.inputs().iter().map(|t| t.dtype).collect();
    for (i, dtype) in types.into_iter().enumerate() {
        fill(it.input_mut(i)?, dtype, &mut seed);
    }
    for _ in 0..args.warmup {
        it.invoke()?;
    }
    let mut times = Vec::with_capacity(args.iterations);
    let start = Instant::now();
    for _ in 0..args.iterations {
        times.push(common::invoke(it)?);
    }
    let total_ms = common::ms(start);
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let (p50, p90, p99) = (percentile(&times, 50.0), percentile(&times, 90.0), percentile(&times, 99.0));
    let (min, max) = (times[0], times[times.len() - 1]);
    let prof = if args.profile { Some(profile(it, args.iterations)?) } else { None };
    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "threads": it.threads(),
            "nodes": it.plan().num_nodes(),
            "arena_bytes": it.arena_bytes(),
            "load_ms": loaded.load_ms,
            "warmup": args.warmup,
            "iterations": args.iterations,
            "total_ms": total_ms,
            "latency_ms": {"min": min, "mean": mean, "p50": p50, "p90": p90, "p99": p99, "max": max},
        });
        let mut doc = doc;
        if let Some(p) = &prof {
            doc["profile"] = json!({
                "nodes_ms": p.total_ms,
                "by_op": p.by_op.iter().map(|(op, ms, n)| json!({"op": op, "ms": ms, "nodes": n})).collect::<Vec<_>>(),
                "nodes": p.slowest.iter().map(|(i, op, ms)| json!({"node": i, "op": op, "ms": ms})).collect::<Vec<_>>(),
            });
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("model:      {}", args.model.model.display());
        println!("nodes:      {}", it.plan().num_nodes());
        println!("threads:    {}", it.threads());
        println!("arena:      {} bytes ({:.2} MiB)", it.arena_bytes(), it.arena_bytes() as f64 / (1 << 20) as f64);
        println!("load:       {:.2} ms", loaded.load_ms);
        println!("iterations: {} (+{} warm-up)", args.iterations, args.warmup);
        println!("latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  (min {min:.3}, mean {mean:.3}, max {max:.3})");
        if let Some(p) = &prof {
            println!(
                "profile:    {:.3} ms per invocation in nodes (mean of {} timed again node by node)",
                p.total_ms, args.iterations
            );
            for (op, ms, n) in &p.by_op {
                println!("  {op:<28} {ms:>8.3} ms  {:>5.1}%  ({n} nodes)", 100.0 * ms / p.total_ms.max(1e-9));
            }
            println!("  slowest nodes:");
            for (i, op, ms) in p.slowest.iter().take(10) {
                println!("  #{i:<4} {op:<28} {ms:>8.3} ms");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&v, 50.0), percentile(&v, 90.0), percentile(&v, 99.0)), (50.0, 90.0, 99.0));
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
    }
}
