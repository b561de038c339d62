//! USB transfer plans from real compiled models against PROTOCOL.md §2.2-2.3: the worked
//! mobilenet example, the posenet rule that a bulk-out waits for earlier outputs, and the LSTM
//! executable whose hints are not fully deterministic (device-driven transfers).

mod common;

use edgetpu::device::plan::{plan, Source, Step};
use edgetpu::device::usb::frame::Tag;
use edgetpu::package::{ExecutableType, Package};
use edgetpu::Model;

fn open(rel: &str) -> Model {
    Model::open(common::testdata().join(rel)).unwrap()
}

#[test]
fn mobilenet_plan_is_the_worked_example() {
    let model = open("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let pkg = Package::all(&model).unwrap().remove(0);
    let pc = pkg.executables.iter().find(|e| e.kind == ExecutableType::ParameterCaching).unwrap();
    let out = |tag, size, source| Step::BulkOut { tag, size, source, after_outputs: false };
    assert_eq!(
        plan(pc).unwrap(),
        [
            out(Tag::Instructions, 12624, Source::Instructions { chunk: 0 }),
            out(Tag::Parameters, 566_912, Source::Parameters { offset: 0 }),
            Step::WaitInterrupt { number: 0 },
        ]
    );
    assert_eq!(
        plan(pkg.main()).unwrap(),
        [
            out(Tag::Instructions, 170_032, Source::Instructions { chunk: 0 }),
            out(Tag::InputActivations, 49152, Source::Input { layer: 0, batch: 0, offset: 0 }),
            Step::BulkIn { layer: 0, batch: 0, offset: 0, size: 1008 },
            Step::WaitInterrupt { number: 0 },
        ]
    );
}

#[test]
fn bulk_outs_after_an_output_wait_for_it() {
    let mut saw = 0;
    for rel in common::all_models().iter().filter(|r| r.ends_with("_edgetpu.tflite")) {
        let model = open(rel);
        for pkg in Package::all(&model).unwrap() {
            for exe in &pkg.executables {
                let Ok(steps) = plan(exe) else { continue };
                let mut output_seen = false;
                for s in &steps {
                    match s {
                        Step::BulkIn { .. } => output_seen = true,
                        Step::BulkOut { after_outputs, .. } => {
                            assert_eq!(*after_outputs, output_seen, "{rel}: {s:?}");
                            saw += usize::from(*after_outputs);
                        }
                        Step::Fence => output_seen = false,
                        Step::WaitInterrupt { .. } | Step::DeviceDriven => {}
                    }
                }
                let last = steps.last();
                assert!(matches!(last, Some(Step::WaitInterrupt { number: 0 } | Step::DeviceDriven)), "{rel}");
            }
        }
    }
    // posenet interleaves instructions with outputs (PROTOCOL.md §2.3).
    assert!(saw > 0, "no bulk-out after an output in the test data");
}

/// The LSTM's hints stop after its inputs: the plan sends what they name, then a fence, then
/// serves the device's descriptors (PROTOCOL.md §2.3).
#[test]
fn non_deterministic_hints_end_in_device_driven_transfers() {
    let model = open("keras_lstm_mnist_ptq_edgetpu.tflite");
    let pkg = Package::all(&model).unwrap().remove(0);
    let steps = plan(pkg.main()).unwrap();
    let out = |tag, size, source| Step::BulkOut { tag, size, source, after_outputs: false };
    assert_eq!(
        steps,
        [
            out(Tag::Instructions, 60864, Source::Instructions { chunk: 0 }),
            out(Tag::Parameters, 576, Source::Parameters { offset: 0 }),
            out(Tag::InputActivations, 784, Source::Input { layer: 0, batch: 0, offset: 0 }),
            out(Tag::InputActivations, 24, Source::Input { layer: 1, batch: 0, offset: 0 }),
            out(Tag::InputActivations, 40, Source::Input { layer: 2, batch: 0, offset: 0 }),
            Step::Fence,
            Step::DeviceDriven,
        ]
    );
    assert!(edgetpu::device::plan::device_driven(&steps));
    let pc = plan(pkg.parameter_caching().unwrap()).unwrap();
    assert!(!edgetpu::device::plan::device_driven(&pc));
}
