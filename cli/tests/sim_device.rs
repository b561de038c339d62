//! `--device sim` end to end: a compiled model runs through the USB driver against the
//! simulator and gives its CPU twin's bytes; the output says it was simulated and where the
//! values came from; `doctor --record` writes a trace that replays without the simulator.

use edgetpu::device::program::Program;
use edgetpu::device::usb::record::ReplayBus;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use std::path::Path;
use std::sync::Arc;

mod common;

use common::{edgetpu, testdata};

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("sim", name)
}

/// `edgetpu run --device DEVICE --model MODEL --input INPUT --output-dir OUT EXTRA...`.
fn run(device: &str, model: &Path, input: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "run",
        "--device",
        device,
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    edgetpu(&args)
}

#[test]
fn run_on_the_simulated_accelerator_gives_the_cpu_twins_bytes() {
    let dir = scratch("run");
    let input = dir.join("in.bin");
    std::fs::write(&input, (0..128 * 128 * 3).map(|i| (i * 31 % 256) as u8).collect::<Vec<u8>>()).unwrap();
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let twin = testdata().join("mobilenet_v1_0.25_128_quant.tflite");
    let firmware = testdata().join("../firmware/apex_latest_single_ep.bin");
    let (tpu_dir, cpu_dir) = (dir.join("tpu"), dir.join("cpu"));
    let (ok, stdout, stderr) = run("sim", &compiled, &input, &tpu_dir, &["--firmware", firmware.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("sim:0") && stderr.contains("no hardware"), "{stderr}");
    assert!(stderr.contains("CPU twin") && stderr.contains("mobilenet_v1_0.25_128_quant.tflite"), "{stderr}");
    assert!(stderr.contains("downloading firmware: 10783 / 10783 bytes"), "progress is shown: {stderr}");
    assert!(stdout.contains("simulated"), "{stdout}");
    let (ok, _, stderr) = run("cpu", &twin, &input, &cpu_dir, &[]);
    assert!(ok, "{stderr}");
    let a = std::fs::read(tpu_dir.join("out0.bin")).unwrap();
    assert_eq!(a.len(), 1001);
    assert_eq!(a, std::fs::read(cpu_dir.join("out0.bin")).unwrap());

    // The alias, and no twin beside the model: seeded bytes, said so.
    let lone = dir.join("lone_edgetpu.tflite");
    std::fs::copy(&compiled, &lone).unwrap();
    let (ok, _, stderr) = run("sim:usb", &lone, &input, &dir.join("seeded"), &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("seeded bytes") && stderr.contains("--sim-oracle"), "{stderr}");
    assert!(stderr.contains("start with their firmware loaded"), "no firmware was given: {stderr}");
    // --sim-oracle names the twin explicitly.
    let (ok, _, stderr) = run("sim", &lone, &input, &dir.join("oracle"), &["--sim-oracle", twin.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(dir.join("oracle/out0.bin")).unwrap(), a);
}

#[test]
fn a_model_with_cpu_ops_runs_whole_and_equals_its_twin() {
    let dir = scratch("hybrid");
    let input = dir.join("in.bin");
    std::fs::write(&input, (0..513 * 513 * 3).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>()).unwrap();
    let compiled = testdata().join("deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite");
    let twin = testdata().join("deeplabv3_mnv2_dm05_pascal_quant.tflite");
    let out = |model: &Path, device: &str, name: &str| {
        let out_dir = dir.join(name);
        let (ok, _, stderr) = run(device, model, &input, &out_dir, &[]);
        assert!(ok, "{stderr}");
        std::fs::read(out_dir.join("out0.bin")).unwrap()
    };
    // The Edge TPU step on the simulator, the resize and argmax after it on the CPU.
    assert_eq!(out(&compiled, "sim", "tpu"), out(&twin, "cpu", "cpu"));
}

#[test]
fn compiled_models_without_an_edge_tpu_name_their_cpu_twin() {
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let (x, y) = (Path::new("x"), Path::new("y"));
    let (ok, _, stderr) = run("cpu", &compiled, x, y, &[]);
    assert!(!ok);
    assert!(stderr.contains("mobilenet_v1_0.25_128_quant.tflite with --device cpu"), "{stderr}");
    let (ok, _, stderr) = run("tpu0", &compiled, x, y, &[]);
    assert!(!ok && stderr.contains("use auto, cpu, usb"), "{stderr}");
}

#[test]
fn doctor_records_a_session_that_replays() {
    let dir = scratch("record");
    let trace = dir.join("session.jsonl");
    let model = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let firmware = testdata().join("../firmware/apex_latest_single_ep.bin");
    let (ok, stdout, stderr) = edgetpu(&[
        "doctor",
        "--device",
        "sim",
        "--record",
        trace.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--firmware",
        firmware.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("recorded") && stdout.contains("simulated device"), "{stdout}");

    // Replay the same session (firmware, open, one inference on zeros, close) from the file.
    let replay = Arc::new(ReplayBus::from_file(&trace).unwrap());
    let options = UsbOptions::default().firmware(firmware);
    let mut acc = UsbAccelerator::open_selected(replay.clone(), "usb", options).unwrap();
    let m = Arc::new(edgetpu::Model::open(&model).unwrap());
    let pkgs = Package::all(&m).unwrap();
    let mut program = Program::new(&m, &pkgs[0]).unwrap();
    let input = vec![0u8; 128 * 128 * 3];
    let mut out = vec![0u8; 1001];
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    acc.close().unwrap();
    replay.done().unwrap();
}

#[test]
fn classify_and_bench_on_simulated_devices() {
    let t = testdata();
    let compiled = t.join("mobilenet_v1_0.5_160_quant_edgetpu.tflite");
    let twin = t.join("mobilenet_v1_0.5_160_quant.tflite");
    let image = t.join("cat.bmp");
    let labels = t.join("imagenet_labels.txt");
    let classify = |model: &std::path::Path, device: &str| {
        let (ok, stdout, stderr) = edgetpu(&[
            "classify",
            "--device",
            device,
            "--model",
            model.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["classes"].clone()
    };
    let tpu = classify(&compiled, "sim");
    assert_eq!(tpu, classify(&twin, "cpu"));
    assert!(tpu[0]["label"].as_str().unwrap().contains("cat"), "{tpu}");

    // Data-parallel on two simulated devices: every device works, each loads the parameters once.
    let (ok, stdout, stderr) = edgetpu(&[
        "bench",
        "--device",
        "sim:0,sim:1",
        "--model",
        compiled.to_str().unwrap(),
        "--iterations",
        "40",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let runs: u64 = devices.iter().map(|d| d["inferences"].as_u64().unwrap()).sum();
    assert!(runs >= 40, "{v}");
    for d in devices {
        assert!(d["inferences"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(d["cache_misses"].as_u64().unwrap(), 1, "{v}");
    }
    assert!(v["throughput_per_s"].as_f64().unwrap() > 0.0);
}

/// `--device sim:pci`: the same model through the PCIe backend against the simulated apex
/// driver gives the CPU twin's bytes, and says it was simulated.
#[test]
fn run_on_a_simulated_pcie_edge_tpu_gives_the_cpu_twins_bytes() {
    let dir = scratch("pci");
    let input = dir.join("in.bin");
    std::fs::write(&input, (0..128 * 128 * 3).map(|i| (i * 13 % 256) as u8).collect::<Vec<u8>>()).unwrap();
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let twin = testdata().join("mobilenet_v1_0.25_128_quant.tflite");
    let (ok, _, stderr) = run("sim:pci", &compiled, &input, &dir.join("tpu"), &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("sim:pci:0") && stderr.contains("simulated PCIe"), "{stderr}");
    let (ok, _, stderr) = run("cpu", &twin, &input, &dir.join("cpu"), &[]);
    assert!(ok, "{stderr}");
    let a = std::fs::read(dir.join("tpu/out0.bin")).unwrap();
    assert_eq!(a.len(), 1001);
    assert_eq!(a, std::fs::read(dir.join("cpu/out0.bin")).unwrap());
    // A PCIe device that does not exist is named, with what to do.
    let (ok, _, stderr) = run("pci:7", &compiled, &input, &dir.join("none"), &[]);
    assert!(!ok);
    assert!(stderr.contains("pci:7") && stderr.contains("no PCIe Coral found"), "{stderr}");
}
