//! Interpreter API behaviour: load-time errors name the node, wrong inputs are refused, and
//! intermediate tensors are readable only when kept.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::{ErrorKind, Model};
use std::sync::Arc;

fn open(path: &str) -> Arc<Model> {
    Arc::new(Model::open(common::testdata().join(path)).unwrap())
}

#[test]
fn an_op_without_kernel_fails_at_load_naming_op_version_types_and_node() {
    let err = Interpreter::new(open("mobilenet_v1_0.25_128_quant_edgetpu.tflite"), &Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let msg = err.to_string();
    for want in ["edgetpu-custom-op/v1", "[uint8 -> uint8]", "node 0", "mobilenet_v1_0.25_128_quant_edgetpu.tflite"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
}

#[test]
fn inputs_of_the_wrong_size_or_index_are_refused() {
    let mut it = Interpreter::new(open("mobilenet_v1_0.25_128_quant.tflite"), &Options::default()).unwrap();
    let err = it.set_input(0, &[0u8; 10]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("takes 49152 bytes, got 10"), "{err}");
    assert_eq!(it.set_input(1, &[]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(it.output(3).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn intermediates_are_readable_only_when_kept() {
    let model = open("mobilenet_v1_0.25_128_quant.tflite");
    let sg = &model.subgraphs()[0];
    // The output of the first operator is an intermediate.
    let t = sg.operators[0].outputs[0].unwrap();
    let mut plain = Interpreter::new(Arc::clone(&model), &Options::default()).unwrap();
    plain.invoke().unwrap();
    let err = plain.tensor(t).unwrap_err();
    assert!(err.to_string().contains("Options::keep"), "{err}");
    let mut kept = Interpreter::new(model, &Options { keep: vec![t], ..Options::default() }).unwrap();
    kept.invoke().unwrap();
    let bytes = kept.tensor(t).unwrap();
    assert_eq!(bytes.len(), 64 * 64 * 8, "first conv output of mobilenet_v1_0.25 is 64x64x8");
}

#[test]
fn the_arena_reuses_memory() {
    let model = open("mobilenet_v2_1.0_224_quant.tflite");
    let sg = &model.subgraphs()[0];
    let it = Interpreter::new(Arc::clone(&model), &Options { threads: 1, ..Options::default() }).unwrap();
    let activations: usize =
        it.plan().tensors().iter().filter(|t| !sg.tensors[t.index].is_constant()).map(|t| t.byte_len()).sum();
    // Tensors whose lifetimes do not overlap share memory: the arena is a fraction of the sum
    // of all activations, and at least the largest two live together.
    let arena = it.plan().arena_bytes();
    assert!(arena * 2 < activations, "arena {arena} vs {activations} bytes of activations");
    assert!(arena >= 112 * 112 * 96 + 112 * 112 * 32, "arena {arena} too small for two live tensors");
}
