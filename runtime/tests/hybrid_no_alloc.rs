//! A steady-state invoke of a compiled model through the runtime (CPU ops, the Edge TPU job on a
//! device thread, the USB driver) does not touch the heap: a counting allocator, which leaves
//! out what the simulated device itself allocates, sees no allocation in 20 invokes after the
//! first, on any thread, over USB and over PCIe. It runs with a device that takes no time (the device thread usually
//! finishes before the caller waits) and with one that sleeps its modelled USB 3 time (the
//! caller always blocks), so that both ways of waiting are covered.

mod common;

#[path = "common/host_alloc.rs"]
mod host_alloc;

#[global_allocator]
static GLOBAL: host_alloc::Counting = host_alloc::Counting;

use edgetpu::cpu::Options;
use edgetpu::sched::{Runtime, RuntimeOptions, Simulated};
use edgetpu::sim::usb::TimeModel;
use edgetpu::sim::OracleChoice;
use edgetpu::Model;
use std::sync::Arc;

/// 20 steady-state invokes after two warm-up ones (the fewest of three windows): heap allocations.
fn allocations_in_20_invokes(rt: &Runtime, name: &str) -> usize {
    let model = Arc::new(Model::open(common::testdata().join(name)).unwrap());
    let mut it = rt.interpreter(model, &Options { threads: 1, ..Default::default() }).unwrap();
    let n = it.input_mut(0).unwrap().len();
    it.set_input(0, &common::noise(n, 3)).unwrap();
    it.invoke().unwrap();
    it.invoke().unwrap();
    // The counter sees every thread of the process, the test harness's too, which may still be
    // starting up during the first window: the fewest allocations of three windows counts (an
    // invoke that allocates shows in each).
    let n = (0..3)
        .map(|_| {
            let before = host_alloc::allocations();
            for _ in 0..20 {
                it.invoke().unwrap();
            }
            host_alloc::allocations() - before
        })
        .min()
        .unwrap_or(0);
    assert_eq!(rt.metrics()[0].inferences, 62);
    n
}

const MODELS: [&str; 2] =
    ["mobilenet_v1_0.25_128_quant_edgetpu.tflite", "movenet_single_pose_lightning_ptq_edgetpu.tflite"];

#[test]
fn steady_state_hybrid_invokes_do_not_allocate() {
    let sleeping = TimeModel { realtime: true, ..TimeModel::usb3() };
    for time in [TimeModel::zero(), sleeping] {
        for name in MODELS {
            let rt = Simulated::usb(1, time, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
            let n = allocations_in_20_invokes(&rt, name);
            assert_eq!(n, 0, "{name} ({time:?}): {n} allocations in 20 invokes");
        }
    }
    // The same over PCIe (the simulated apex driver's own work left out, as the USB
    // simulator's). One test: the counter sees every thread of the process.
    for name in MODELS {
        let rt = Simulated::pci(1, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
        let n = allocations_in_20_invokes(&rt, name);
        assert_eq!(n, 0, "{name} over PCIe: {n} allocations in 20 invokes");
    }
}
