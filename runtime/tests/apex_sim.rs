//! The PCIe backend against the simulated apex kernel driver and chip: every compiled model of
//! the test data gives the same outputs as over USB, the open/run/close sequence leaves nothing
//! behind, completion counting survives the 16-bit wrap, old kernels without MAP_BUFFER_FLAGS
//! work, and a device owned by another process is refused clearly.

mod common;

use edgetpu::cpu::Options;
use edgetpu::device::pcie::Sys;
use edgetpu::device::pcie::{ApexAccelerator, ApexOptions};
use edgetpu::device::program::Program;
use edgetpu::package::Package;
use edgetpu::sched::{Runtime, RuntimeOptions, Simulated};
use edgetpu::sim::pcie::{SimApex, SimApexConfig};
use edgetpu::sim::usb::{SeededOracle, TimeModel};
use edgetpu::sim::OracleChoice;
use edgetpu::{ErrorKind, Model};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Runs `rel` twice with the same inputs on a runtime and returns every output.
fn outputs(rt: &Runtime, rel: &str) -> Vec<Vec<u8>> {
    let model = Arc::new(Model::open(common::testdata().join(rel)).unwrap());
    let mut it = rt.interpreter(model, &Options { threads: 1, ..Default::default() }).unwrap();
    let mut all = Vec::new();
    for round in 0..2u32 {
        for i in 0..it.inputs().len() {
            let n = it.input_mut(i).unwrap().len();
            it.set_input(i, &common::noise(n, round * 5 + i as u32 + 1)).unwrap();
        }
        it.invoke().unwrap_or_else(|e| panic!("{rel}: {e}"));
        for j in 0..it.outputs().len() {
            all.push(it.output(j).unwrap().to_vec());
        }
    }
    all
}

#[test]
fn every_compiled_model_gives_the_same_outputs_as_over_usb() {
    let compiled: Vec<String> = common::all_models()
        .into_iter()
        .filter(|r| r.ends_with("_edgetpu.tflite") && !r.starts_with("invalid_models"))
        .collect();
    let mut n = 0;
    for rel in &compiled {
        let oracle = if rel.contains("cocompil") || rel.contains("pipeline") {
            OracleChoice::Seeded
        } else {
            OracleChoice::Twin
        };
        let usb = Simulated::usb(1, TimeModel::zero(), oracle.clone(), RuntimeOptions::default()).unwrap();
        let pci = Simulated::pci(1, oracle, RuntimeOptions::default()).unwrap();
        let (a, b) = (outputs(&usb, rel), outputs(&pci, rel));
        assert_eq!(a, b, "{rel}: PCIe and USB outputs differ");
        let sim = &pci.apex_sims()[0];
        assert!(sim.violations().is_empty(), "{rel}: {:?}", sim.violations());
        assert_eq!(pci.metrics()[0].inferences, 2, "{rel}");
        n += 1;
    }
    assert_eq!(n, compiled.len(), "every compiled model runs");
    assert!(n >= 13, "only {n} compiled models in the test data");
}

/// A simulated device that knows `rel` (seeded outputs) and a prepared program of it.
fn device(rel: &str, config: SimApexConfig) -> (SimApex, Arc<Model>, Program) {
    let sim = SimApex::new(config);
    let model = Arc::new(Model::open(common::testdata().join(rel)).unwrap());
    let pkgs = Package::all(&model).unwrap();
    sim.load(&pkgs[0], rel, Some(Arc::new(Mutex::new(SeededOracle::new(7))))).unwrap();
    let program = Program::new(&model, &pkgs[0]).unwrap();
    (sim, model, program)
}

fn run(acc: &mut ApexAccelerator, program: &mut Program, seed: u32) -> Vec<Vec<u8>> {
    let inputs: Vec<Vec<u8>> = program.input_sizes().map(|n| common::noise(n, seed)).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = program.output_sizes().map(|n| vec![0u8; n]).collect();
    let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    acc.run(program, &refs, &mut o).unwrap();
    outs
}

#[test]
fn open_run_close_follows_the_sequence_and_leaves_nothing_mapped() {
    let (sim, model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", SimApexConfig::default());
    let sys: Arc<dyn Sys> = Arc::new(sim.clone());
    let mut acc = ApexAccelerator::open(sys, Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    assert_eq!(sim.performance(), Some(3), "PCIe defaults to Max");
    assert!(sim.clock_gated(), "the clock is gated until the first request");
    let first = run(&mut acc, &mut program, 1);
    let again = run(&mut acc, &mut program, 1);
    assert_eq!(first, again, "same input, same output");
    assert_ne!(first, run(&mut acc, &mut program, 2));
    assert!(sim.clock_gated(), "gated again after the request");
    let stats = sim.stats();
    assert_eq!(stats.runs, 4, "one parameter-caching run and three inferences");
    let pkg = Package::all(&model).unwrap().remove(0);
    assert_eq!(stats.parameter_bytes as usize, pkg.cached_parameter_bytes() + 3 * pkg.streamed_parameter_bytes());
    assert!(stats.mappings > 2, "buffers are mapped");
    acc.close().unwrap();
    assert_eq!(sim.stats().mappings, 0, "every mapping is released at close");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    let log = sim.ioctl_log();
    let at = |name: &str| log.iter().position(|n| *n == name).unwrap_or_else(|| panic!("{name} missing: {log:?}"));
    assert_eq!(log[0], "APEX_IOCTL_PERFORMANCE_EXPECTATION");
    assert!(at("GASKET_IOCTL_PARTITION_PAGE_TABLE") < at("GASKET_IOCTL_MAP_BUFFER_FLAGS"));
    assert!(at("GASKET_IOCTL_CONFIG_COHERENT_ALLOCATOR") < at("GASKET_IOCTL_SET_EVENTFD"));
    assert_eq!(log.iter().filter(|n| **n == "GASKET_IOCTL_SET_EVENTFD").count(), 10);
    assert_eq!(log.iter().filter(|n| **n == "GASKET_IOCTL_CLEAR_EVENTFD").count(), 10);
    assert_eq!(
        log.iter().filter(|n| **n == "GASKET_IOCTL_MAP_BUFFER_FLAGS").count(),
        log.iter().filter(|n| **n == "GASKET_IOCTL_UNMAP_BUFFER").count()
    );
}

#[test]
fn completions_are_counted_across_the_16_bit_wrap() {
    let config = SimApexConfig { initial_interrupt_count: 0xFFFD, ..Default::default() };
    let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
    let mut acc =
        ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    let want = run(&mut acc, &mut program, 3);
    for _ in 0..6 {
        assert_eq!(run(&mut acc, &mut program, 3), want);
    }
    assert_eq!(sim.csr(0x486d0) & 0xFFFF, (0xFFFDu64 + 8) & 0xFFFF, "the counter wrapped");
    acc.close().unwrap();
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn kernels_without_map_buffer_flags_fall_back_to_map_buffer() {
    let config = SimApexConfig { map_buffer_flags: false, ..Default::default() };
    let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
    let mut acc =
        ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    run(&mut acc, &mut program, 4);
    acc.close().unwrap();
    assert!(sim.ioctl_log().contains(&"GASKET_IOCTL_MAP_BUFFER"));
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn a_device_owned_by_another_process_is_refused_clearly() {
    let config = SimApexConfig { owned_elsewhere: true, ..Default::default() };
    let (sim, _model, _program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
    // gasket answers EPERM to a second writer; without sysfs to tell, the error names both causes.
    let err = ApexAccelerator::open(Arc::new(sim), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("another process owns it") && err.to_string().contains("apex group"), "{err}");
    let missing = SimApex::new(SimApexConfig::default());
    let err = ApexAccelerator::open(Arc::new(missing), Path::new("/dev/apex_3"), ApexOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("/dev/apex_3"), "{err}");
}

#[test]
fn an_inference_before_the_parameters_are_cached_is_a_device_fault() {
    let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", SimApexConfig::default());
    let mut acc =
        ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    // Drop the caching executable from the program: the chip must refuse the inference.
    program.caching = None;
    let inputs: Vec<Vec<u8>> = program.input_sizes().map(|n| vec![0u8; n]).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = program.output_sizes().map(|n| vec![0u8; n]).collect();
    let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let err = acc.run(&mut program, &refs, &mut o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeviceFault, "{err}");
    assert!(sim.violations().iter().any(|v| v.contains("not cached")), "{:?}", sim.violations());
}

/// More requests than the instruction ring has entries (256): the tail and the status block's
/// completed head wrap; with the chip working only while the host waits (deferred completion),
/// the host sees its requests in flight; the outputs stay those of an immediate chip.
#[test]
fn the_ring_wraps_and_completion_may_come_later() {
    let mut outputs = Vec::new();
    for deferred in [false, true] {
        let config = SimApexConfig { deferred, ..Default::default() };
        let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
        let mut acc =
            ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
        let mut last = Vec::new();
        for k in 0..300u32 {
            last = run(&mut acc, &mut program, k % 3);
        }
        assert_eq!(sim.stats().descriptors, 301, "one caching run and 300 inferences, one chunk each");
        assert_eq!(sim.csr(0x485a8), 301 % 256, "the tail wrapped");
        acc.close().unwrap();
        assert!(sim.violations().is_empty(), "deferred {deferred}: {:?}", sim.violations());
        outputs.push(last);
    }
    assert_eq!(outputs[0], outputs[1]);
}
