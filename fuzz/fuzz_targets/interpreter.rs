//! Fuzz target: plan a (mutated) model on the CPU and invoke it once with inputs from the fuzzer.
//!
//! Input: `u32 LE model length`, the model, then the bytes of the inputs (repeated to fill them).
//! The arena is capped at 8 MiB and tensors at 1 Mi elements so that a mutated shape is refused
//! instead of exhausting memory or time.
#![no_main]

use edgetpu::cpu::{Interpreter, Options};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let len = u32::from_le_bytes(*len) as usize;
    let Some((model, inputs)) = rest.split_at_checked(len) else { return };
    let Ok(model) = edgetpu::Model::from_bytes(model.to_vec()) else { return };
    let options = Options { threads: 1, max_arena_bytes: 8 << 20, ..Options::default() };
    let Ok(mut it) = Interpreter::new(Arc::new(model), &options) else { return };
    let sizes: Vec<usize> = it.inputs().iter().map(|t| t.byte_len()).collect();
    if sizes.iter().any(|&n| n > 1 << 20) || it.outputs().iter().any(|t| t.num_elements() > 1 << 20) {
        return;
    }
    for (i, n) in sizes.into_iter().enumerate() {
        let bytes: Vec<u8> =
            if inputs.is_empty() { vec![0; n] } else { inputs.iter().copied().cycle().take(n).collect() };
        let _ = it.set_input(i, &bytes);
    }
    if it.invoke().is_ok() {
        for j in 0..it.outputs().len() {
            let _ = it.output(j);
        }
    }
});
