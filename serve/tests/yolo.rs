//! Frigate's `yologeneric` decoding. The shared test data has no YOLO model, so
//! `tests/data/yolo/` holds a synthetic one with a YOLOv8 Edge TPU export's output layout (DFL
//! boxes `[1, 21, 64]`, class logits `[1, 21, 80]`, int8) whose outputs are slices of its input,
//! and the rows that Frigate's own detector code computes from them (made by
//! `tools/yolo-synthetic/make_case.py` with numpy and OpenCV's NMS).

use edgetpu_serve::frigate::{Session, Shared};
use edgetpu_serve::models::ModelStore;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/yolo")
}

fn session() -> Session {
    let store = ModelStore { dir: Some(data()), cache: None, max_upload: 1 << 20 };
    Session::new(Arc::new(Shared { runtime: None, store, threshold: 0.4 }))
}

fn json_reply(frames: &[Vec<u8>]) -> Value {
    assert_eq!(frames.len(), 1, "one reply frame");
    serde_json::from_slice(&frames[0]).unwrap()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn yologeneric_rows_equal_frigates() {
    let mut s = session();
    let r = json_reply(&s.handle(&[json!({"model_request": true, "model_name": "model.tflite"}).to_string().into()]));
    assert_eq!(r, json!({"model_available": true, "model_loaded": true}));
    let frame = std::fs::read(data().join("frame.bin")).unwrap();
    let header = json!({"shape": [1, 32, 32, 3], "dtype": "uint8", "model_type": "yologeneric"});
    let reply = s.handle(&[header.to_string().into(), frame]);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].len(), 20 * 6 * 4, "a 20x6 float32 reply: {}", String::from_utf8_lossy(&reply[0]));
    let got = floats(&reply[0]);
    let want = floats(&std::fs::read(data().join("expected.bin")).unwrap());
    let detections = want.chunks(6).filter(|r| r[1] > 0.0).count();
    assert!(detections >= 5, "the case has {detections} detections");
    for (i, (g, w)) in got.chunks(6).zip(want.chunks(6)).enumerate() {
        // Class and score exactly; the box corners within float32 rounding of numpy's sums.
        assert_eq!(g[..2], w[..2], "row {i}: {g:?} vs {w:?}");
        for k in 2..6 {
            assert!((g[k] - w[k]).abs() <= 1e-5 * w[k].abs().max(1.0), "row {i} value {k}: {g:?} vs {w:?}");
        }
    }
}

#[test]
fn yologeneric_on_an_ssd_layout_and_unknown_types_are_errors() {
    let mut s = session();
    s.handle(&[json!({"model_request": true, "model_name": "model.tflite"}).to_string().into()]);
    let frame = std::fs::read(data().join("frame.bin")).unwrap();
    // The synthetic model has no TFLite_Detection_PostProcess.
    let r = json_reply(&s.handle(&[
        json!({"shape": [1, 32, 32, 3], "dtype": "uint8", "model_type": "ssd"}).to_string().into(),
        frame.clone(),
    ]));
    assert!(r["error"].as_str().unwrap().contains("no SSD post-processing"), "{r}");
    let r = json_reply(&s.handle(&[
        json!({"shape": [1, 32, 32, 3], "dtype": "uint8", "model_type": "yolonas"}).to_string().into(),
        frame,
    ]));
    assert!(r["error"].as_str().unwrap().contains("yolonas"), "{r}");
}
