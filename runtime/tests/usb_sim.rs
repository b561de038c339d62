//! The USB driver against the transfer-level simulator: firmware download, open sequence,
//! parameter caching and inferences of compiled models whose outputs must equal the CPU twin's.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::device::program::Program;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::sim::usb::{CpuTwinOracle, Oracle, SimBus, SimConfig};
use edgetpu::Model;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn firmware() -> PathBuf {
    let p = common::testdata().join("../firmware/apex_latest_single_ep.bin");
    assert!(p.is_file(), "firmware image missing at {}", p.display());
    p
}

fn options() -> UsbOptions {
    UsbOptions::default().firmware(firmware())
}

/// A compiled model, its CPU twin, and a simulator that knows it.
struct Setup {
    model: Arc<Model>,
    twin: Arc<Model>,
    bus: SimBus,
}

fn setup(name: &str, config: SimConfig) -> Setup {
    let dir = common::testdata();
    let model = Arc::new(Model::open(dir.join(format!("{name}_edgetpu.tflite"))).unwrap());
    let twin = Arc::new(Model::open(dir.join(format!("{name}.tflite"))).unwrap());
    let bus = SimBus::new(config);
    let pkgs = Package::all(&model).unwrap();
    let exe = pkgs[0].main();
    let oracle: Arc<Mutex<dyn Oracle>> =
        Arc::new(Mutex::new(CpuTwinOracle::new(twin.clone(), &exe.input_layers, &exe.output_layers).unwrap()));
    bus.load(&pkgs[0], name, Some(oracle)).unwrap();
    Setup { model, twin, bus }
}

fn cpu_outputs(twin: &Arc<Model>, input: &[u8]) -> Vec<Vec<u8>> {
    let mut cpu = Interpreter::new(twin.clone(), &Options::default()).unwrap();
    cpu.set_input(0, input).unwrap();
    cpu.invoke().unwrap();
    (0..cpu.outputs().len()).map(|j| cpu.output(j).unwrap().to_vec()).collect()
}

#[test]
fn classification_through_the_usb_driver_equals_the_cpu_twin() {
    let s = setup("mobilenet_v1_0.25_128_quant", SimConfig::default());
    let bus: Arc<dyn edgetpu::device::usb::UsbBus> = Arc::new(s.bus.clone());
    let path = s.bus.config_path();
    let mut acc = UsbAccelerator::open(bus, &path, options()).unwrap();
    assert_eq!(s.bus.stats().firmware_downloads, 1);
    assert_eq!(s.bus.firmware().unwrap(), std::fs::read(firmware()).unwrap());

    let pkgs = Package::all(&s.model).unwrap();
    let pkg = &pkgs[0];
    let mut program = Program::new(&s.model, pkg).unwrap();
    let layer = &pkg.main().input_layers[0];
    let out_layer = &pkg.main().output_layers[0];
    let in_len = layer.num_elements() * layer.data_type.size_bytes();
    let mut out = vec![0u8; out_layer.num_elements() * out_layer.data_type.size_bytes()];
    let cached = pkg.cached_parameter_bytes() as u64;
    let streamed = pkg.streamed_parameter_bytes() as u64;
    assert!(cached > 0, "this model caches its parameters");
    for run in 0..3u32 {
        let input = common::noise(in_len, run + 1);
        acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
        let want = cpu_outputs(&s.twin, &input);
        assert_eq!(out, want[0], "run {run}: TPU output differs from the CPU twin");
        // The parameters went once; only the streamed part goes with each inference.
        assert_eq!(s.bus.stats().parameter_bytes, cached + streamed * (run as u64 + 1), "run {run}");
    }
    assert_eq!(s.bus.stats().runs, 4, "one caching run and three inferences");
    assert_eq!(s.bus.cached_token(), Some(pkg.caching_token()));
    assert!(s.bus.violations().is_empty(), "{:?}", s.bus.violations());
    acc.close().unwrap();
    assert!(s.bus.violations().is_empty(), "{:?}", s.bus.violations());
}

/// Opens a simulated device (firmware included) that knows `models` (compiled file, CPU twin).
/// Compiled models with their CPU twins.
type Loaded = Vec<(Arc<Model>, Arc<Model>)>;

fn device_for(models: &[(&str, &str)], config: SimConfig) -> (SimBus, UsbAccelerator, Loaded) {
    let dir = common::testdata();
    let bus = SimBus::new(config);
    let mut loaded = Vec::new();
    for (compiled, twin) in models {
        let model = Arc::new(Model::open(dir.join(compiled)).unwrap());
        let twin = Arc::new(Model::open(dir.join(twin)).unwrap());
        let pkgs = Package::all(&model).unwrap();
        let exe = pkgs[0].main();
        let oracle: Arc<Mutex<dyn Oracle>> =
            Arc::new(Mutex::new(CpuTwinOracle::new(twin.clone(), &exe.input_layers, &exe.output_layers).unwrap()));
        bus.load(&pkgs[0], compiled, Some(oracle)).unwrap();
        loaded.push((model, twin));
    }
    let acc = UsbAccelerator::open(Arc::new(bus.clone()), &bus.config_path(), options()).unwrap();
    (bus, acc, loaded)
}

fn infer(acc: &mut UsbAccelerator, program: &mut Program, input: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; program.output_sizes().next().unwrap()];
    acc.run(program, &[input], &mut [&mut out]).unwrap();
    out
}

#[test]
fn every_compiled_classifier_matches_its_twin_over_usb3_and_usb2() {
    for speed in [edgetpu::device::usb::Speed::Super, edgetpu::device::usb::Speed::High] {
        for name in ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant"] {
            let config = SimConfig { speed, ..Default::default() };
            let files = [(format!("{name}_edgetpu.tflite"), format!("{name}.tflite"))];
            let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let (bus, mut acc, loaded) = device_for(&files, config);
            assert_eq!(acc.speed(), speed);
            let (model, twin) = &loaded[0];
            let pkgs = Package::all(model).unwrap();
            let mut program = Program::new(model, &pkgs[0]).unwrap();
            let l = &pkgs[0].main().input_layers[0];
            let input = common::noise(l.num_elements(), 99);
            let out = infer(&mut acc, &mut program, &input);
            assert_eq!(out, cpu_outputs(twin, &input)[0], "{name} at {speed}");
            // USB 2 reads outputs in 256-byte chunks, USB 3 in 1 KiB ones.
            let chunk = if speed == edgetpu::device::usb::Speed::High { 256 } else { 1024 };
            let st = bus.stats();
            assert_eq!(st.bulk_in_transfers, st.bulk_in_bytes.div_ceil(chunk), "{name} at {speed}: {st:?}");
            assert!(bus.violations().is_empty(), "{:?}", bus.violations());
            acc.close().unwrap();
        }
    }
}

#[test]
fn co_compiled_models_share_the_cache_and_take_turns_without_reloading() {
    let a = "cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite";
    let b = "cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite";
    let (bus, mut acc, loaded) = device_for(
        &[(a, "mobilenet_v1_0.25_128_quant.tflite"), (b, "mobilenet_v1_0.5_160_quant.tflite")],
        SimConfig::default(),
    );
    let pa = Package::all(&loaded[0].0).unwrap();
    let pb = Package::all(&loaded[1].0).unwrap();
    assert_eq!(pa[0].caching_token(), pb[0].caching_token(), "co-compiled models share a token");
    let mut programs = [Program::new(&loaded[0].0, &pa[0]).unwrap(), Program::new(&loaded[1].0, &pb[0]).unwrap()];
    let cached = (pa[0].cached_parameter_bytes() + pb[0].cached_parameter_bytes()) as u64;
    let streamed = [pa[0].streamed_parameter_bytes() as u64, pb[0].streamed_parameter_bytes() as u64];
    let mut expected_bytes = 0;
    for turn in 0..6 {
        let k = turn % 2;
        let (model, twin) = &loaded[k];
        let pkgs = Package::all(model).unwrap();
        let input = common::noise(pkgs[0].main().input_layers[0].num_elements(), turn as u32);
        let out = infer(&mut acc, &mut programs[k], &input);
        assert_eq!(out, cpu_outputs(twin, &input)[0], "turn {turn}");
        expected_bytes += streamed[k];
    }
    // Each model's cached parameters went once; after that only the streamed parts.
    assert_eq!(bus.stats().parameter_bytes, cached + expected_bytes);
    assert!(bus.violations().is_empty(), "{:?}", bus.violations());
}

#[test]
fn models_with_other_tokens_evict_each_other() {
    let (bus, mut acc, loaded) = device_for(
        &[
            ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mobilenet_v1_0.25_128_quant.tflite"),
            ("mobilenet_v1_0.5_160_quant_edgetpu.tflite", "mobilenet_v1_0.5_160_quant.tflite"),
        ],
        SimConfig::default(),
    );
    let pkgs: Vec<_> = loaded.iter().map(|(m, _)| Package::all(m).unwrap()).collect();
    assert_ne!(pkgs[0][0].caching_token(), pkgs[1][0].caching_token());
    let mut programs =
        [Program::new(&loaded[0].0, &pkgs[0][0]).unwrap(), Program::new(&loaded[1].0, &pkgs[1][0]).unwrap()];
    let mut expected_bytes = 0;
    for turn in 0..4 {
        let k = turn % 2;
        let input = common::noise(pkgs[k][0].main().input_layers[0].num_elements(), 5);
        let out = infer(&mut acc, &mut programs[k], &input);
        assert_eq!(out, cpu_outputs(&loaded[k].1, &input)[0]);
        expected_bytes += (pkgs[k][0].cached_parameter_bytes() + pkgs[k][0].streamed_parameter_bytes()) as u64;
    }
    assert_eq!(bus.stats().parameter_bytes, expected_bytes, "every switch re-caches");
}

/// The LSTM (hints not fully deterministic) through the USB driver: the device announces its
/// three outputs (one of them the model output, two the recurrent state) by descriptors, and
/// the host reads each into the buffer the descriptor names. A host that does not enable output
/// descriptors is caught by the simulator.
#[test]
fn device_driven_outputs_of_the_lstm() {
    let s = setup("keras_lstm_mnist_ptq", SimConfig::default());
    let bus: Arc<dyn edgetpu::device::usb::UsbBus> = Arc::new(s.bus.clone());
    let mut acc = UsbAccelerator::open(bus, &s.bus.config_path(), options()).unwrap();
    let pkgs = Package::all(&s.model).unwrap();
    let mut program = Program::new(&s.model, &pkgs[0]).unwrap();
    let sizes: Vec<usize> = program.input_sizes().collect();
    let inputs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(k, &n)| common::noise(n, k as u32 + 5)).collect();
    let mut outs: Vec<Vec<u8>> = program.output_sizes().map(|n| vec![0u8; n]).collect();
    assert_eq!(outs.len(), 3, "output, and the two state layers");
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let before = s.bus.stats();
    {
        let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        acc.run(&mut program, &refs, &mut o).unwrap();
    }
    let after = s.bus.stats();
    let padded: u64 = pkgs[0].main().output_layers.iter().map(|l| l.size_bytes as u64).sum();
    assert_eq!(after.bulk_in_bytes - before.bulk_in_bytes, padded, "every output layer was read, padding included");
    assert!(s.bus.violations().is_empty(), "{:?}", s.bus.violations());

    // The same outputs from the CPU twin, its state set from the state inputs.
    let mut cpu = Interpreter::new(s.twin.clone(), &Options { keep: vec![17, 18], ..Default::default() }).unwrap();
    cpu.invoke_section(&[(0, &inputs[0]), (17, &inputs[1]), (18, &inputs[2])], &[28]).unwrap();
    assert_eq!(outs[0], cpu.tensor(28).unwrap());
    assert_eq!(outs[1], cpu.tensor(17).unwrap(), "the new h state");
    assert_eq!(outs[2], cpu.tensor(18).unwrap(), "the new c state");
    assert_ne!(outs[1], inputs[1], "the state changed");

    // The device's descriptors were turned on for this program and stay on.
    assert_eq!(s.bus.csr(edgetpu::device::csr::DESCR_EP.offset), 0xFF);
    acc.close().unwrap();

    // A host that does not know the program needs the device's descriptors (the device-driven
    // step removed) leaves descr_ep at 0xF0 after open: the simulator flags it.
    let bus: Arc<dyn edgetpu::device::usb::UsbBus> = Arc::new(s.bus.clone());
    let mut acc = UsbAccelerator::open(bus, &s.bus.config_path(), options()).unwrap();
    assert_eq!(s.bus.csr(edgetpu::device::csr::DESCR_EP.offset), 0xF0, "open writes 0xF0 by default");
    program.main.steps.retain(|s| *s != edgetpu::device::plan::Step::DeviceDriven);
    let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let _ = acc.run(&mut program, &refs, &mut o);
    assert!(s.bus.violations().iter().any(|v| v.contains("descr_ep")), "{:?}", s.bus.violations());
}

#[test]
fn only_a_high_speed_link_gets_the_usb2_output_chunks() {
    // libedgetpu sets 256-byte output chunks (outfeed_chunk_length 0x20) for High speed only; a
    // Full-speed link gets the SuperSpeed value, as there.
    use edgetpu::device::usb::Speed;
    for (speed, want) in [(Speed::Super, 0x80), (Speed::High, 0x20), (Speed::Full, 0x80)] {
        let s = setup("mobilenet_v1_0.25_128_quant", SimConfig { speed, ..SimConfig::default() });
        let bus: Arc<dyn edgetpu::device::usb::UsbBus> = Arc::new(s.bus.clone());
        let mut acc = UsbAccelerator::open(bus, &s.bus.config_path(), options()).unwrap();
        let chunk = s.bus.csr(edgetpu::device::csr::OUTFEED_CHUNK_LENGTH.offset);
        assert_eq!(chunk, want, "{speed:?}");
        // And it runs.
        let pkgs = Package::all(&s.model).unwrap();
        let mut program = Program::new(&s.model, &pkgs[0]).unwrap();
        let input = common::noise(128 * 128 * 3, 3);
        let mut out = vec![0u8; 1001];
        acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
        assert_eq!(out, cpu_outputs(&s.twin, &input)[0], "{speed:?}");
        assert!(s.bus.violations().is_empty(), "{speed:?}: {:?}", s.bus.violations());
    }
}

#[test]
fn real_time_mode_sleeps_the_whole_modelled_time_compute_included() {
    let time = edgetpu::sim::usb::TimeModel { realtime: true, ..edgetpu::sim::usb::TimeModel::usb3() };
    let files = [("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mobilenet_v1_0.25_128_quant.tflite")];
    let (bus, mut acc, loaded) = device_for(&files, SimConfig { time, ..Default::default() });
    let model = &loaded[0].0;
    let pkgs = Package::all(model).unwrap();
    let mut program = Program::new(model, &pkgs[0]).unwrap();
    let input = common::noise(128 * 128 * 3, 5);
    infer(&mut acc, &mut program, &input);
    let (clock, wall) = (bus.elapsed(), std::time::Instant::now());
    for _ in 0..20 {
        infer(&mut acc, &mut program, &input);
    }
    let (modelled, wall) = (bus.elapsed() - clock, wall.elapsed());
    // Most of an inference's modelled time is the chip computing; a simulator that slept only for
    // its transfers would take well under half of it.
    let compute = time.compute_per_instruction_byte
        * pkgs[0].main().bitstreams.iter().map(|b| b.data.len()).sum::<usize>() as u32
        * 20;
    assert!(compute * 2 > modelled, "compute {compute:?} is most of the modelled {modelled:?}");
    // Sleeps overshoot, and an overshoot is credited to the next operations (at most 1 ms).
    assert!(wall + std::time::Duration::from_millis(1) >= modelled, "slept {wall:?} of {modelled:?} modelled");
    assert!(bus.violations().is_empty(), "{:?}", bus.violations());
}
