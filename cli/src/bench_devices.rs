//! `edgetpu bench --device ...`: throughput on Edge TPU devices, data-parallel over every device
//! given, or pipelined over `--segments`, with each device's metrics.

use crate::bench::{fill, percentile, Args};
use anyhow::Result;
use edgetpu::cpu::{Interpreter, Options};
use edgetpu::sched::pipeline::{Pipeline, Pool};
use edgetpu::sched::Runtime;
use edgetpu::Model;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub fn run(args: &Args, it: &Interpreter, rt: &Runtime) -> Result<()> {
    let options = Options { threads: args.model.threads.max(1), ..Options::default() };
    let mut seed = 0x5eed_u64;
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for t in it.inputs() {
        let mut b = vec![0u8; t.byte_len()];
        fill(&mut b, t.dtype, &mut seed);
        inputs.push(b);
    }
    let names: Vec<String> = it.inputs().iter().map(|t| t.name.clone()).collect();
    let devices = rt.devices().len();
    let in_flight = 2 * devices;
    let mode;
    // The apex driver throttles a hot PCIe Coral: watch its temperature during the run.
    let watch = crate::thermal_watch::ThermalWatch::start(
        crate::devices::pcie::sysfs_root(),
        crate::thermal_watch::apex_numbers(rt.devices()),
        std::time::Duration::from_millis(250),
    );
    let (total, mut times) = match &args.segments {
        Some(rest) => {
            let mut segs = vec![it.model().clone()];
            for p in rest {
                // A catalog name stands for its compiled model.
                let p = crate::models::resolve(p, || crate::models::Want::EdgeTpu)?.path;
                segs.push(Arc::new(Model::open(p)?));
            }
            mode = format!("pipeline of {} segments on {devices} device(s)", segs.len());
            let mut p = Pipeline::new(rt, &segs, in_flight, &options)?;
            let named: Vec<(String, Vec<u8>)> = names.iter().cloned().zip(inputs.iter().cloned()).collect();
            timed(args, in_flight, &mut p, |p| p.send(named.clone()), |p| p.recv().map(drop), |p| p.pending())?
        }
        None => {
            mode = format!("data-parallel on {devices} device(s), {in_flight} in flight");
            let mut pool = Pool::new(rt, it.model().clone(), in_flight, in_flight, &options)?;
            timed(args, in_flight, &mut pool, |p| p.send(inputs.clone()), |p| p.recv().map(drop), |p| p.pending())?
        }
    };
    let thermal = crate::thermal_watch::warnings(&watch.finish());
    for w in &thermal {
        eprintln!("{w}");
    }
    times.sort_by(f64::total_cmp);
    let (p50, p90, p99) = (percentile(&times, 50.0), percentile(&times, 90.0), percentile(&times, 99.0));
    let rate = args.iterations as f64 / (total / 1e3);
    let metrics = rt.metrics();
    let simulated = rt.is_simulated();
    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "mode": mode,
            "simulated": simulated,
            "iterations": args.iterations,
            "total_ms": total,
            "throughput_per_s": rate,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99},
            "queue_depth": rt.queue_depth(),
            "devices": metrics,
            "thermal_warnings": thermal,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("model:      {}", args.model.model.display());
        let note = " (simulated devices: the figures are the host's and the simulator's, not an Edge TPU's)";
        println!("mode:       {mode}{}", if simulated { note } else { "" });
        println!("iterations: {} (+ warm-up)", args.iterations);
        println!("throughput: {rate:.1} inferences/s");
        println!("latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  (send to receive, {in_flight} in flight)");
        println!("queue:      {} waiting now", rt.queue_depth());
        println!(
            "{:<10} {:>10} {:>16} {:>8} {:>8} {:>10}",
            "device", "runs", "param bytes", "hits", "misses", "busy ms"
        );
        for m in &metrics {
            println!(
                "{:<10} {:>10} {:>16} {:>8} {:>8} {:>10.1}",
                m.name,
                m.inferences,
                m.parameter_bytes,
                m.cache_hits,
                m.cache_misses,
                m.busy.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}

/// Warm-up (at least one inference per device), then `args.iterations` inferences with
/// `in_flight` outstanding: (total ms, each inference's send-to-receive ms).
fn timed<S>(
    args: &Args,
    in_flight: usize,
    s: &mut S,
    send: impl Fn(&mut S) -> edgetpu::Result<()>,
    recv: impl Fn(&mut S) -> edgetpu::Result<()>,
    pending: impl Fn(&S) -> u64,
) -> Result<(f64, Vec<f64>)> {
    for _ in 0..args.warmup.max(in_flight) {
        send(s)?;
        if pending(s) >= in_flight as u64 {
            recv(s)?;
        }
    }
    while pending(s) > 0 {
        recv(s)?;
    }
    let mut times = Vec::with_capacity(args.iterations);
    let mut sent = std::collections::VecDeque::new();
    let start = Instant::now();
    for _ in 0..args.iterations {
        send(s)?;
        sent.push_back(Instant::now());
        if pending(s) >= in_flight as u64 {
            recv(s)?;
            times.extend(sent.pop_front().map(crate::common::ms));
        }
    }
    while pending(s) > 0 {
        recv(s)?;
        times.extend(sent.pop_front().map(crate::common::ms));
    }
    Ok((crate::common::ms(start), times))
}
