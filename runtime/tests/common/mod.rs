//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared test data: `EDGETPU_TESTDATA`, else `../shared/testdata` beside the workspace.
/// Panics (fails the test) when it is missing: these tests must never pass by skipping.
pub fn testdata() -> PathBuf {
    let dir = match std::env::var_os("EDGETPU_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
    };
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "test data not found at {}: set EDGETPU_TESTDATA to the shared testdata directory",
        dir.display()
    );
    dir
}

/// Every `.tflite` file under the test data, sorted, as paths relative to it.
pub fn all_models() -> Vec<String> {
    let root = testdata();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tflite") {
                out.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "expected the full test data set, found {} models", out.len());
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
