//! Host time of one `Interpreter::invoke` of a compiled model through the public API, on a
//! simulated USB Accelerator whose time model is zero, with the time spent inside the simulated
//! device (its transfers and its output oracle) subtracted. For a model with CPU ops around its
//! Edge TPU step, the CPU ops' own time is measured in a second pass and reported separately, so
//! the overhead is what the runtime adds: the interpreter's node loop, the scheduler (device
//! choice, locks), the USB driver (linking, headers, copies into and out of the device's buffers).
//!
//! Run: `cargo bench -p edgetpu --bench invoke_overhead`. The last line reads
//! `overhead: X µs per invoke, N allocations` for the one-step model (goal: at most 10 µs and 0).

use edgetpu::sched::{RuntimeOptions, Simulated};
use edgetpu::sim::{OracleChoice, TimeModel};
use edgetpu::{Interpreter, Model};
use std::time::{Duration, Instant};

#[path = "../tests/common/host_alloc.rs"]
mod host_alloc;

#[global_allocator]
static GLOBAL: host_alloc::Counting = host_alloc::Counting;

#[path = "../tests/common/testdata.rs"]
mod testdata;
use testdata::testdata;

struct Figures {
    total_us: f64,
    device_us: f64,
    cpu_us: f64,
    /// Total minus device minus CPU ops, all from the timed pass (so the CPU ops' run-to-run
    /// variation does not leak into it).
    overhead_us: f64,
    allocations: f64,
}

fn measure(name: &str, runs: usize) -> Figures {
    let model = Model::open(testdata().join(name)).unwrap();
    let sim = Simulated::usb(1, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    let mut it = Interpreter::builder(model).runtime(&sim).threads(1).build().unwrap();
    for i in 0..it.inputs().len() {
        it.input_mut(i).unwrap().fill(3);
    }
    // Warm-up: the first invoke caches the parameters.
    for _ in 0..20 {
        it.invoke().unwrap();
    }
    let device = || sim.sims()[0].device_wall_time();

    // Pass 1: the public invoke, as an application calls it.
    let (device0, allocs0) = (device(), host_alloc::allocations());
    let start = Instant::now();
    for _ in 0..runs {
        it.invoke().unwrap();
    }
    let total = start.elapsed();
    let allocations = host_alloc::allocations() - allocs0;
    let in_device = device() - device0;

    // Pass 2: the CPU ops' time, node by node (everything but the Edge TPU step).
    let names: Vec<String> = it.cpu().plan().node_names().map(str::to_string).collect();
    let mut per_node = vec![Duration::ZERO; names.len()];
    let device1 = device();
    let start = Instant::now();
    for _ in 0..runs {
        it.cpu_mut().invoke_timed(&mut per_node).unwrap();
    }
    let (total2, in_device2) = (start.elapsed(), device() - device1);
    let cpu: Duration =
        names.iter().zip(&per_node).filter(|(n, _)| !n.starts_with("edgetpu-custom-op")).map(|(_, d)| *d).sum();
    assert!(sim.sims()[0].violations().is_empty(), "{:?}", sim.sims()[0].violations());
    let per = |d: Duration| d.as_secs_f64() * 1e6 / runs as f64;
    let overhead_us =
        if cpu.is_zero() { per(total) - per(in_device) } else { per(total2) - per(in_device2) - per(cpu) };
    Figures {
        total_us: per(total),
        device_us: per(in_device),
        cpu_us: per(cpu),
        overhead_us,
        allocations: allocations as f64 / runs as f64,
    }
}

fn main() {
    let models =
        [("mobilenet_v1_0.75_192_quant_edgetpu.tflite", 3000), ("deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite", 40)];
    println!("host time per Interpreter::invoke of a compiled model on a simulated USB Accelerator (time model zero)");
    println!(
        "{:<52} {:>6} {:>10} {:>11} {:>10} {:>12} {:>11}",
        "model", "runs", "total µs", "device µs", "CPU ops µs", "overhead µs", "allocs/inv"
    );
    let mut first = None;
    for (name, runs) in models {
        let f = measure(name, runs);
        println!(
            "{:<52} {:>6} {:>10.2} {:>11.2} {:>10.2} {:>12.2} {:>11.2}",
            name, runs, f.total_us, f.device_us, f.cpu_us, f.overhead_us, f.allocations
        );
        first.get_or_insert(f);
    }
    let f = first.expect("one model measured");
    println!("overhead: {:.2} µs per invoke, {} allocations", f.overhead_us, f.allocations.round() as u64);
}
