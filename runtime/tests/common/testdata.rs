//! Where the shared test data is: the one helper of this crate's unit tests, integration tests
//! and benchmarks (`#[path]`-included by those outside `tests/`).

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
