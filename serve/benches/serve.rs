//! `edgetpu serve` under load, in one run (`cargo bench -p edgetpu-serve --bench serve`):
//!
//! 1. round-trip latency of one request against in-process invoke: the tensor protocol on `cpu`
//!    (a one-op model summing a 300x300x3 frame, and mobilenet_v1_0.25, 128x128x3) and on `sim` (SSD MobileNet v2 segment 0, 300x300x3, the
//!    simulator's time model off, so the figure is the host's work); Frigate's zmq protocol on
//!    `cpu` (the traffic SSD, decode included on both sides). The test data has no compiled SSD
//!    with its post-processing in one model, which zmq on `sim` would need;
//! 2. throughput of 1, 4 and 16 tensor-protocol clients on 2 simulated USB Accelerators in real
//!    time (the USB 3 time model, slept), against the devices' own limit: two in-process threads
//!    invoking back to back; p50 and p99 latency per client count;
//! 3. the soak: 16 clients × 2000 requests with a random device fault every 20 ms.
//!
//! Without `--bench` (as `cargo test --benches` runs it) every part runs briefly. Words after
//! `--` pick parts by name: `latency`, `zmq`, `throughput`, `soak`
//! (`cargo bench -p edgetpu-serve --bench serve -- latency`).

#[path = "../tests/support/soak.rs"]
mod soak;

use edgetpu::sched::Simulated;
use edgetpu::sim::{OracleChoice, TimeModel};
use edgetpu::{DeviceSpec, Interpreter, Model, Runtime, RuntimeOptions};
use edgetpu_client::Client;
use edgetpu_serve::frigate::Shared;
use edgetpu_serve::models::ModelStore;
use edgetpu_serve::zmtp::Connection;
use edgetpu_serve::{ServeOptions, Server};
use serde_json::json;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgetpu-serve-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("models")).unwrap();
    d
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn time_us(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..n.min(5) {
        f();
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// How the client waits for its replies.
#[derive(Clone, Copy)]
enum Wait {
    /// Blocks (`Client::set_predictive_wake(false)`).
    Block,
    /// Sleeps until shortly before each reply is due, then polls (the default).
    Predict,
    /// `Client::set_busy_poll`.
    BusyPoll,
}

/// In-process invoke against the tensor protocol, same model, same device kind.
fn native_latency(label: &str, model: &Path, runtime: Option<Runtime>, in_process: Interpreter, n: usize, wait: Wait) {
    let dir = scratch(label);
    let name = model.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(model, dir.join("models").join(&name)).unwrap();
    let sock = dir.join("t.sock");
    let server = Server::start_with(
        ServeOptions::default().catalog_cache(false).models_dir(dir.join("models")).socket(&sock),
        runtime,
    )
    .unwrap();
    let mut it = in_process;
    let input = frame(it.input_mut(0).unwrap().len());
    let mut client = Client::connect(&sock).unwrap();
    match wait {
        Wait::Block => client.set_predictive_wake(false),
        Wait::Predict => {}
        Wait::BusyPoll => client.set_busy_poll(Duration::from_millis(2)),
    }
    let mut m = client.open(&name).unwrap();
    // Rounds alternate between the two sides, so drift in the machine's speed hits both alike.
    // A request is the same on both sides: fill the input (a copy of the frame into the
    // interpreter's tensor, or into the shared memory), then invoke. The overhead is measured
    // per request on the part that differs: the client's `invoke` call, from sending the request
    // to holding the outputs, minus the time the server reports inside its interpreter, so the
    // model's own run-to-run spread cancels out. The server's copies between the shared memory
    // and its interpreter fall inside that part and count.
    let (mut local, mut remote, mut overhead) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let rounds = 10.min(n);
    for _ in 0..rounds {
        local.extend(time_us(n / rounds, || {
            it.set_input(0, &input).unwrap();
            it.invoke().unwrap();
        }));
        let mut calls = Vec::new();
        let requests = time_us(n / rounds, || {
            m.set_input(0, &input).unwrap();
            let t = Instant::now();
            m.invoke().unwrap();
            let call = t.elapsed();
            let inside = m.server_invoke_time().expect("the server reports its invoke time");
            calls.push(call.saturating_sub(inside).as_secs_f64() * 1e6);
        });
        // `time_us` warms up first: the last `requests.len()` calls are the timed ones.
        overhead.extend(&calls[calls.len() - requests.len()..]);
        remote.extend(requests);
    }
    assert_eq!(m.output(0).unwrap(), it.output(0).unwrap(), "{label}: the server's output differs");
    drop(m);
    drop(client);
    server.shutdown();
    let (l, r, o) = (pct(&mut local, 0.5), pct(&mut remote, 0.5), pct(&mut overhead, 0.5));
    println!("{label:<48} in-process {l:>9.1} µs   tensor protocol {r:>9.1} µs   overhead {o:>6.1} µs");
}

fn zmq_latency(n: usize) {
    let data = testdata();
    let dir = scratch("zmq");
    let name = "traffic_model.tflite";
    std::fs::copy(data.join("automl_video_ondevice").join(name), dir.join("models").join(name)).unwrap();
    zmq_case("cpu: traffic SSD 256x256x3 + decode", &dir.join("models"), name, None, n);
    // The compiled SSD of the test data is in three segments (its post-processing in the last),
    // served as one model; in process, the same three segments run in turn.
    let sim = || Simulated::usb(3, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    zmq_case(
        "sim: SSD v2 in 3 segments 300x300x3 + decode",
        &data.join("pipeline"),
        "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite",
        Some((sim().runtime, sim().runtime)),
        n,
    );
}

/// One request of Frigate's protocol against the same model in process; `runtimes` are the
/// server's and the in-process devices (none: the CPU).
fn zmq_case(label: &str, models: &Path, name: &str, runtimes: Option<(Runtime, Runtime)>, n: usize) {
    let sock = scratch(&format!("zmq-{}", label.split(':').next().unwrap_or("x"))).join("zmq.sock");
    let (server_rt, local_rt) = match runtimes {
        Some((s, l)) => (Some(s), Some(l)),
        None => (None, None),
    };
    let server = Server::start_with(
        ServeOptions::default()
            .devices(DeviceSpec::cpu())
            .catalog_cache(false)
            .models_dir(models)
            .zmq(format!("ipc://{}", sock.display())),
        server_rt,
    )
    .unwrap();
    let local = Shared {
        runtime: local_rt,
        store: ModelStore { dir: Some(models.to_path_buf()), cache: None, max_upload: 0 },
        threshold: 0.4,
    };
    let mut it = local.open(name).unwrap().expect("the model is in the directory");
    let shape = it.inputs()[0].shape.clone();
    let input = frame(it.input_mut(0).unwrap().len());
    let mut conn = Connection::connect_req(UnixStream::connect(&sock).unwrap(), 64 << 20).unwrap();
    conn.send(&[json!({"model_request": true, "model_name": name}).to_string().as_bytes()]).unwrap();
    conn.recv().unwrap();
    let header = json!({"shape": shape, "dtype": "uint8", "model_type": "ssd"}).to_string();
    // The two are timed in turns and the overhead is the median of the paired differences
    // (drift in the machine's load cancels out).
    let (mut local, mut remote, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..n + 3 {
        let t = Instant::now();
        it.set_input(0, &input).unwrap();
        it.invoke().unwrap();
        let want = edgetpu_serve::frigate::decode_ssd(&it, 0.4).unwrap();
        let l = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        conn.send(&[header.as_bytes(), &input]).unwrap();
        let reply = conn.recv().unwrap();
        let r = t.elapsed().as_secs_f64() * 1e6;
        let got: Vec<f32> = reply[0].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, want, "{label}: the zmq reply differs from the in-process detections");
        if k >= 3 {
            local.push(l);
            remote.push(r);
            diff.push(r - l);
        }
    }
    drop(conn);
    server.shutdown();
    let (l, r, d) = (pct(&mut local, 0.5), pct(&mut remote, 0.5), pct(&mut diff, 0.5));
    println!("{label:<48} in-process {l:>9.1} µs   zmq             {r:>9.1} µs   overhead {d:>7.1} µs (median of paired differences)");
}

/// Throughput of `clients` on the server against the devices' limit.
fn throughput(seconds: f64) {
    let data = testdata();
    let name = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
    let model = Arc::new(Model::open(data.join(name)).unwrap());
    let realtime = TimeModel { realtime: true, ..TimeModel::usb3() };
    let sim = || Simulated::usb(2, realtime, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    let run_for = Duration::from_secs_f64(seconds);
    // The devices' limit: two in-process threads on the two devices, back to back.
    let limit = {
        let rt = Arc::new(sim());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (rt, model) = (rt.clone(), model.clone());
                std::thread::spawn(move || {
                    let mut it = Interpreter::builder(model).runtime(&rt.runtime).threads(1).build().unwrap();
                    let t = Instant::now();
                    let mut n = 0;
                    while t.elapsed() < run_for {
                        it.invoke().unwrap();
                        n += 1;
                    }
                    n as f64 / t.elapsed().as_secs_f64()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<f64>()
    };
    println!("2 simulated USB Accelerators in real time, mobilenet_v1_0.25: limit {limit:.0} inferences/s (2 in-process threads)");
    for clients in [1, 4, 16] {
        let dir = scratch(&format!("tp{clients}"));
        std::fs::copy(data.join(name), dir.join("models").join(name)).unwrap();
        let (total, mut lat) = clients_rate(sim().runtime, &dir.join("models"), name, clients, run_for, &dir);
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "  {clients:>2} client(s): {total:>6.0} inferences/s = {:>5.1}% of the limit   latency p50 {p50:.2} ms  p99 {p99:.2} ms  (p99/p50 {:.2})",
            100.0 * total / limit,
            p99 / p50
        );
    }

    // A model in three segments on three devices: the in-process pipeline (one thread per
    // segment, `sched::Pipeline`) against tensor-protocol clients, each running the segments in
    // turn. One client keeps one segment busy at a time; several overlap in the stages.
    let sim3 = || Simulated::usb(3, realtime, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    let segs: Vec<Arc<Model>> = (0..3)
        .map(|k| {
            let file = format!("ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_3_edgetpu.tflite");
            Arc::new(Model::open(data.join("pipeline").join(file)).unwrap())
        })
        .collect();
    let pipelined = {
        let s = sim3();
        let options = edgetpu::cpu::Options { threads: 1, ..Default::default() };
        let mut p = edgetpu::sched::pipeline::Pipeline::new(&s.runtime, &segs, 4, &options).unwrap();
        let image = vec![("normalized_input_image_tensor".to_string(), frame(300 * 300 * 3))];
        let (t, mut n) = (Instant::now(), 0);
        while t.elapsed() < run_for {
            p.send(image.clone()).unwrap();
            if p.pending() >= 4 {
                p.recv().unwrap();
                n += 1;
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    println!("3 simulated USB Accelerators in real time, SSD v2 in 3 segments: in-process pipeline {pipelined:.0} inferences/s");
    for clients in [1, 3, 6] {
        let dir = scratch(&format!("seg{clients}"));
        let name = "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite";
        let (total, mut lat) = clients_rate(sim3().runtime, &data.join("pipeline"), name, clients, run_for, &dir);
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "  {clients:>2} client(s): {total:>6.0} inferences/s = {:>5.1}% of the pipeline   latency p50 {p50:.2} ms  p99 {p99:.2} ms",
            100.0 * total / pipelined
        );
    }
}

/// `clients` tensor-protocol clients invoking `name` back to back for `run_for` on a server over
/// `runtime` and `models`: their total inferences/s and every latency in ms.
fn clients_rate(
    runtime: Runtime,
    models: &Path,
    name: &str,
    clients: usize,
    run_for: Duration,
    dir: &Path,
) -> (f64, Vec<f64>) {
    let sock = dir.join("t.sock");
    let server = Server::start_with(
        ServeOptions::default().catalog_cache(false).models_dir(models).socket(&sock),
        Some(runtime),
    )
    .unwrap();
    // Every client connects, opens its model and warms up before any starts counting, so the
    // figure is the steady state, not 16 model loads competing with the first requests.
    let start = Arc::new(std::sync::Barrier::new(clients));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (sock, start, name) = (sock.clone(), start.clone(), name.to_string());
            std::thread::spawn(move || {
                let mut client = Client::connect(&sock).unwrap();
                let mut m = client.open(&name).unwrap();
                m.invoke().unwrap();
                start.wait();
                let t = Instant::now();
                let mut lat = Vec::new();
                while t.elapsed() < run_for {
                    let r = Instant::now();
                    m.invoke().unwrap();
                    lat.push(r.elapsed().as_secs_f64() * 1e3);
                }
                (lat.len() as f64 / t.elapsed().as_secs_f64(), lat)
            })
        })
        .collect();
    let mut total = 0.0;
    let mut lat = Vec::new();
    for w in workers {
        let (rate, l) = w.join().unwrap();
        total += rate;
        lat.extend(l);
    }
    server.shutdown();
    (total, lat)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let part = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let n = if full { 2000 } else { 50 };
    let data = testdata();
    if part("latency") {
        println!("edgetpu serve: round trip of one request against in-process invoke (p50 of {n})");
        let cpu = |path: &Path| {
            Interpreter::builder(Arc::new(Model::open(path).unwrap()))
                .device(DeviceSpec::cpu())
                .threads(1)
                .build()
                .unwrap()
        };
        // A one-op model (SUM over a 300x300x3 frame) whose own work is small next to moving its input.
        let frame_sum =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/ops/sum_u8_300x300x3/model.tflite");
        let mobilenet = data.join("mobilenet_v1_0.25_128_quant.tflite");
        let ssd = data.join("pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite");
        let sim = || Simulated::usb(1, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
        // Each case with the client blocking for its replies (the default), then waking shortly
        // before each reply is due, then busy-polling.
        for wait in [Wait::Block, Wait::Predict, Wait::BusyPoll] {
            let how = match wait {
                Wait::Block => "blocking",
                Wait::Predict => "predictive wake",
                Wait::BusyPoll => "busy-poll",
            };
            native_latency(
                &format!("cpu: SUM of a 300x300x3 frame, {how}"),
                &frame_sum,
                None,
                cpu(&frame_sum),
                n,
                wait,
            );
            native_latency(
                &format!("cpu: mobilenet_v1_0.25 128x128x3, {how}"),
                &mobilenet,
                None,
                cpu(&mobilenet),
                n,
                wait,
            );
            let local = sim();
            let sim_it =
                Interpreter::builder(Arc::new(Model::open(&ssd).unwrap())).runtime(&local.runtime).build().unwrap();
            native_latency(
                &format!("sim: SSD v2 segment 0 300x300x3, {how}"),
                &ssd,
                Some(sim().runtime),
                sim_it,
                n,
                wait,
            );
        }
    }
    if part("zmq") {
        zmq_latency(if full { 300 } else { 10 });
    }
    if part("throughput") {
        throughput(if full { 5.0 } else { 0.5 });
    }
    if !part("soak") {
        return;
    }
    let (clients, requests) = if full { (16, 2000) } else { (16, 30) };
    let dir = scratch("soak");
    let r = soak::soak(&data, &dir, clients, requests, Duration::from_millis(20));
    println!(
        "soak: {clients} clients x {requests} requests in {:.1} s with {} injected faults: {} right, {} error replies, {} wrong, {} broken connections; RSS {} KiB after warm-up, {} KiB after ({:+.1}%)",
        r.elapsed.as_secs_f64(),
        r.faults,
        r.ok,
        r.failed,
        r.wrong,
        r.transport,
        r.rss_warm_kib,
        r.rss_end_kib,
        100.0 * (r.rss_end_kib as f64 / r.rss_warm_kib.max(1) as f64 - 1.0)
    );
    assert!(r.wrong == 0 && r.transport == 0, "the soak saw wrong replies or broken connections");
}
