//! CPU interpreter benchmark against ai-edge-litert (default XNNPACK delegate), same model, same
//! input bytes (the first golden of each model), same thread count, in the same run.
//!
//! Run: `cargo bench -p edgetpu --bench cpu` (needs `pip install ai-edge-litert`; `PYTHON` names
//! the interpreter that has it). Prints, at 1 and 2 threads:
//! - the median invoke latency of both and the ratio ours / reference;
//! - the time to first inference of both, each in a fresh process: ours is `Model::open` +
//!   interpreter build + first `invoke`, the reference's `Interpreter()` + `allocate_tensors()` +
//!   first `invoke()` (the median of several processes; Python's start-up and imports are not
//!   counted, nor is ours);
//!
//! then the 2-thread speed-up of both per model, the geometric means of the ratios, and the peak
//! RSS of a process that loads and runs mobilenet_v2 with this runtime.

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const MODELS: &[(&str, &str)] = &[
    ("mobilenet_v1_0.75_192_quant", "mobilenet_v1_0.75_192_quant.tflite"),
    ("mobilenet_v2_1.0_224_quant", "mobilenet_v2_1.0_224_quant.tflite"),
    ("tf2_mobilenet_v2_1.0_224_ptq", "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
    ("deeplabv3_mnv2_dm05_pascal_quant", "deeplabv3_mnv2_dm05_pascal_quant.tflite"),
    ("traffic_model", "automl_video_ondevice/traffic_model.tflite"),
    ("movenet_single_pose_lightning_ptq", "movenet_single_pose_lightning_ptq.tflite"),
];

#[path = "../tests/common/testdata.rs"]
mod testdata;
use testdata::testdata;

/// Input files of the first golden run of `stem` (sorted by tag).
fn golden_inputs(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let gdir = dir.join("golden").join(stem);
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(&gdir)
        .unwrap_or_else(|e| panic!("{}: {e}", gdir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    jsons.sort();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&jsons[0]).unwrap()).unwrap();
    json["inputs"].as_array().unwrap().iter().map(|i| gdir.join(i["file"].as_str().unwrap())).collect()
}

fn read_input(p: &Path) -> Vec<u8> {
    let f = std::fs::File::open(p).unwrap();
    let mut out = Vec::new();
    if p.extension().is_some_and(|x| x == "gz") {
        flate2::read::MultiGzDecoder::new(f).read_to_end(&mut out).unwrap();
    } else {
        std::io::BufReader::new(f).read_to_end(&mut out).unwrap();
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ours(model: &Path, inputs: &[Vec<u8>], threads: usize, runs: usize) -> (f64, usize) {
    let model = Arc::new(Model::open(model).unwrap());
    let mut it = Interpreter::new(model, &Options { threads, ..Options::default() }).unwrap();
    for (i, b) in inputs.iter().enumerate() {
        it.set_input(i, b).unwrap();
    }
    for _ in 0..3 {
        it.invoke().unwrap();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        it.invoke().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(times), it.arena_bytes())
}

/// Time to first inference of this runtime, in this (fresh) process: open, build, set the
/// inputs, invoke once.
fn ours_first(model: &Path, inputs: &[Vec<u8>], threads: usize) -> f64 {
    let t = Instant::now();
    let model = Arc::new(Model::open(model).unwrap());
    let mut it = Interpreter::new(model, &Options { threads, ..Options::default() }).unwrap();
    for (i, b) in inputs.iter().enumerate() {
        it.set_input(i, b).unwrap();
    }
    it.invoke().unwrap();
    t.elapsed().as_secs_f64() * 1e3
}

/// Median time to first inference of this runtime over `n` fresh processes.
fn ours_first_median(stem: &str, threads: usize, n: usize) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let times = (0..n)
        .map(|_| {
            let out = Command::new(&exe)
                .env("EDGETPU_BENCH_FIRST_CHILD", format!("{stem} {threads}"))
                .output()
                .expect("the benchmark re-runs itself");
            String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().expect("child prints its time")
        })
        .collect();
    median(times)
}

/// Given `first=1`, times one first inference and prints it; otherwise the median invoke.
const REFERENCE: &str = r#"
import sys, time, statistics, gzip, numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, runs, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
data = [gzip.open(f).read() if f.endswith('.gz') else open(f, 'rb').read() for f in sys.argv[5:]]
t0 = time.perf_counter()
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
for d, b in zip(it.get_input_details(), data):
    it.set_tensor(d['index'], np.frombuffer(b, dtype=d['dtype']).reshape(d['shape']))
it.invoke()
if first:
    print((time.perf_counter() - t0) * 1e3)
    sys.exit(0)
for _ in range(2):
    it.invoke()
times = []
for _ in range(runs):
    t = time.perf_counter(); it.invoke(); times.append((time.perf_counter() - t) * 1e3)
print(statistics.median(times))
"#;

fn reference(model: &Path, inputs: &[PathBuf], threads: usize, runs: usize, first: bool) -> Result<f64, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", REFERENCE])
        .arg(model)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .arg(if first { "1" } else { "0" })
        .args(inputs)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the reference interpreter failed (pip install ai-edge-litert): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("bad output: {e}"))
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let dir = testdata();
    if let Ok(stem) = std::env::var("EDGETPU_BENCH_RSS_CHILD") {
        // Child process: load, run once, report peak RSS.
        let (_, file) = MODELS.iter().find(|m| m.0 == stem).unwrap();
        let inputs: Vec<Vec<u8>> = golden_inputs(&dir, &stem).iter().map(|p| read_input(p)).collect();
        let (_, arena) = ours(&dir.join(file), &inputs, 1, 1);
        println!("{} {arena}", peak_rss_kib().unwrap_or(0));
        return;
    }
    if let Ok(arg) = std::env::var("EDGETPU_BENCH_FIRST_CHILD") {
        // Child process: time to first inference.
        let (stem, threads) = arg.split_once(' ').unwrap();
        let (_, file) = MODELS.iter().find(|m| m.0 == stem).unwrap();
        let inputs: Vec<Vec<u8>> = golden_inputs(&dir, stem).iter().map(|p| read_input(p)).collect();
        println!("{}", ours_first(&dir.join(file), &inputs, threads.parse().unwrap()));
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let (runs, firsts) = if quick { (2, 1) } else { (100, 7) };
    println!(
        "CPU benchmark: median invoke latency (ms) over {runs} runs after 3 warm-up runs, and time to first \
         inference (ms, median of {firsts} fresh processes); ratio = ours / ai-edge-litert (XNNPACK)"
    );
    println!(
        "{:<36} {:>3} {:>9} {:>9} {:>6}   {:>9} {:>9} {:>6}",
        "model", "thr", "ours", "litert", "ratio", "1st ours", "1st ref", "ratio"
    );
    let fail = |e: String| -> ! {
        eprintln!("error: {e}");
        std::process::exit(1)
    };
    let (mut ratios, mut first_ratios, mut speedups) = (Vec::new(), Vec::new(), Vec::new());
    for (stem, file) in MODELS {
        let model = dir.join(file);
        let paths = golden_inputs(&dir, stem);
        let inputs: Vec<Vec<u8>> = paths.iter().map(|p| read_input(p)).collect();
        let mut lat = [(0.0, 0.0); 2];
        for (slot, threads) in [1, 2].into_iter().enumerate() {
            let (o, _) = ours(&model, &inputs, threads, runs);
            let r = reference(&model, &paths, threads, runs, false).unwrap_or_else(|e| fail(e));
            let fo = ours_first_median(stem, threads, firsts);
            let fr = median(
                (0..firsts).map(|_| reference(&model, &paths, threads, 1, true).unwrap_or_else(|e| fail(e))).collect(),
            );
            println!("{stem:<36} {threads:>3} {o:>9.3} {r:>9.3} {:>6.2}   {fo:>9.2} {fr:>9.2} {:>6.2}", o / r, fo / fr);
            ratios.push(o / r);
            first_ratios.push(fo / fr);
            lat[slot] = (o, r);
        }
        speedups.push((stem, lat[0].0 / lat[1].0, lat[0].1 / lat[1].1));
    }
    println!("2 threads vs 1 (speed-up):");
    for (stem, o, r) in &speedups {
        println!("  {stem:<36} ours {o:.2}x  litert {r:.2}x");
    }
    println!(
        "geometric mean ratio: latency {:.2}, time to first inference {:.2}",
        geomean(&ratios),
        geomean(&first_ratios)
    );
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).env("EDGETPU_BENCH_RSS_CHILD", "mobilenet_v2_1.0_224_quant").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let rss: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let arena: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let file_kib = std::fs::metadata(dir.join("mobilenet_v2_1.0_224_quant.tflite")).unwrap().len() / 1024;
    println!(
        "mobilenet_v2_1.0_224_quant: peak RSS {:.1} MiB (model file {:.1} MiB mapped, arena {:.1} MiB, 1 thread)",
        rss as f64 / 1024.0,
        file_kib as f64 / 1024.0,
        arena as f64 / 1048576.0
    );
}
