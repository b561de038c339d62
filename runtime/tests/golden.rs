//! Bit-exactness of the CPU interpreter: every golden of `testdata/golden` (made by TFLite's
//! reference kernels) is reproduced byte for byte, by the fast kernels on 2 threads and by the
//! reference kernels on 1.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::sync::Arc;

fn check(name: &str, reference: bool) {
    let root = common::testdata();
    let dir = root.join("golden").join(name);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (tag, json) in common::golden_runs(name) {
        let model_path = root.join(json["model_path"].as_str().unwrap());
        let model = Arc::new(Model::open(&model_path).unwrap());
        // Outputs are named by tensor index (posenet's goldens are intermediate tensors).
        let keep = json["outputs"].as_array().unwrap().iter().map(|o| o["index"].as_u64().unwrap() as usize).collect();
        let options = Options { threads: if reference { 1 } else { 2 }, reference, keep, ..Options::default() };
        let mut it = Interpreter::new(model, &options).unwrap_or_else(|e| panic!("{name}/{tag}: {e}"));
        for input in json["inputs"].as_array().unwrap() {
            let bytes = common::read_golden_bin(&dir, input["file"].as_str().unwrap());
            let i = it.inputs().iter().position(|t| t.index as u64 == input["index"].as_u64().unwrap()).unwrap();
            it.set_input(i, &bytes).unwrap();
        }
        it.invoke().unwrap_or_else(|e| panic!("{name}/{tag}: {e}"));
        for output in json["outputs"].as_array().unwrap() {
            let want = common::read_golden_bin(&dir, output["file"].as_str().unwrap());
            let t = output["index"].as_u64().unwrap() as usize;
            let got = it.tensor(t).unwrap();
            let d = common::diff_summary(got, &want);
            if !d.is_empty() {
                failures.push(format!("{tag} output tensor {t} ({}): {d}", output["name"]));
            }
        }
        runs += 1;
    }
    assert!(
        failures.is_empty(),
        "{name} ({}): {} mismatches:\n{}",
        if reference { "reference" } else { "fast" },
        failures.len(),
        failures.join("\n")
    );
    assert!(runs > 0);
}

macro_rules! golden {
    ($($test:ident => $name:expr,)*) => {
        mod fast { $( #[test] fn $test() { super::check($name, false); } )* }
        mod reference { $( #[test] fn $test() { super::check($name, true); } )* }
    };
}

golden! {
    deeplabv3 => "deeplabv3_mnv2_dm05_pascal_quant",
    detection_float_regular_nms => "detection_postprocess_float_regular_nms",
    detection_uint8_fast_nms => "detection_postprocess_uint8_fast_nms",
    detection_uint8_regular_nms_nobg => "detection_postprocess_uint8_regular_nms_nobg",
    keras_lstm_mnist => "keras_lstm_mnist_ptq",
    mobilenet_v1_025 => "mobilenet_v1_0.25_128_quant",
    mobilenet_v1_05 => "mobilenet_v1_0.5_160_quant",
    mobilenet_v1_075 => "mobilenet_v1_0.75_192_quant",
    mobilenet_v2_inat_bird => "mobilenet_v2_1.0_224_inat_bird_quant",
    mobilenet_v2_inat_insect => "mobilenet_v2_1.0_224_inat_insect_quant",
    mobilenet_v2 => "mobilenet_v2_1.0_224_quant",
    movenet_lightning => "movenet_single_pose_lightning_ptq",
    posenet_backbone => "posenet_mobilenet_v1_075_353_481_16_quant_decoder",
    split_concat => "split_concat",
    ssd_postprocess_tail => "ssd_mobilenet_v2_coco_postprocess_tail",
    tf2_mobilenet_v2_ptq => "tf2_mobilenet_v2_1.0_224_ptq",
    traffic_model => "traffic_model",
}

/// LSTM state carries over between invocations like TFLite's (the expected bytes were made by
/// one ai-edge-litert BUILTIN_REF interpreter invoked on mnist_nine, random1, mnist_nine).
#[test]
fn keras_lstm_state_carries_over() {
    let root = common::testdata();
    let dir = root.join("golden/keras_lstm_mnist_ptq");
    let want =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lstm/stateful_nine_random_nine.out0.bin"))
            .unwrap();
    for reference in [false, true] {
        let model = Arc::new(Model::open(root.join("keras_lstm_mnist_ptq.tflite")).unwrap());
        let mut it = Interpreter::new(model, &Options { reference, ..Options::default() }).unwrap();
        let mut got = Vec::new();
        for tag in ["mnist_nine", "random1", "mnist_nine"] {
            it.set_input(0, &common::read_golden_bin(&dir, &format!("{tag}.in0.bin"))).unwrap();
            it.invoke().unwrap();
            got.extend_from_slice(it.output(0).unwrap());
        }
        assert_eq!(got, want, "reference={reference}");
        assert_ne!(got[20..], got[..10], "the third run must differ from a fresh run (state carried over)");
    }
}

/// The fast-kernel goldens again in a child process with `EDGETPU_CPU_ISA=isa`. Under an
/// emulator that cannot start a foreign binary by itself (qemu-user without binfmt_misc),
/// `EDGETPU_TEST_RUNNER` names the command that runs this binary (the cross runner).
fn fast_goldens_with(isa: &str) {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("EDGETPU_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut child = match words.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let out = child.env("EDGETPU_CPU_ISA", isa).arg("fast::").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{isa} run failed ({}; under an emulator, set EDGETPU_TEST_RUNNER):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize =
        stdout.lines().find_map(|l| l.strip_prefix("test result: ok. ")?.split(' ').next()?.parse().ok()).unwrap_or(0);
    assert!(passed >= 17, "expected every fast golden to run in the {isa} child, got {passed}:\n{stdout}");
}

/// The portable kernels (what CPUs without SIMD kernels run) reproduce the goldens too.
#[test]
fn portable_kernels_match_goldens() {
    if std::env::var_os("EDGETPU_CPU_ISA").is_some() {
        return; // the child itself
    }
    fast_goldens_with("portable");
}

/// On a CPU with AVX-512 VNNI, the AVX2 kernels (what CPUs without it run) reproduce the goldens
/// too; elsewhere the main run already used them.
#[test]
fn avx2_kernels_match_goldens_on_avx512_cpus() {
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os("EDGETPU_CPU_ISA").is_none() && std::is_x86_feature_detected!("avx512vnni") {
        fast_goldens_with("avx2");
    }
}
