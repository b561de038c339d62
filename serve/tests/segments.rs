//! A model the Edge TPU compiler split into segments (`NAME_segment_K_of_N_edgetpu.tflite`) is
//! served under `NAME_edgetpu.tflite` on every endpoint: Frigate's protocol gets the detections of
//! the segments run in turn, and the tensor protocol the last segment's outputs, both equal to
//! running the segments by hand in process. Segments that do not fit together are refused with the
//! tensor that no earlier segment gives.
//!
//! The three segments of SSD MobileNet v2 in the test data have no CPU twins, so the simulated
//! devices give seeded bytes (the same on both sides) as the Edge TPU's outputs: the detections are
//! not meaningful, but every byte of them goes through both paths.

use edgetpu::sched::Simulated;
use edgetpu::sim::{OracleChoice, TimeModel};
use edgetpu::{Interpreter, Model, RuntimeOptions};
use edgetpu_client::Client;
use edgetpu_serve::frigate::{Session, Shared};
use edgetpu_serve::models::ModelStore;
use edgetpu_serve::{ServeOptions, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

const NAME: &str = "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite";

fn pipeline_dir() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir.join("pipeline")
}

fn segment(k: usize) -> PathBuf {
    pipeline_dir().join(format!("ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_3_edgetpu.tflite"))
}

fn sim() -> Simulated {
    Simulated::usb(3, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap()
}

/// The last segment's outputs for `frame`, running the three segments by hand: each input of a
/// segment is taken from the earlier segment's output of the same name.
fn by_hand(frame: &[u8]) -> Vec<Vec<u8>> {
    let s = sim();
    let mut its: Vec<Interpreter> = (0..3)
        .map(|k| Interpreter::builder(Arc::new(Model::open(segment(k)).unwrap())).runtime(&s.runtime).build().unwrap())
        .collect();
    its[0].set_input(0, frame).unwrap();
    its[0].invoke().unwrap();
    for k in 1..3 {
        let names: Vec<String> = its[k].inputs().iter().map(|t| t.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            let bytes = (0..k)
                .rev()
                .find_map(|s| {
                    let j = its[s].outputs().iter().position(|o| &o.name == name)?;
                    Some(its[s].output(j).unwrap().to_vec())
                })
                .unwrap();
            its[k].set_input(i, &bytes).unwrap();
        }
        its[k].invoke().unwrap();
    }
    (0..4).map(|j| its[2].output(j).unwrap().to_vec()).collect()
}

/// A fresh scratch directory named by `tag`.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-serve-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server of the test data's segments over `runtime`, with the tensor protocol on a socket in
/// `dir`; and a client connected to it.
fn tensor_server(runtime: edgetpu::Runtime, dir: &std::path::Path) -> (Server, Client) {
    let sock = dir.join("t.sock");
    let server = Server::start_with(
        ServeOptions::default().catalog_cache(false).models_dir(pipeline_dir()).socket(&sock),
        Some(runtime),
    )
    .unwrap();
    (server, Client::connect(&sock).unwrap())
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn frame() -> Vec<u8> {
    (0..300 * 300 * 3).map(|i| (i * 7 % 253) as u8).collect()
}

#[test]
fn segments_are_served_as_one_model_to_frigate() {
    let frame = frame();
    let want = by_hand(&frame);
    let shared = Shared {
        runtime: Some(sim().runtime),
        store: ModelStore { dir: Some(pipeline_dir()), cache: None, max_upload: 1 << 20 },
        threshold: 0.4,
    };
    let mut session = Session::new(Arc::new(shared));
    let hello = json!({"model_request": true, "model_name": NAME}).to_string().into_bytes();
    let reply: Value = serde_json::from_slice(&session.handle(&[hello])[0]).unwrap();
    assert_eq!(reply, json!({"model_available": true, "model_loaded": true}));
    let header = json!({"shape": [1, 300, 300, 3], "dtype": "uint8", "model_type": "ssd"}).to_string().into_bytes();
    let reply = session.handle(&[header, frame]);
    assert_eq!(reply.len(), 1);
    let rows = floats(&reply[0]);
    assert_eq!(rows.len(), 20 * 6, "{}", String::from_utf8_lossy(&reply[0]));

    // Frigate's rows from the by-hand outputs: detections in order until one scores under 0.4.
    let (boxes, classes, scores, count) = (floats(&want[0]), floats(&want[1]), floats(&want[2]), floats(&want[3]));
    let mut expect = vec![0f32; 20 * 6];
    for i in 0..(count[0] as usize).min(20) {
        if scores[i] < 0.4 {
            break;
        }
        expect[i * 6..i * 6 + 6].copy_from_slice(&[
            classes[i],
            scores[i],
            boxes[i * 4],
            boxes[i * 4 + 1],
            boxes[i * 4 + 2],
            boxes[i * 4 + 3],
        ]);
    }
    assert_eq!(rows, expect);
    assert!(scores.iter().any(|&s| s > 0.0), "the post-processing gave no scores at all: a weak comparison");
}

#[test]
fn segments_are_served_as_one_model_to_tensor_clients() {
    let frame = frame();
    let want = by_hand(&frame);
    let dir = scratch("segments");
    let (server, mut client) = tensor_server(sim().runtime, &dir);
    let mut m = client.open(NAME).unwrap();
    assert_eq!(m.inputs().len(), 1);
    assert_eq!(m.inputs()[0].shape, [1, 300, 300, 3]);
    assert_eq!(m.outputs().len(), 4);
    m.set_input(0, &frame).unwrap();
    m.invoke().unwrap();
    for (j, w) in want.iter().enumerate() {
        assert_eq!(m.output(j).unwrap(), &w[..], "output {j}");
    }
    drop(m);
    server.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segments_are_served_as_one_model_to_deepstack_clients() {
    // The image, prepared as the server prepares it, through the segments by hand: the
    // detections' confidences and pixel boxes.
    let bmp = std::fs::read(pipeline_dir().join("../grace_hopper.bmp")).unwrap();
    let image = edgetpu::vision::open_image_bytes(&bmp).unwrap();
    let info = Interpreter::builder(Arc::new(Model::open(segment(0)).unwrap()))
        .runtime(&sim().runtime)
        .build()
        .unwrap()
        .inputs()[0]
        .clone();
    let (input, transform) = edgetpu::vision::prepare(&image, &info, &edgetpu::vision::Preprocess::default()).unwrap();
    let want = by_hand(&input);
    let (count, scores, boxes) = (floats(&want[3])[0] as usize, floats(&want[2]), floats(&want[0]));
    // (confidence, x_min, y_min, x_max, y_max) in pixels, as DeepStack answers.
    let expect: Vec<(f32, i64, i64, i64, i64)> = (0..count.min(20))
        .take_while(|&i| scores[i] >= 0.3)
        .map(|i| {
            let b = &boxes[i * 4..i * 4 + 4];
            let (x0, y0) = transform.normalized_to_image(f64::from(b[1]), f64::from(b[0]));
            let (x1, y1) = transform.normalized_to_image(f64::from(b[3]), f64::from(b[2]));
            (scores[i], x0.round() as i64, y0.round() as i64, x1.round() as i64, y1.round() as i64)
        })
        .collect();
    assert!(!expect.is_empty(), "no detection to compare");

    let server = Server::start_with(
        ServeOptions::default().catalog_cache(false).models_dir(pipeline_dir()).http("127.0.0.1:0"),
        Some(sim().runtime),
    )
    .unwrap();
    let addr = server.endpoints().iter().find_map(|e| e.strip_prefix("http://")).unwrap().to_string();
    let b = "segmentsboundary";
    let mut body =
        format!("--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.bmp\"\r\n\r\n").into_bytes();
    body.extend_from_slice(&bmp);
    body.extend_from_slice(
        format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"min_confidence\"\r\n\r\n0.3\r\n--{b}--\r\n")
            .as_bytes(),
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let path = format!("/v1/vision/custom/{}", NAME.trim_end_matches(".tflite"));
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    s.write_all(&body).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let v: Value = serde_json::from_slice(&out[split + 4..]).unwrap();
    assert_eq!(v["success"], true, "{v}");
    let px = |p: &Value, k: &str| p[k].as_i64().unwrap();
    let got: Vec<(f32, i64, i64, i64, i64)> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["confidence"].as_f64().unwrap() as f32, px(p, "x_min"), px(p, "y_min"), px(p, "x_max"), px(p, "y_max"))
        })
        .collect();
    assert_eq!(got, expect, "{v}");
    server.shutdown();
}

#[test]
fn segments_that_do_not_fit_together_are_refused_by_name() {
    // Segment 2 takes tensors from segments 0 and 1: with segment 1 left out of a two-segment set,
    // one of its inputs comes from nowhere.
    let dir = scratch("misfit");
    std::os::unix::fs::symlink(segment(0), dir.join("x_segment_0_of_2_edgetpu.tflite")).unwrap();
    std::os::unix::fs::symlink(segment(2), dir.join("x_segment_1_of_2_edgetpu.tflite")).unwrap();
    let shared = Shared {
        runtime: Some(sim().runtime),
        store: ModelStore { dir: Some(dir.clone()), cache: None, max_upload: 1 << 20 },
        threshold: 0.4,
    };
    let err = shared.open("x_edgetpu.tflite").unwrap_err();
    assert!(err.contains("segment 1 takes input") && err.contains("layer_19_1_Conv2d_3_1x1_128"), "{err}");
    // Frigate's handshake says the model is there but did not load.
    let mut session = Session::new(Arc::new(shared));
    let hello = json!({"model_request": true, "model_name": "x_edgetpu.tflite"}).to_string().into_bytes();
    let reply: Value = serde_json::from_slice(&session.handle(&[hello])[0]).unwrap();
    assert_eq!(reply, json!({"model_available": true, "model_loaded": false}));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_device_fault_fails_only_the_requests_it_hits_and_the_segments_go_on() {
    use edgetpu::sim::usb::{Fault, FaultKind};
    let frame = frame();
    let want = by_hand(&frame);
    let dir = scratch("segfault");
    let s = sim();
    let buses = s.usb.clone();
    let (server, mut client) = tensor_server(s.runtime, &dir);
    let mut m = client.open(NAME).unwrap();
    m.set_input(0, &frame).unwrap();
    m.invoke().unwrap();
    // A fatal-error interrupt armed on every device; the request that meets one fails with an
    // error naming the device and the segment, the device is reset and reopened, and the requests
    // after it get the right outputs. (One client's segments may all run on one device: the faults
    // on the others then stay armed.)
    for bus in &buses {
        bus.inject(Fault { kind: FaultKind::FatalError, endpoint: 0, after: 0 });
    }
    let mut outcomes = Vec::new();
    for _ in 0..12 {
        m.set_input(0, &frame).unwrap();
        outcomes.push(match m.invoke() {
            Ok(()) => {
                for (j, w) in want.iter().enumerate() {
                    assert_eq!(m.output(j).unwrap(), &w[..], "output {j} after {outcomes:?}");
                }
                "ok".to_string()
            }
            Err(edgetpu_client::ClientError::Server(e)) => e,
            Err(e) => panic!("the connection broke: {e}"),
        });
    }
    let failed = outcomes.iter().filter(|o| *o != "ok").count();
    assert!(failed >= 1, "no request failed: {outcomes:?}");
    assert!(outcomes[outcomes.len() - 4..].iter().all(|o| o == "ok"), "{outcomes:?}");
    drop(m);
    server.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}
