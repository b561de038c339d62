//! What the examples' tests share: the test data and scratch directories.
#![allow(dead_code)]

use edgetpu_examples::{DeviceArgs, Session};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod testdata;
pub use testdata::testdata;

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

/// A detection of a traffic_model golden: class, score and box edges in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldenDetection {
    /// Class id.
    pub id: u64,
    /// Score.
    pub score: f64,
    /// Left edge, in pixels of the 256x256 frame.
    pub xmin: f64,
    /// Top edge.
    pub ymin: f64,
    /// Right edge.
    pub xmax: f64,
    /// Bottom edge.
    pub ymax: f64,
}

/// The detections of traffic_model golden `case` scoring at least `threshold`, best first (the
/// frames are the input size, 256x256, so the boxes scale to it).
pub fn traffic_golden(case: &str, threshold: f32) -> Vec<GoldenDetection> {
    let golden = golden("traffic_model", case);
    let px = |v: &Value| (v.as_f64().unwrap() * 256.0).clamp(0.0, 256.0);
    let found: Vec<GoldenDetection> = golden["result"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["score"].as_f64().unwrap() >= threshold as f64)
        .map(|d| {
            let b = d["box_ymin_xmin_ymax_xmax"].as_array().unwrap();
            GoldenDetection {
                id: d["class_id"].as_u64().unwrap(),
                score: d["score"].as_f64().unwrap(),
                xmin: px(&b[1]),
                ymin: px(&b[0]),
                xmax: px(&b[3]),
                ymax: px(&b[2]),
            }
        })
        .collect();
    assert!(!found.is_empty(), "{case}: the golden has detections above {threshold}");
    found
}

/// Checks detections against a traffic_model golden: the same classes and scores in the same
/// order, and boxes within a thousandth of a pixel.
pub fn assert_traffic_golden(got: &[edgetpu::vision::Detection], case: &str, threshold: f32) {
    let want = traffic_golden(case, threshold);
    assert_eq!(got.len(), want.len(), "{case}: {got:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.id as u64, w.id, "{case}: {g:?} {w:?}");
        assert_eq!(g.score as f64, w.score, "{case}: {g:?} {w:?}");
        assert!((g.bbox.xmin as f64 - w.xmin).abs() < 1e-3, "{case}: {g:?} {w:?}");
        assert!((g.bbox.ymax as f64 - w.ymax).abs() < 1e-3, "{case}: {g:?} {w:?}");
    }
}

/// The two traffic frames and the golden case each one matches with zero LSTM state (the
/// model's state outputs are all zero, so the second frame's chained golden holds on its own).
pub const TRAFFIC_FRAMES: [(&str, &str); 2] = [("0001.bmp", "frame0001"), ("0002.bmp", "frame0002_chained")];

/// Copies the two traffic frames into `dir` (as 0001.bmp, 0002.bmp).
pub fn copy_traffic_frames(dir: &Path) {
    for (f, _) in TRAFFIC_FRAMES {
        std::fs::copy(testdata().join("automl_video_ondevice/traffic_frames").join(f), dir.join(f)).unwrap();
    }
}

/// The traffic frames as JPEG, in a Motion JPEG stream with multipart headers between frames
/// (as a saved HTTP stream has them): the stream, and each frame's JPEG.
pub fn traffic_mjpeg() -> (Vec<u8>, Vec<Vec<u8>>) {
    use std::io::Write;
    let mut stream = Vec::new();
    let mut jpegs = Vec::new();
    for (f, _) in TRAFFIC_FRAMES {
        let img = edgetpu::vision::image::open(testdata().join("automl_video_ondevice/traffic_frames").join(f))
            .unwrap()
            .to_rgb8();
        let jpeg = edgetpu_examples::mjpeg::encode(&img, 95).unwrap();
        let boundary = edgetpu_examples::http::BOUNDARY;
        write!(stream, "--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len()).unwrap();
        stream.extend_from_slice(&jpeg);
        stream.extend_from_slice(b"\r\n");
        jpegs.push(jpeg);
    }
    (stream, jpegs)
}
