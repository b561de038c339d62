//! Fuzz target: load a model from bytes and decode every Edge TPU package in it.
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run load_decode -s none` (see fuzz/README.md);
//! `runtime/tests/malformed.rs` replays the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = edgetpu::Model::from_bytes(data.to_vec()) {
        if let Ok(packages) = edgetpu::package::Package::all(&model) {
            for p in packages {
                let _ = p.ensure_runnable();
            }
        }
        let _ = model.associated_files();
    }
});
