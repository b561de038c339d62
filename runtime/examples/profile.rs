//! Per-op profile of the CPU interpreter: `cargo run --release -p edgetpu --example profile -- MODEL [THREADS] [RUNS]`.
use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: profile MODEL [THREADS] [RUNS]")?;
    let threads = args.get(2).map_or(Ok(1), |t| t.parse())?;
    let runs: u32 = args.get(3).map_or(Ok(20), |t| t.parse())?;
    let model = Arc::new(Model::open(path)?);
    let mut it = Interpreter::new(model, &Options { threads, ..Options::default() })?;
    it.invoke()?;
    let names: Vec<String> = it.plan().node_names().map(str::to_string).collect();
    let mut times = vec![Duration::ZERO; names.len()];
    for _ in 0..runs {
        it.invoke_timed(&mut times)?;
    }
    let total: Duration = times.iter().sum();
    let mut by_op: std::collections::BTreeMap<&str, Duration> = Default::default();
    for (n, t) in names.iter().zip(&times) {
        *by_op.entry(n.as_str()).or_default() += *t;
    }
    println!("total {:.3} ms per invoke", total.as_secs_f64() * 1e3 / runs as f64);
    let mut v: Vec<_> = by_op.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (n, t) in v {
        println!("{n:<32} {:>8.3} ms", t.as_secs_f64() * 1e3 / runs as f64);
    }
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by(|&a, &b| times[b].cmp(&times[a]));
    for &i in idx.iter().take(8) {
        println!("node {i:>3} {:<28} {:>8.3} ms", names[i], times[i].as_secs_f64() * 1e3 / runs as f64);
    }
    Ok(())
}
