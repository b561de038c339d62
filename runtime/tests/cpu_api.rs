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
fn tensor_mut_writes_arena_tensors_only() {
    let model = open("mobilenet_v1_0.25_128_quant.tflite");
    let sg = &model.subgraphs()[0];
    let (input, output) = (sg.inputs[0], sg.outputs[0]);
    let weights = sg.tensors.iter().position(|t| t.is_constant()).unwrap();
    let intermediate = sg.operators[0].outputs[0].unwrap();
    let mut it = Interpreter::new(Arc::clone(&model), &Options::default()).unwrap();
    it.tensor_mut(input).unwrap().fill(9);
    assert!(it.tensor(input).unwrap().iter().all(|&b| b == 9));
    assert_eq!(it.tensor_mut(output).unwrap().len(), 1001);
    let err = it.tensor_mut(weights).unwrap_err();
    assert!(err.to_string().contains("constant"), "{err}");
    assert!(it.tensor_mut(intermediate).unwrap_err().to_string().contains("Options::keep"));
    assert_eq!(it.tensor_mut(sg.tensors.len()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // The memory stays where it is across invocations (bindings hand out views of it).
    let before = it.tensor_mut(output).unwrap().as_ptr();
    it.invoke().unwrap();
    assert_eq!(it.tensor_mut(output).unwrap().as_ptr(), before);
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

#[path = "cpu_malformed/mutations.rs"]
#[allow(dead_code)]
mod mutations;

/// `mobilenet_v1_0.25_128_quant` with its last operator (SOFTMAX, the only one of its kind)
/// turned into LOG_SOFTMAX, which has no CPU kernel, written to a file of its own: (path, node
/// index of that operator, its input tensor).
fn mobilenet_with_an_unsupported_tail(name: &str) -> (std::path::PathBuf, usize, usize) {
    let path = common::testdata().join("mobilenet_v1_0.25_128_quant.tflite");
    let mut bytes = std::fs::read(&path).unwrap();
    let model = Model::from_bytes(bytes.clone()).unwrap();
    let sg = &model.subgraphs()[0];
    let last = sg.operators.last().unwrap();
    assert_eq!(model.op_name(last), "SOFTMAX");
    assert_eq!(sg.operators.iter().filter(|op| op.opcode_index == last.opcode_index).count(), 1);
    let fields = mutations::targets(&model).opcodes[last.opcode_index];
    assert!(mutations::set_opcode(&mut bytes, fields, 50)); // LOG_SOFTMAX
    let out = std::env::temp_dir().join(format!("edgetpu-cpu-api-{}-{name}.tflite", std::process::id()));
    std::fs::write(&out, &bytes).unwrap();
    (out, last.index, last.inputs[0].unwrap())
}

fn cat() -> Vec<u8> {
    std::fs::read(common::testdata().join("golden/mobilenet_v1_0.25_128_quant/cat.in0.bin")).unwrap()
}

/// A plan holds only what the requested tensors need: a graph whose last op has no kernel fails
/// to load for its outputs (naming the op and node), yet runs for a tensor before that op, with
/// the same bytes as the intact model gives for it.
#[test]
fn asking_for_an_earlier_tensor_skips_an_unsupported_tail() {
    let (path, node, pre) = mobilenet_with_an_unsupported_tail("tail");
    let mutated = Arc::new(Model::open(&path).unwrap());
    let err = Interpreter::new(Arc::clone(&mutated), &Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let msg = err.to_string();
    for want in ["LOG_SOFTMAX/v1", &format!("node {node}"), "no CPU kernel"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    let intact = open("mobilenet_v1_0.25_128_quant.tflite");
    let mut full = Interpreter::new(Arc::clone(&intact), &Options { keep: vec![pre], ..Options::default() }).unwrap();
    full.set_input(0, &cat()).unwrap();
    full.invoke().unwrap();
    let want = full.tensor(pre).unwrap().to_vec();
    assert_eq!(want.len(), 1001);
    for reference in [false, true] {
        let options = Options { outputs: Some(vec![pre]), reference, ..Options::default() };
        let mut it = Interpreter::new(Arc::clone(&mutated), &options).unwrap();
        assert_eq!(it.plan().num_nodes(), full.plan().num_nodes() - 1);
        assert_eq!(it.outputs().iter().map(|t| t.index).collect::<Vec<_>>(), [pre]);
        it.set_input(0, &cat()).unwrap();
        it.invoke().unwrap();
        assert_eq!(it.output(0).unwrap(), &want[..], "reference: {reference}");
        assert_eq!(it.tensor(pre).unwrap(), &want[..]);
        // The model output is not computed, so not readable.
        let out = mutated.subgraphs()[0].outputs[0];
        assert_eq!(it.tensor(out).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    std::fs::remove_file(path).unwrap();
}

/// The default plan is pruned too: nodes no output (nor kept tensor) depends on are left out;
/// kept tensors stay computed.
#[test]
fn kept_tensors_are_computed_and_dead_nodes_skipped() {
    let model = open("mobilenet_v1_0.25_128_quant.tflite");
    let n = model.subgraphs()[0].operators.len();
    let first = model.subgraphs()[0].operators[0].outputs[0].unwrap();
    let all = Interpreter::new(Arc::clone(&model), &Options::default()).unwrap();
    assert_eq!(all.plan().num_nodes(), n);
    // Only the first node, with its output read through `keep` (no outputs requested).
    let options = Options { outputs: Some(Vec::new()), keep: vec![first], ..Options::default() };
    let mut one = Interpreter::new(Arc::clone(&model), &options).unwrap();
    assert_eq!(one.plan().num_nodes(), 1);
    assert!(one.outputs().is_empty());
    one.set_input(0, &cat()).unwrap();
    one.invoke().unwrap();
    let mut kept = Interpreter::new(model, &Options { keep: vec![first], ..Options::default() }).unwrap();
    kept.set_input(0, &cat()).unwrap();
    kept.invoke().unwrap();
    assert_eq!(one.tensor(first).unwrap(), kept.tensor(first).unwrap());
    let err = Interpreter::new(
        open("mobilenet_v1_0.25_128_quant.tflite"),
        &Options { outputs: Some(vec![100_000]), ..Options::default() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("tensor 100000 does not exist"), "{err}");
}

/// A pruned plan keeps the stateful LSTM its tensor depends on, and its state carries over
/// between invocations as in the full plan.
#[test]
fn pruned_plans_keep_stateful_nodes() {
    let model = open("keras_lstm_mnist_ptq.tflite");
    let sg = &model.subgraphs()[0];
    let lstm = sg.operators.iter().find(|op| model.op_name(op) == "UNIDIRECTIONAL_SEQUENCE_LSTM").unwrap();
    let t = lstm.outputs[0].unwrap();
    assert!(!sg.outputs.contains(&t));
    let dir = common::testdata().join("golden/keras_lstm_mnist_ptq");
    let runs = |options: &Options| -> Vec<Vec<u8>> {
        let mut it = Interpreter::new(Arc::clone(&model), options).unwrap();
        ["mnist_nine", "random1", "mnist_nine"]
            .iter()
            .map(|tag| {
                it.set_input(0, &common::read_golden_bin(&dir, &format!("{tag}.in0.bin"))).unwrap();
                it.invoke().unwrap();
                it.tensor(t).unwrap().to_vec()
            })
            .collect()
    };
    let full = runs(&Options { keep: vec![t], ..Options::default() });
    let pruned_options = Options { outputs: Some(vec![t]), ..Options::default() };
    assert!(Interpreter::new(Arc::clone(&model), &pruned_options).unwrap().plan().num_nodes() < sg.operators.len());
    assert_eq!(runs(&pruned_options), full);
    assert_ne!(full[2], full[0], "the third run must differ from the first (state carried over)");
}
