//! Where the shared test data is (shared by the checker's test files through `#[path]`).

use std::path::PathBuf;

/// `EDGETPU_TESTDATA`, else `../shared/testdata` beside the workspace; fails the test when it
/// is missing (these tests never pass by skipping).
pub fn testdata() -> PathBuf {
    let dir = match std::env::var_os("EDGETPU_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
    };
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}
