//! Load-path benchmark: open + verify + decode the largest test model with this runtime, and
//! construct + allocate the official interpreter (ai-edge-litert) on the same file in the same run.
//!
//! Run: `cargo bench -p edgetpu --bench load` (needs `pip install ai-edge-litert`).
//! Prints median times and the ratio reference / ours.

use edgetpu::package::Package;
use edgetpu::Model;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/common/testdata.rs"]
mod testdata;
use testdata::testdata;

fn largest(dir: &Path, filter: &dyn Fn(&str) -> bool) -> PathBuf {
    let mut best = (0, PathBuf::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".tflite") && filter(&name) {
                let len = std::fs::metadata(&p).unwrap().len();
                if len > best.0 {
                    best = (len, p);
                }
            }
        }
    }
    best.1
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ours(path: &Path, iters: usize) -> Duration {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let model = Model::open(path).unwrap();
        let pkgs = Package::all(&model).unwrap();
        std::hint::black_box((&model, &pkgs));
        times.push(t.elapsed());
    }
    median(times)
}

const REFERENCE: &str = r#"
import sys, time, statistics
from ai_edge_litert.interpreter import Interpreter
path, iters = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(iters):
    t = time.perf_counter()
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    times.append(time.perf_counter() - t)
    del it
print(statistics.median(times))
"#;

fn reference(path: &Path, iters: usize) -> Result<Duration, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", REFERENCE])
        .arg(path)
        .arg(iters.to_string())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the reference interpreter failed (pip install ai-edge-litert): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("bad output: {e}"))?;
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    // `cargo test --benches` passes --bench-less args; run quickly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let iters = if quick { 3 } else { 50 };
    let dir = testdata();
    let cpu = largest(&dir, &|n| !n.ends_with("_edgetpu.tflite"));
    let tpu = largest(&dir, &|n| n.ends_with("_edgetpu.tflite"));
    println!("load benchmark, median of {iters} runs");
    let ours_cpu = ours(&cpu, iters);
    match reference(&cpu, iters) {
        Ok(r) => println!(
            "{} ({} B): edgetpu {:.3} ms, ai-edge-litert Interpreter+allocate_tensors {:.3} ms, ratio {:.1}x",
            cpu.file_name().unwrap().to_string_lossy(),
            std::fs::metadata(&cpu).unwrap().len(),
            ours_cpu.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
            r.as_secs_f64() / ours_cpu.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    // The reference cannot allocate a compiled model without the Edge TPU delegate: ours only.
    let ours_tpu = ours(&tpu, iters);
    println!(
        "{} ({} B): edgetpu open + decode of every package {:.3} ms (no reference: it needs the Edge TPU delegate)",
        tpu.file_name().unwrap().to_string_lossy(),
        std::fs::metadata(&tpu).unwrap().len(),
        ours_tpu.as_secs_f64() * 1e3
    );
}
