//! A steady-state TPU inference over USB does not touch the heap on the host side: a counting
//! global allocator, which leaves out what the simulated device itself allocates, sees no
//! allocation in 50 inferences after the first.

mod common;

use edgetpu::device::program::Program;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::sim::usb::{SeededOracle, SimBus, SimConfig, TimeModel};
use edgetpu::Model;
use std::sync::{Arc, Mutex};

#[path = "common/host_alloc.rs"]
mod host_alloc;

#[global_allocator]
static GLOBAL: host_alloc::Counting = host_alloc::Counting;

fn allocations(name: &str) -> usize {
    let model = Arc::new(Model::open(common::testdata().join(name)).unwrap());
    let pkgs = Package::all(&model).unwrap();
    let pkg = &pkgs[0];
    let sim = SimBus::new(SimConfig { start_in_dfu: false, time: TimeModel::zero(), ..Default::default() });
    sim.load(pkg, name, Some(Arc::new(Mutex::new(SeededOracle::new(1))))).unwrap();
    let mut acc = UsbAccelerator::open(Arc::new(sim.clone()), &sim.config_path(), UsbOptions::default()).unwrap();
    let mut program = Program::new(&model, pkg).unwrap();
    let size = |l: &edgetpu::package::Layer| l.num_elements() * l.data_type.size_bytes();
    let inputs: Vec<Vec<u8>> = pkg.main().input_layers.iter().map(|l| vec![2u8; size(l)]).collect();
    let mut outputs: Vec<Vec<u8>> = pkg.main().output_layers.iter().map(|l| vec![0u8; size(l)]).collect();
    let ins: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
    acc.run(&mut program, &ins, &mut outs).unwrap();
    // The fewest allocations of three windows (the test harness's own threads may allocate
    // while the first one runs; a run that allocates shows in each).
    let n = (0..3)
        .map(|_| {
            let before = host_alloc::allocations();
            for _ in 0..50 {
                acc.run(&mut program, &ins, &mut outs).unwrap();
            }
            host_alloc::allocations() - before
        })
        .min()
        .unwrap_or(0);
    // The counter does see the host's allocations.
    let probe = host_alloc::allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(host_alloc::allocations() > probe, "the counting allocator is not counting");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    n
}

#[test]
fn steady_state_inferences_do_not_allocate() {
    for name in [
        "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
        "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite",
        "tools/split_concat_edgetpu.tflite",
    ] {
        assert_eq!(allocations(name), 0, "{name}");
    }
}
