//! `edgetpu selftest` on simulated devices: every compiled model of the test data against its CPU
//! twin, three inferences in a row, and the report bundle.

mod common;

use common::{edgetpu, scratch, testdata};
use serde_json::Value;

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn selftest(device: &str) -> (Value, std::path::PathBuf) {
    let dir = scratch("selftest", &device.replace(':', "-"));
    let report = dir.join("report");
    let data = testdata();
    let args =
        ["selftest", "--device", device, "--models", data.to_str().unwrap(), "--report", report.to_str().unwrap()];
    let (ok, stdout, stderr) = edgetpu(&args);
    assert!(ok, "{device}: {stdout}\n{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains("attach these files"), "{stdout}");
    (read_json(&report.join("results.json")), report)
}

fn check_results(results: &Value, device: &str) {
    let s = &results["summary"];
    assert_eq!(s["failed"], 0, "{device}: {results:#}");
    assert_eq!(s["failed_checks"], 0, "{device}: {results:#}");
    // The classifiers, DeepLab, MoveNet, PoseNet, the LSTM (stateful) and split_concat have twins.
    assert!(s["passed"].as_u64().unwrap() >= 8, "{device}: {s}");
    let d = &results["devices"][0];
    assert_eq!(d["simulated"], true);
    let models = d["models"].as_array().unwrap();
    let lstm = models.iter().find(|m| m["model"] == "keras_lstm_mnist_ptq_edgetpu.tflite").unwrap();
    assert_eq!(lstm["status"], "pass", "the stateful model equals its twin over three runs: {lstm}");
    assert_eq!(lstm["runs"], 3);
    let segment = models.iter().find(|m| m["model"].as_str().unwrap().contains("segment_0_of_3")).unwrap();
    assert_eq!(segment["status"], "not compared", "a segment has no twin: {segment}");
    assert!(segment["median_ms"].as_f64().is_some(), "it is timed: {segment}");
    for c in d["checks"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "{c}");
    }
    // No paths in the results: models by file name only.
    assert!(!results.to_string().contains(testdata().to_str().unwrap()), "{results}");
}

#[test]
fn selftest_on_a_simulated_usb_accelerator_passes_and_writes_a_report() {
    let (results, report) = selftest("sim");
    check_results(&results, "sim");
    assert_eq!(results["devices"][0]["kind"], "usb");
    let system = read_json(&report.join("system.json"));
    for key in ["runtime_version", "arch", "kernel", "os"] {
        assert!(system.get(key).is_some(), "{key}: {system:#}");
    }
    // A recorded session of one small model, in the doctor --record format.
    let session = std::fs::read_to_string(report.join("session.jsonl")).unwrap();
    assert!(session.lines().count() > 10 && session.contains("bulk_out"), "{}", &session[..session.len().min(400)]);
}

#[test]
fn selftest_on_a_simulated_pcie_edge_tpu_passes() {
    let (results, report) = selftest("sim:pci");
    check_results(&results, "sim:pci");
    assert_eq!(results["devices"][0]["kind"], "pci");
    assert!(report.join("system.json").is_file());
    assert!(!report.join("session.jsonl").exists(), "sessions are recorded for USB devices only");
}

#[test]
fn selftest_needs_an_edge_tpu_device_and_models() {
    let (ok, _, stderr) = edgetpu(&["selftest", "--device", "cpu"]);
    assert!(!ok && stderr.contains("selftest tests Edge TPU devices"), "{stderr}");
    let empty = scratch("selftest", "empty");
    let (ok, _, stderr) = edgetpu(&["selftest", "--device", "sim", "--models", empty.to_str().unwrap()]);
    assert!(!ok && stderr.contains("no compiled model"), "{stderr}");
}
