//! Shared helpers of the CLI's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The shared test data: `EDGETPU_TESTDATA`, else `../shared/testdata` beside the workspace.
/// Panics (fails the test) when it is missing: these tests never pass by skipping.
pub fn testdata() -> PathBuf {
    let dir = match std::env::var_os("EDGETPU_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
    };
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

/// A fresh scratch directory for one test of one suite.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-cli-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `edgetpu ARGS` (without `EDGETPU_FIRMWARE` from the environment): (success, stdout,
/// stderr).
pub fn edgetpu(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgetpu")).args(args).env_remove("EDGETPU_FIRMWARE").output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}
