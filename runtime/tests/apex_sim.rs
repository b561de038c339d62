//! The PCIe backend against the simulated apex kernel driver and chip: every compiled model of
//! the test data gives its CPU twin's outputs (or the same outputs as over USB) on coherent and
//! non-coherent hosts, the open/run/close sequence leaves nothing behind, buffers are written
//! before they are mapped and mapped per request, completion counting survives the 16-bit wrap,
//! old kernels without MAP_BUFFER_FLAGS work, and a device owned by another process is refused
//! clearly. The simulator's own strictness (zero page, streaming DMA, EPERM, EADDRNOTAVAIL) is
//! checked at the system-call level.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::device::pcie::ioctl::{self, Direction};
use edgetpu::device::pcie::{ApexAccelerator, ApexOptions};
use edgetpu::device::pcie::{Fd, Region, Sys};
use edgetpu::device::program::Program;
use edgetpu::device::SimKind;
use edgetpu::package::Package;
use edgetpu::sched::{Runtime, RuntimeOptions, Simulated};
use edgetpu::sim::pcie::{SimApex, SimApexConfig, EXTENDED_BASE};
use edgetpu::sim::usb::{SeededOracle, TimeModel};
use edgetpu::sim::{OracleChoice, SimOptions};
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

/// Three inferences in a row with different inputs on one interpreter of `rt`, and, when `twin`
/// is given, on the CPU interpreter of that model (the LSTM keeps its state across the three, so
/// both must run the same sequence): the compiled model's outputs, and the twin's.
fn three_runs(rt: &Runtime, rel: &str, twin: Option<&Path>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let options = Options { threads: 1, ..Default::default() };
    let model = Arc::new(Model::open(common::testdata().join(rel)).unwrap());
    let mut tpu = rt.interpreter(model, &options).unwrap();
    let mut cpu = twin.map(|t| Interpreter::new(Arc::new(Model::open(t).unwrap()), &options).unwrap());
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for round in 0..3u32 {
        for i in 0..tpu.inputs().len() {
            let input = common::noise(tpu.input_mut(i).unwrap().len(), round * 7 + i as u32 + 1);
            tpu.set_input(i, &input).unwrap();
            if let Some(cpu) = &mut cpu {
                cpu.set_input(i, &input).unwrap();
            }
        }
        tpu.invoke().unwrap_or_else(|e| panic!("{rel} round {round}: {e}"));
        got.extend((0..tpu.outputs().len()).map(|j| tpu.output(j).unwrap().to_vec()));
        if let Some(cpu) = &mut cpu {
            cpu.invoke().unwrap();
            want.extend((0..cpu.outputs().len()).map(|j| cpu.output(j).unwrap().to_vec()));
        }
    }
    (got, want)
}

/// Every compiled model over `sim:pci` and `sim:pci-noncoherent`, three inferences in a row with
/// different inputs: the outputs are its CPU twin's (the oracle is the twin, so this checks that
/// the chip read the inputs the host wrote and the host read what the chip wrote, on every run),
/// or, without a twin beside it, those of the USB simulator with seeded outputs (which follow
/// from the inputs).
#[test]
fn every_compiled_model_gives_its_twins_outputs_on_coherent_and_noncoherent_hosts() {
    let compiled: Vec<String> = common::all_models()
        .into_iter()
        .filter(|r| r.ends_with("_edgetpu.tflite") && !r.starts_with("invalid_models"))
        .collect();
    assert!(compiled.len() >= 13, "only {} compiled models in the test data", compiled.len());
    for rel in &compiled {
        let twin = common::testdata().join(rel.replace("_edgetpu.tflite", ".tflite"));
        let twin = twin.is_file().then_some(twin);
        let oracle = if twin.is_some() { OracleChoice::Twin } else { OracleChoice::Seeded };
        let usb = twin.is_none().then(|| {
            let usb = Simulated::usb(1, TimeModel::zero(), oracle.clone(), RuntimeOptions::default()).unwrap();
            three_runs(&usb, rel, None).0
        });
        for kind in [SimKind::Pci, SimKind::PciNoncoherent] {
            let options = RuntimeOptions::default().sim(SimOptions::default().oracle(oracle.clone()));
            let pci = Simulated::new(kind, 1, options).unwrap();
            let (got, want) = three_runs(&pci, rel, twin.as_deref());
            let want = usb.clone().unwrap_or(want);
            assert_eq!(got.len(), want.len(), "{rel} on {kind:?}");
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w, "{rel} on {kind:?}: output {k} of three runs: {}", common::diff_summary(g, w));
            }
            let sim = &pci.apex_sims()[0];
            assert!(sim.violations().is_empty(), "{rel} on {kind:?}: {:?}", sim.violations());
            assert_eq!(pci.metrics()[0].inferences, 3, "{rel} on {kind:?}");
            assert!(pci.metrics()[0].name.starts_with(kind_name(kind)), "{:?}", pci.metrics()[0].name);
        }
    }
}

fn kind_name(kind: SimKind) -> &'static str {
    match kind {
        SimKind::Pci => "sim:pci:",
        _ => "sim:pci-noncoherent:",
    }
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

/// Each request maps its inputs, outputs, scratch and instructions and unmaps them once it
/// completes, before the outputs are read; only the parameters stay mapped (as libedgetpu does,
/// so that a non-coherent host's cache maintenance happens on every request).
#[test]
fn each_request_maps_its_buffers_and_unmaps_them_when_it_completes() {
    let config = SimApexConfig { coherent: false, ..Default::default() };
    let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
    let mut acc =
        ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    let queue = sim.stats().mappings;
    let mut outputs = Vec::new();
    let mut per_run = Vec::new();
    for seed in [1, 2, 1] {
        let before = sim.stats();
        outputs.push(run(&mut acc, &mut program, seed));
        let after = sim.stats();
        per_run.push((after.maps - before.maps, after.unmaps - before.unmaps));
        // The parameters of the two executables stay mapped; nothing else.
        assert!(after.mappings > queue && after.mappings <= queue + 2, "{} live mappings", after.mappings);
    }
    let (maps, unmaps) = per_run[2];
    assert!(maps >= 3 && maps == unmaps, "a request maps and unmaps its buffers: {per_run:?}");
    assert_eq!(per_run[1], per_run[2], "every inference maps the same buffers");
    assert_eq!(outputs[0], outputs[2], "same input, same output");
    assert_ne!(outputs[0], outputs[1], "another input, other outputs (no stale data)");
    acc.close().unwrap();
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// An older gasket refuses MAP_BUFFER_FLAGS with EPERM, as any ioctl it does not know (not
/// ENOTTY): the runtime falls back to MAP_BUFFER on that failure and remembers it, so the flags
/// ioctl is tried once.
#[test]
fn map_buffer_flags_refused_with_eperm_falls_back_once() {
    let config = SimApexConfig { map_buffer_flags: false, ..Default::default() };
    let (sim, _model, mut program) = device("mobilenet_v1_0.25_128_quant_edgetpu.tflite", config);
    let fd = sim.open(Path::new("/dev/apex_0")).unwrap();
    let refused = sim.ioctl(fd, ioctl::MAP_BUFFER_FLAGS, &mut ioctl::page_table_flags(4096, 0, 0, Direction::ToDevice));
    assert_eq!(refused.unwrap_err().errno, 1, "EPERM");
    sim.close(fd);
    let mut acc =
        ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
    let first = run(&mut acc, &mut program, 4);
    assert_eq!(run(&mut acc, &mut program, 4), first);
    acc.close().unwrap();
    let log = sim.ioctl_log();
    let count = |name: &str| log.iter().filter(|n| **n == name).count();
    assert_eq!(count("GASKET_IOCTL_MAP_BUFFER_FLAGS"), 2, "one refusal above, one by the runtime: {log:?}");
    assert!(count("GASKET_IOCTL_MAP_BUFFER") > 4, "{log:?}");
    assert_eq!(count("GASKET_IOCTL_MAP_BUFFER"), count("GASKET_IOCTL_UNMAP_BUFFER"));
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// gasket answers an ioctl it does not know with EPERM (its permission check), not ENOTTY.
#[test]
fn an_unknown_ioctl_is_refused_with_eperm() {
    let (sim, fd) = kernel(true);
    let unknown = ioctl::Ioctl {
        name: "GASKET_IOCTL_UNKNOWN",
        number: ioctl::ioc(1, ioctl::GASKET, 0x42, 8),
        size: 8,
        by_value: false,
    };
    let e = sim.ioctl(fd, unknown, &mut [0u8; 8]).unwrap_err();
    assert_eq!(e.errno, 1, "{e}");
    sim.close(fd);
}

/// Disabling the coherent allocator needs the DMA address it returned at enable (gasket answers
/// EADDRNOTAVAIL otherwise, and the memory stays allocated); the runtime's close passes it.
#[test]
fn disabling_the_coherent_allocator_needs_its_dma_address() {
    let (sim, fd) = kernel(true);
    let mut arg = ioctl::words(&[0, 1, 0x4000, 0], ioctl::COHERENT_SIZE);
    sim.ioctl(fd, ioctl::CONFIG_COHERENT_ALLOCATOR, &mut arg).unwrap();
    let dma = ioctl::word(&arg, 3);
    assert_ne!(dma, 0);
    let mut wrong = ioctl::words(&[0, 0, 0x4000, 0], ioctl::COHERENT_SIZE);
    let e = sim.ioctl(fd, ioctl::CONFIG_COHERENT_ALLOCATOR, &mut wrong).unwrap_err();
    assert_eq!(e.errno, 99, "EADDRNOTAVAIL: {e}");
    let mut right = ioctl::words(&[0, 0, 0x4000, dma], ioctl::COHERENT_SIZE);
    sim.ioctl(fd, ioctl::CONFIG_COHERENT_ALLOCATOR, &mut right).unwrap();
    sim.close(fd);
    assert!(sim.violations().iter().all(|v| v.contains("disabled with DMA address 0x0")), "{:?}", sim.violations());

    let sim = SimApex::new(SimApexConfig::default());
    for _ in 0..2 {
        let acc =
            ApexAccelerator::open(Arc::new(sim.clone()), Path::new("/dev/apex_0"), ApexOptions::default()).unwrap();
        acc.close().unwrap_or_else(|e| panic!("close: {e}"));
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// A simulated kernel whose page table is partitioned, as after the open sequence, and the
/// device node's descriptor.
fn kernel(coherent: bool) -> (SimApex, Fd) {
    let sim = SimApex::new(SimApexConfig { coherent, ..Default::default() });
    let fd = sim.open(Path::new("/dev/apex_0")).unwrap();
    sim.ioctl(fd, ioctl::PARTITION_PAGE_TABLE, &mut ioctl::page_table(6144, 0, 0)).unwrap();
    (sim, fd)
}

fn map(sim: &SimApex, fd: Fd, r: Region, device: u64, direction: Direction) {
    let mut arg = ioctl::page_table_flags(r.len as u64, r.address, device, direction);
    sim.ioctl(fd, ioctl::MAP_BUFFER_FLAGS, &mut arg).unwrap();
}

fn unmap(sim: &SimApex, fd: Fd, r: Region, device: u64) {
    sim.ioctl(fd, ioctl::UNMAP_BUFFER, &mut ioctl::page_table(r.len as u64, r.address, device)).unwrap();
}

/// gasket pins a mapping to the device read-only: a page the host never wrote is the kernel's
/// zero page, and the chip reads zeros from it for the life of the mapping, whatever the host
/// writes after the map, on either kind of host. Written first, then mapped, the chip reads the
/// data.
#[test]
fn a_buffer_mapped_to_the_device_before_it_is_written_reads_as_zeros() {
    for coherent in [true, false] {
        let (sim, fd) = kernel(coherent);
        let data: Vec<u8> = (0..2 * 4096).map(|k| (k % 251) as u8 + 1).collect();
        let early = sim.alloc(data.len()).unwrap();
        map(&sim, fd, early, EXTENDED_BASE, Direction::ToDevice);
        sim.write(early, 0, &data);
        assert_eq!(sim.dma_read(EXTENDED_BASE, data.len()).unwrap(), vec![0u8; data.len()], "coherent {coherent}");
        let v = sim.violations();
        assert!(v.iter().any(|v| v.contains("after the map")), "coherent {coherent}: {v:?}");
        assert!(v.iter().any(|v| v.contains("zero page")), "coherent {coherent}: {v:?}");
        unmap(&sim, fd, early, EXTENDED_BASE);
        // The page is the process's own now (the host wrote it): mapped again, the chip reads it.
        map(&sim, fd, early, EXTENDED_BASE, Direction::ToDevice);
        assert_eq!(sim.dma_read(EXTENDED_BASE, data.len()).unwrap(), data, "coherent {coherent}");
        unmap(&sim, fd, early, EXTENDED_BASE);

        let (sim, fd) = kernel(coherent);
        let filled = sim.alloc(data.len()).unwrap();
        sim.write(filled, 0, &data);
        map(&sim, fd, filled, EXTENDED_BASE, Direction::ToDevice);
        assert_eq!(sim.dma_read(EXTENDED_BASE + 5, 100).unwrap(), data[5..105], "coherent {coherent}");
        assert!(sim.dma_write(EXTENDED_BASE, &[1]).is_err(), "a mapping to the device is read-only");
        unmap(&sim, fd, filled, EXTENDED_BASE);
        // A mapping the chip may write pins the pages writable: no zero page.
        let scratch = sim.alloc(4096).unwrap();
        map(&sim, fd, scratch, EXTENDED_BASE, Direction::Bidirectional);
        sim.dma_write(EXTENDED_BASE, &[7; 16]).unwrap();
        assert_eq!(sim.dma_read(EXTENDED_BASE, 16).unwrap(), [7; 16]);
        unmap(&sim, fd, scratch, EXTENDED_BASE);
        sim.close(fd);
        assert!(sim.violations().is_empty(), "coherent {coherent}: {:?}", sim.violations());
    }
}

/// Streaming DMA on a non-coherent host: a buffer mapped once and reused gives the chip the
/// data of map time and the host the data of before the chip wrote, until it is unmapped; on a
/// coherent host both sides see each other at once. (Touching a mapped buffer is recorded as a
/// violation on both.)
#[test]
fn a_buffer_reused_without_remapping_is_stale_on_a_noncoherent_host() {
    for coherent in [true, false] {
        let (sim, fd) = kernel(coherent);
        let input = sim.alloc(4096).unwrap();
        sim.write(input, 0, &[1; 64]);
        map(&sim, fd, input, EXTENDED_BASE, Direction::ToDevice);
        assert_eq!(sim.dma_read(EXTENDED_BASE, 64).unwrap(), [1; 64]);
        // The next request's input, written without mapping the buffer again.
        sim.write(input, 0, &[2; 64]);
        let seen = sim.dma_read(EXTENDED_BASE, 64).unwrap();
        assert_eq!(seen, [if coherent { 2 } else { 1 }; 64], "coherent {coherent}: the chip's view of the input");
        unmap(&sim, fd, input, EXTENDED_BASE);
        map(&sim, fd, input, EXTENDED_BASE, Direction::ToDevice);
        assert_eq!(sim.dma_read(EXTENDED_BASE, 64).unwrap(), [2; 64], "mapped again, the chip sees the new input");
        unmap(&sim, fd, input, EXTENDED_BASE);

        let output = sim.alloc(4096).unwrap();
        let at = EXTENDED_BASE + 0x10000;
        map(&sim, fd, output, at, Direction::FromDevice);
        sim.dma_write(at + 8, &[9; 32]).unwrap();
        let mut early = [0u8; 32];
        sim.read(output, 8, &mut early);
        assert_eq!(early, [if coherent { 9 } else { 0 }; 32], "coherent {coherent}: the host reads before unmap");
        unmap(&sim, fd, output, at);
        let mut late = [0u8; 32];
        sim.read(output, 8, &mut late);
        assert_eq!(late, [9; 32], "coherent {coherent}: after the unmap the host sees the chip's writes");
        let v = sim.violations();
        assert_eq!(v.len(), 2, "coherent {coherent}: the write and the read under a mapping: {v:?}");
        assert!(v[0].contains("host write") && v[1].contains("host read"), "{v:?}");
        sim.close(fd);
    }
}
