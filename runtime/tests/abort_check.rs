//! The loader under `panic = "abort"`: builds `examples/load_corpus.rs` with the workspace's
//! `abort-check` profile (panics abort, overflow checks on) and runs it on the fuzz corpus and the
//! small test models, each with its mutations. Any panic in the loader or in the flatbuffers
//! verifier kills that process, and this test fails with its output.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn loader_never_aborts_on_the_malformed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = root.join("fuzz/corpus/load_decode");
    let mut files: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("soffset_i32_min")),
        "the i32::MIN soffset seed is missing from {files:?}"
    );
    for rel in
        ["tools/split_concat_edgetpu.tflite", "tools/split_concat.tflite", "mobilenet_v1_0.25_128_quant_edgetpu.tflite"]
    {
        let path = common::testdata().join(rel);
        assert!(path.is_file(), "test data {} is missing", path.display());
        files.push(path.display().to_string());
    }
    // A target directory of its own: this build must not wait for the lock of the one running us.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("abort-check");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "--quiet", "--profile", "abort-check", "-p", "edgetpu", "--no-default-features"])
        .args(["--example", "load_corpus", "--"])
        .args(&files)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("runs cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load_corpus under panic=abort failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().last().unwrap_or_default();
    let runs: usize = line
        .strip_prefix("loaded ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"));
    assert!(runs > 10_000, "only {runs} inputs were loaded: {stdout}");
}
