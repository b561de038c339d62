//! A short soak of `edgetpu serve` with injected device faults (the long one, 16 clients × 2000
//! requests, is in `cargo bench -p edgetpu-serve --bench serve`).

#[path = "support/soak.rs"]
mod soak;

use std::path::PathBuf;
use std::time::Duration;

#[test]
fn sixteen_clients_with_device_faults() {
    let data = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(data.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", data.display());
    let scratch = std::env::temp_dir().join(format!("edgetpu-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let r = soak::soak(&data, &scratch, 16, 60, Duration::from_millis(15));
    eprintln!("{r:?}");
    assert_eq!(r.wrong, 0, "wrong outputs: {r:?}");
    assert_eq!(r.transport, 0, "broken connections: {r:?}");
    assert_eq!(r.ok + r.failed, 16 * 60);
    assert!(r.faults > 0, "no fault was injected: {r:?}");
    assert!(r.failed > 0, "the injected faults failed no request: {r:?}");
    assert!(r.ok > r.failed, "the devices did not recover: {r:?}");
    assert!(r.rss_end_kib * 10 <= r.rss_warm_kib * 11, "memory grew by more than 10%: {r:?}");
    assert!(!r.elapsed.is_zero());
    let _ = std::fs::remove_dir_all(&scratch);
}
