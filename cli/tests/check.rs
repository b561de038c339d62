//! `edgetpu check` on the shared test data: text and JSON output of a CPU model, a compiled
//! model, and a file that is not a model.

mod common;

use common::{edgetpu, scratch, testdata};
use serde_json::Value;

fn json(model: &str, extra: &[&str]) -> Value {
    let path = testdata().join(model);
    let mut args = vec!["check", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (ok, out, err) = edgetpu(&args);
    assert!(ok, "edgetpu check {model} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn json_of_a_partly_mapped_model() {
    let doc = json("deeplabv3_mnv2_dm05_pascal_quant.tflite", &[]);
    let ops = doc["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 72);
    assert_eq!((doc["tpu_ops"].as_u64(), doc["cpu_ops"].as_u64()), (Some(64), Some(8)));
    assert_eq!(doc["tpu_subgraphs"], 1);
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["index"], i);
        assert!(op["op"].is_string() && op["reason"].is_string(), "{op}");
        assert_eq!(op["on_tpu"].as_bool(), Some(i < 64), "{op}");
    }
    assert_eq!(ops[64]["op"], "RESIZE_BILINEAR");
    assert_eq!(ops[64]["category"], "limitation");
    assert!(ops[64]["reason"].as_str().unwrap().contains("align_corners"), "{}", ops[64]);
    assert_eq!(ops[65]["category"], "more_than_one_subgraph");
    assert_eq!(ops[65]["status"], "More than one subgraph is not supported");
    assert_eq!(ops[71]["op"], "ARG_MAX");
    assert_eq!(ops[71]["category"], "unsupported_data_type");
    let bytes = doc["estimated_parameter_bytes"].as_u64().unwrap();
    assert!((500_000..700_000).contains(&bytes), "{bytes}");
    assert_eq!(doc["fits_on_chip"], true);
    assert!(doc["compiled"].is_null());
    assert!(doc["path"].as_str().unwrap().ends_with("deeplabv3_mnv2_dm05_pascal_quant.tflite"));
    // Operator versions are said to be unchecked, and no operator is predicted to fail on one.
    let not_checked: Vec<&str> = doc["not_checked"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(not_checked.iter().any(|s| s.starts_with("operator versions") && s.contains("never predicted")), "{doc}");
    assert!(ops.iter().all(|op| op["category"] != "version_not_supported"));
    // So are operators beyond Coral's table and the target runtime version.
    assert!(
        not_checked.iter().any(|s| s.starts_with("support beyond Coral's table") && s.contains("docs/edgetpu-ops.md")),
        "{doc}"
    );
    assert!(not_checked.iter().any(|s| s.starts_with("the runtime version") && s.contains("(-m)")), "{doc}");
}

#[test]
fn text_of_a_partly_mapped_model() {
    let path = testdata().join("movenet_single_pose_lightning_ptq.tflite");
    let (ok, out, err) = edgetpu(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("98 of 157 operations would run on the Edge TPU, 59 on the CPU (1 Edge TPU subgraph)"),
        "{out}"
    );
    assert!(
        out.contains("Estimated parameters: 2.26MiB of 8.00MiB on-chip memory, cached in on-chip memory."),
        "{out}"
    );
    // Per-operator lines and the compiler-style table.
    assert!(
        out.lines().any(|l| l.contains(" CAST ") && l.contains("CPU") && l.contains("unsupported data type")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("CONV_2D") && l.contains("Mapped to Edge TPU")), "{out}");
    // What the prediction leaves out is said, operator versions first.
    let tail: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("Not checked")).collect();
    assert!(tail.len() >= 3, "{out}");
    assert!(tail[1].starts_with("  - operator versions: Coral documents no highest version"), "{out}");
}

#[test]
fn multiple_subgraphs_flag() {
    let one = json("deeplabv3_mnv2_dm05_pascal_quant.tflite", &[]);
    let many = json("deeplabv3_mnv2_dm05_pascal_quant.tflite", &["--multiple-subgraphs"]);
    assert_eq!(many["options"]["multiple_subgraphs"], true);
    // With -a the QUANTIZE, CONCATENATION and CONV_2D after the CPU resize map as well.
    assert_eq!(many["tpu_ops"].as_u64().unwrap(), one["tpu_ops"].as_u64().unwrap() + 4);
    assert_eq!(many["tpu_subgraphs"], 2);
}

#[test]
fn a_compiled_model_is_reported_as_compiled() {
    let path = testdata().join("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite");
    let (ok, out, err) = edgetpu(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("already compiled for the Edge TPU"), "{out}");
    assert!(out.contains("edgetpu-custom-op (operator 0)"), "{out}");
    assert!(out.contains("1 operator stays on the CPU: #1 PosenetDecoderOp"), "{out}");
    let doc = json("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite", &[]);
    let compiled = doc["compiled"].as_array().unwrap();
    assert_eq!(compiled.len(), 1);
    assert_eq!(compiled[0]["cached_parameter_bytes"], 1_444_608);
    assert_eq!(compiled[0]["inputs"], serde_json::json!(["sub_2"]));
    assert_eq!(doc["estimated_parameter_bytes"], 1_444_608);
}

#[test]
fn a_file_that_is_not_a_model_fails_with_its_path() {
    let dir = scratch("check", "not-a-model");
    let path = dir.join("notes.tflite");
    std::fs::write(&path, b"these are not the bytes of a model").unwrap();
    let (ok, out, err) = edgetpu(&["check", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(err.contains("notes.tflite"), "{err}");
    let (ok, _, err) = edgetpu(&["check", dir.join("missing.tflite").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing.tflite"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
