//! Host-side cost of one TPU inference over USB: linking, headers, bulk-in bookkeeping and
//! output copies, measured against the simulator with its time model set to zero. The time the
//! host spends inside the simulated device (its own bookkeeping and the output oracle) is
//! subtracted, and a counting allocator ignores allocations made inside the device.
//!
//! Run: `cargo bench -p edgetpu --bench usb_host`. Prints µs per invoke and heap allocations per
//! steady-state invoke for each model, and the USB 3 transfer time the simulator models for the
//! same invoke, with the host cost as a share of it. Target: at most 50 µs and 0 allocations.

use edgetpu::device::program::Program;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::sim::usb::{SeededOracle, SimBus, SimConfig, TimeModel};
use edgetpu::Model;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[path = "../tests/common/host_alloc.rs"]
mod host_alloc;

#[global_allocator]
static GLOBAL: host_alloc::Counting = host_alloc::Counting;

const MODELS: &[&str] = &[
    "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
    "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite",
];
const RUNS: usize = 2000;

#[path = "../tests/common/testdata.rs"]
mod testdata;
use testdata::testdata;

fn main() {
    let dir = testdata();
    println!("host cost per TPU invoke over USB (simulator, time model zero), {RUNS} invokes");
    println!("{:<72} {:>9} {:>11} {:>13} {:>7}", "model", "host µs", "allocs/inv", "USB3 model µs", "share");
    for name in MODELS {
        let model = Arc::new(Model::open(dir.join(name)).unwrap());
        let pkgs = Package::all(&model).unwrap();
        let pkg = &pkgs[0];
        let sim = SimBus::new(SimConfig { start_in_dfu: false, time: TimeModel::zero(), ..Default::default() });
        sim.load(pkg, name, Some(Arc::new(Mutex::new(SeededOracle::new(1))))).unwrap();
        let mut acc = UsbAccelerator::open(Arc::new(sim.clone()), &sim.config_path(), UsbOptions::default()).unwrap();
        let mut program = Program::new(&model, pkg).unwrap();
        let main = pkg.main();
        let inputs: Vec<Vec<u8>> =
            main.input_layers.iter().map(|l| vec![1u8; l.num_elements() * l.data_type.size_bytes()]).collect();
        let mut outputs: Vec<Vec<u8>> =
            main.output_layers.iter().map(|l| vec![0u8; l.num_elements() * l.data_type.size_bytes()]).collect();
        let in_refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut run = |acc: &mut UsbAccelerator, program: &mut Program| {
            let mut out_refs: Vec<&mut [u8]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
            acc.run(program, &in_refs, &mut out_refs).unwrap();
        };
        // Warm-up: the first invoke caches the parameters.
        for _ in 0..20 {
            run(&mut acc, &mut program);
        }
        // One invoke under the USB 3 time model, for scale.
        sim.set_time_model(TimeModel::usb3());
        let t = sim.elapsed();
        run(&mut acc, &mut program);
        let modelled = (sim.elapsed() - t).as_secs_f64() * 1e6;
        sim.set_time_model(TimeModel::zero());

        let device0 = sim.device_wall_time();
        let allocs0 = host_alloc::allocations();
        let start = Instant::now();
        for _ in 0..RUNS {
            // The output buffers are re-borrowed each time without allocating.
            let mut out_refs: [&mut [u8]; 4] = Default::default();
            let n = outputs.len().min(4);
            for (slot, v) in out_refs.iter_mut().zip(outputs.iter_mut()) {
                *slot = v.as_mut_slice();
            }
            acc.run(&mut program, &in_refs, &mut out_refs[..n]).unwrap();
        }
        let total = start.elapsed();
        let allocs = host_alloc::allocations() - allocs0;
        let device = sim.device_wall_time() - device0;
        let host_us = (total - device).as_secs_f64() * 1e6 / RUNS as f64;
        println!(
            "{:<72} {:>9.2} {:>11.2} {:>13.0} {:>6.2}%",
            name,
            host_us,
            allocs as f64 / RUNS as f64,
            modelled,
            100.0 * host_us / modelled
        );
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
        acc.close().unwrap();
    }
}
