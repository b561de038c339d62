//! Compiled models run whole, CPU steps and Edge TPU steps together, through the runtime on the
//! simulated accelerator whose oracle is the CPU twin: every output equals the twin's.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::sched::{RuntimeOptions, Simulated};
use edgetpu::sim::usb::TimeModel;
use edgetpu::sim::OracleChoice;
use edgetpu::Model;
use std::sync::Arc;

/// Runs `compiled` through a simulated runtime and `twin` on the CPU with the same inputs
/// (twice, different inputs) and asserts equal outputs.
fn check(compiled: &str, twin: &str, oracle: OracleChoice) {
    let dir = common::testdata();
    let rt = Simulated::usb(1, TimeModel::zero(), oracle, RuntimeOptions::default()).unwrap();
    let model = Arc::new(Model::open(dir.join(compiled)).unwrap());
    let mut tpu = rt.interpreter(model, &Options { threads: 1, ..Default::default() }).unwrap();
    let mut cpu =
        Interpreter::new(Arc::new(Model::open(dir.join(twin)).unwrap()), &Options { threads: 1, ..Default::default() })
            .unwrap();
    assert_eq!(tpu.inputs().len(), cpu.inputs().len(), "{compiled}");
    for round in 0..2u32 {
        for i in 0..cpu.inputs().len() {
            let input = common::noise(cpu.input_mut(i).unwrap().len(), round * 7 + i as u32 + 1);
            cpu.set_input(i, &input).unwrap();
            tpu.set_input(i, &input).unwrap();
        }
        cpu.invoke().unwrap();
        tpu.invoke().unwrap_or_else(|e| panic!("{compiled}: {e}"));
        for j in 0..cpu.outputs().len() {
            assert_eq!(tpu.output(j).unwrap(), cpu.output(j).unwrap(), "{compiled} round {round} output {j}");
        }
    }
    let m = &rt.metrics()[0];
    assert_eq!(m.inferences, 2, "{compiled}: {m:?}");
    for sim in rt.sims() {
        assert!(sim.violations().is_empty(), "{compiled}: {:?}", sim.violations());
    }
}

#[test]
fn classifiers() {
    for name in ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant"] {
        check(&format!("{name}_edgetpu.tflite"), &format!("{name}.tflite"), OracleChoice::Twin);
    }
}

#[test]
fn deeplab_with_cpu_resize_and_argmax() {
    check(
        "deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite",
        "deeplabv3_mnv2_dm05_pascal_quant.tflite",
        OracleChoice::Twin,
    );
}

#[test]
fn movenet_with_cpu_ops_before_and_after() {
    check(
        "movenet_single_pose_lightning_ptq_edgetpu.tflite",
        "movenet_single_pose_lightning_ptq.tflite",
        OracleChoice::Twin,
    );
}

#[test]
fn posenet_with_the_cpu_decoder() {
    check(
        "posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite",
        "posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite",
        OracleChoice::Twin,
    );
}

#[test]
fn split_concat_with_tiled_outputs_in_another_order() {
    check("tools/split_concat_edgetpu.tflite", "tools/split_concat.tflite", OracleChoice::Twin);
}

#[test]
fn co_compiled_models() {
    let dir = common::testdata();
    for (compiled, twin) in [
        (
            "cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite",
            "mobilenet_v1_0.25_128_quant.tflite",
        ),
        (
            "cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite",
            "mobilenet_v1_0.5_160_quant.tflite",
        ),
    ] {
        check(compiled, twin, OracleChoice::Model(dir.join(twin)));
    }
}

/// The LSTM's executable has hints that stop after its inputs (device-descriptor mode: the
/// device announces each output) and two `_variable_output` layers, the recurrent state, which
/// are written back into the model's variable tensors: state carries over between invocations
/// exactly as in TFLite (`check` runs twice; the second run starts from the first one's state).
#[test]
fn lstm_state_written_back_through_device_descriptors() {
    check("keras_lstm_mnist_ptq_edgetpu.tflite", "keras_lstm_mnist_ptq.tflite", OracleChoice::Twin);
}

/// The same three invocations as the TFLite golden of the CPU model (ai-edge-litert, one
/// interpreter invoked on mnist_nine, random1, mnist_nine), through the Edge TPU path.
#[test]
fn lstm_through_the_device_matches_the_tflite_stateful_golden() {
    let root = common::testdata();
    let dir = root.join("golden/keras_lstm_mnist_ptq");
    let want =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lstm/stateful_nine_random_nine.out0.bin"))
            .unwrap();
    let rt = Simulated::usb(1, TimeModel::zero(), OracleChoice::Twin, RuntimeOptions::default()).unwrap();
    let model = Arc::new(Model::open(root.join("keras_lstm_mnist_ptq_edgetpu.tflite")).unwrap());
    let mut it = rt.interpreter(model, &Options::default()).unwrap();
    let mut got = Vec::new();
    for tag in ["mnist_nine", "random1", "mnist_nine"] {
        it.set_input(0, &common::read_golden_bin(&dir, &format!("{tag}.in0.bin"))).unwrap();
        it.invoke().unwrap();
        got.extend_from_slice(it.output(0).unwrap());
    }
    assert_eq!(got, want);
    assert_ne!(got[20..], got[..10], "the third run must differ from a fresh run (state carried over)");
    let sim = &rt.sims()[0];
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}
