//! What the examples' tests share: the test data and scratch directories.
#![allow(dead_code)]

use edgetpu_examples::{DeviceArgs, Session};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `EDGETPU_TESTDATA`, else `../shared/testdata` beside the workspace; fails when it is missing.
pub fn testdata() -> PathBuf {
    let default = || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    let dir = std::env::var_os("EDGETPU_TESTDATA").map_or_else(default, PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-examples-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The JSON of golden case `case` of `model`.
pub fn golden(model: &str, case: &str) -> Value {
    let path = testdata().join(format!("golden/{model}/{case}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A session for a test-data model on `device`, on one thread.
pub fn session(model: &str, device: &str) -> Session {
    let args = DeviceArgs { device: device.into(), threads: 1 };
    Session::open(&testdata().join(model), &args).unwrap_or_else(|e| panic!("{model} on {device}: {e:#}"))
}

/// The traffic detector (an SSD with LSTM state inputs) and the frames it has goldens for.
pub const TRAFFIC_MODEL: &str = "automl_video_ondevice/traffic_model.tflite";

/// Checks detections against a traffic_model golden: the same classes and scores in the same
/// order, and boxes within a thousandth of a pixel (the frames are the input size, 256x256).
pub fn assert_traffic_golden(got: &[edgetpu::vision::Detection], case: &str, threshold: f32) {
    let golden = golden("traffic_model", case);
    let want: Vec<&Value> = golden["result"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["score"].as_f64().unwrap() >= threshold as f64)
        .collect();
    assert!(!want.is_empty(), "{case}: the golden has detections above {threshold}");
    assert_eq!(got.len(), want.len(), "{case}: {got:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.id as u64, w["class_id"].as_u64().unwrap(), "{case}: {g:?} {w}");
        assert_eq!(g.score as f64, w["score"].as_f64().unwrap(), "{case}: {g:?} {w}");
        let b = w["box_ymin_xmin_ymax_xmax"].as_array().unwrap();
        let px = |v: &Value| (v.as_f64().unwrap() * 256.0).clamp(0.0, 256.0);
        assert!((g.bbox.xmin as f64 - px(&b[1])).abs() < 1e-3, "{case}: {g:?} {w}");
        assert!((g.bbox.ymax as f64 - px(&b[2])).abs() < 1e-3, "{case}: {g:?} {w}");
    }
}

/// Copies the two traffic frames into `dir` (as 0001.bmp, 0002.bmp).
pub fn copy_traffic_frames(dir: &Path) {
    for f in ["0001.bmp", "0002.bmp"] {
        std::fs::copy(testdata().join("automl_video_ondevice/traffic_frames").join(f), dir.join(f)).unwrap();
    }
}
