//! `edgetpu serve` against pyzmq, the ZeroMQ binding Frigate uses, speaking Frigate's `zmq`
//! detector protocol: the exact handshake replies, a detection equal to the in-process result,
//! several clients at once, a client that times out and comes back on a new socket, a model
//! upload, and bad requests that get error replies while the server goes on.
//!
//! The test needs Python 3 with pyzmq: `EDGETPU_TEST_PYTHON` names an interpreter that has it,
//! else the test makes a virtual environment in the target directory and installs pyzmq from
//! PyPI. It fails (never skips) when neither works.

use edgetpu::vision::{open_image, Preprocess};
use edgetpu::{DeviceSpec, Interpreter, Model};
use edgetpu_serve::{ServeOptions, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

/// A Python interpreter with pyzmq.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGETPU_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyzmq-venv");
    let py = venv.join("bin/python");
    let has_zmq = |py: &Path| Command::new(py).args(["-c", "import zmq"]).status().is_ok_and(|s| s.success());
    if !has_zmq(&py) {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(&py).args(["-m", "pip", "install", "--quiet", "pyzmq"]).status().is_ok_and(|s| s.success());
        assert!(
            ok && has_zmq(&py),
            "this test needs Python 3 with pyzmq: set EDGETPU_TEST_PYTHON to one, or let it install pyzmq into {}",
            venv.display()
        );
    }
    py
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn frigate_clients_on_pyzmq() {
    let data = testdata();
    let dir = scratch("frigate");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let traffic = data.join("automl_video_ondevice/traffic_model.tflite");
    std::fs::copy(&traffic, models.join("traffic_model.tflite")).unwrap();

    // The frame, as Frigate would send it: 256×256 RGB, uint8.
    let model = Model::open(&traffic).unwrap();
    let mut it = Interpreter::builder(model).device(DeviceSpec::cpu()).threads(1).build().unwrap();
    let image = open_image(data.join("automl_video_ondevice/traffic_frames/0001.bmp")).unwrap();
    let info = it.inputs()[0].clone();
    let (frame, _) = edgetpu::vision::prepare(&image, &info, &Preprocess::default()).unwrap();
    let frame_file = dir.join("frame.bin");
    std::fs::write(&frame_file, &frame).unwrap();
    // The reply the server must give: the in-process result, decoded as Frigate does.
    it.set_input(0, &frame).unwrap();
    it.invoke().unwrap();
    let want: Vec<f32> = edgetpu_serve::frigate::decode_ssd(&it, 0.4).unwrap();
    assert!(want[1] >= 0.4, "the frame has a detection above 0.4: {:?}", &want[..6]);

    let endpoint = format!("ipc://{}", dir.join("zmq_detector").display());
    let server = Server::start(
        ServeOptions::default()
            .devices(DeviceSpec::cpu())
            .models_dir(&models)
            .catalog_cache(false)
            .zmq(&endpoint)
            .max_upload(8 << 20),
    )
    .unwrap();
    // The socket is not open to everyone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("zmq_detector")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let out = dir.join("results.json");
    let upload = data.join("mobilenet_v1_0.25_128_quant.tflite");
    let status = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frigate_client.py"))
        .args([&endpoint, frame_file.to_str().unwrap(), upload.to_str().unwrap(), out.to_str().unwrap()])
        .status()
        .unwrap();
    server.shutdown();
    assert!(status.success(), "the pyzmq client failed");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    // The exact handshake reply bytes.
    assert_eq!(r["handshake"], r#"{"model_available":true,"model_loaded":true}"#);
    assert_eq!(r["missing"], r#"{"model_available":false,"model_loaded":false}"#);
    // One frame of 20×6 float32, equal to the in-process result.
    assert_eq!(r["detection_frames"], 1);
    let got: Vec<f32> = r["detection"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got, want);
    // Several clients at once, and a client that timed out and came back on a new socket.
    assert_eq!(r["clients_agree"], serde_json::json!([true, true, true, true]));
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["after_timeout_same"], true);
    // An upload lands in the models directory and loads; a name that would leave it is refused.
    assert_eq!(r["upload"], r#"{"model_loaded":true,"model_saved":true}"#);
    assert!(models.join("uploaded.tflite").is_file());
    let escape: Value = serde_json::from_str(r["escape"].as_str().unwrap()).unwrap();
    assert_eq!(escape["model_saved"], false, "{escape}");
    assert!(!dir.join("escaped.tflite").exists() && !models.parent().unwrap().join("escaped.tflite").exists());
    // Bad requests get error replies, and the connection goes on.
    for key in ["malformed", "no_model_inference", "not_ssd", "wrong_shape", "wrong_dtype"] {
        let v: Value = serde_json::from_str(r[key].as_str().unwrap()).unwrap();
        assert!(v["error"].is_string(), "{key}: {v}");
    }
    assert!(r["no_model_inference"].as_str().unwrap().contains("model_request first"), "{}", r["no_model_inference"]);
    assert!(r["not_ssd"].as_str().unwrap().contains("no SSD post-processing"), "{}", r["not_ssd"]);
    // Shut down: the socket file is gone.
    assert!(!dir.join("zmq_detector").exists());
}
