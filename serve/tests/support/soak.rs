//! The soak run of `edgetpu serve` (shared by `tests/soak.rs` and `benches/serve.rs`): clients
//! on the tensor protocol hammer a server on two simulated USB Accelerators while faults are
//! injected into the devices at random. Every successful reply must equal the in-process result,
//! every failed one must be an error reply (never a broken connection), and the process's memory
//! after the run must stay within 10% of its memory after warm-up.

use edgetpu::sched::Simulated;
use edgetpu::sim::usb::{Fault, FaultKind};
use edgetpu::sim::{OracleChoice, TimeModel};
use edgetpu::{DeviceSpec, Interpreter, Model, RuntimeOptions};
use edgetpu_client::{Client, ClientError};
use edgetpu_serve::{ServeOptions, Server};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What a soak run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Requests answered with outputs, all equal to the in-process ones.
    pub ok: usize,
    /// Requests answered with an error reply.
    pub failed: usize,
    /// Replies whose outputs differ from the in-process ones.
    pub wrong: usize,
    /// Requests whose connection broke instead.
    pub transport: usize,
    /// Faults injected.
    pub faults: usize,
    /// Resident memory after warm-up and after the run, KiB.
    pub rss_warm_kib: u64,
    /// See `rss_warm_kib`.
    pub rss_end_kib: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

const FAULTS: [(FaultKind, u8, usize); 5] = [
    (FaultKind::Stall, 0x01, 1),
    (FaultKind::Timeout, 0x01, 3),
    (FaultKind::ShortRead, 0x81, 0),
    (FaultKind::ShortRead, 0x82, 0),
    (FaultKind::FatalError, 0, 0),
];

/// Runs `clients` × `requests` invokes of mobilenet_v1_0.25 (compiled) with a fault every
/// `fault_every` (none when zero); `scratch` holds the models and the socket.
pub fn soak(testdata: &Path, scratch: &Path, clients: usize, requests: usize, fault_every: Duration) -> SoakReport {
    let models = scratch.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let (tpu, cpu) = ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mobilenet_v1_0.25_128_quant.tflite");
    for m in [tpu, cpu] {
        std::fs::copy(testdata.join(m), models.join(m)).unwrap();
    }
    // The expected outputs of a few frames, from the CPU model in process.
    let frames: Vec<Vec<u8>> =
        (0..8u32).map(|k| (0..128 * 128 * 3).map(|i| ((i as u32 * (2 * k + 3) + k) % 256) as u8).collect()).collect();
    let mut it = Interpreter::builder(Arc::new(Model::open(models.join(cpu)).unwrap()))
        .device(DeviceSpec::cpu())
        .threads(1)
        .build()
        .unwrap();
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            it.set_input(0, f).unwrap();
            it.invoke().unwrap();
            it.output(0).unwrap().to_vec()
        })
        .collect();
    let sim = Simulated::usb(2, TimeModel::zero(), OracleChoice::Twin, RuntimeOptions::default()).unwrap();
    let buses = sim.usb.clone();
    let sock = scratch.join("tensor.sock");
    let server = Server::start_with(
        ServeOptions::default().catalog_cache(false).models_dir(&models).socket(&sock),
        Some(sim.runtime),
    )
    .unwrap();

    let (frames, want) = (Arc::new(frames), Arc::new(want));
    let warm = Arc::new(Barrier::new(clients + 1));
    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed, wrong, transport) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let warmup = requests.min(20);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (sock, frames, want, warm) = (sock.clone(), frames.clone(), want.clone(), warm.clone());
            let (ok, failed, wrong, transport) = (ok.clone(), failed.clone(), wrong.clone(), transport.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(&sock).unwrap();
                let mut m = client.open(tpu).unwrap();
                for r in 0..requests {
                    if r == warmup {
                        warm.wait();
                        warm.wait();
                    }
                    let k = (c + r) % frames.len();
                    m.set_input(0, &frames[k]).unwrap();
                    match m.invoke() {
                        Ok(()) if m.output(0).unwrap() == &want[k][..] => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(()) => wrong.fetch_add(1, Ordering::Relaxed),
                        Err(ClientError::Server(_)) => failed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("client {c}: {e}");
                            transport.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                if requests <= warmup {
                    warm.wait();
                    warm.wait();
                }
            })
        })
        .collect();
    warm.wait();
    let rss_warm_kib = rss_kib();
    let start = Instant::now();
    warm.wait();
    let injector = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !fault_every.is_zero() && !done.load(Ordering::Relaxed) {
                std::thread::sleep(fault_every);
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (kind, endpoint, after) = FAULTS[(seed >> 33) as usize % FAULTS.len()];
                buses[(seed >> 20) as usize % buses.len()].inject(Fault { kind, endpoint, after });
                n += 1;
            }
            n
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed();
    let rss_end_kib = rss_kib();
    done.store(true, Ordering::Relaxed);
    let faults = injector.join().unwrap();
    server.shutdown();
    SoakReport {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        wrong: wrong.load(Ordering::Relaxed),
        transport: transport.load(Ordering::Relaxed),
        faults,
        rss_warm_kib,
        rss_end_kib,
        elapsed,
    }
}
