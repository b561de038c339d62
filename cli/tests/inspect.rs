//! `edgetpu inspect` end to end over the shared test data.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

mod common;

use common::testdata;

fn inspect(path: &std::path::Path, json: bool) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgetpu"));
    cmd.arg("inspect").arg(path);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn models(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            models(&p, out);
        } else if p.extension().is_some_and(|x| x == "tflite") {
            out.push(p);
        }
    }
}

#[test]
fn json_has_the_documented_fields_for_every_model() {
    let mut all = Vec::new();
    models(&testdata(), &mut all);
    assert!(all.len() >= 30);
    let mut compiled = 0;
    for path in &all {
        let (ok, stdout, stderr) = inspect(path, true);
        assert!(ok, "{}: {stderr}", path.display());
        let doc: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["path"], path.display().to_string());
        assert_eq!(doc["size_bytes"], std::fs::metadata(path).unwrap().len());
        assert_eq!(doc["sha256"].as_str().unwrap().len(), 64);
        for sg in doc["subgraphs"].as_array().unwrap() {
            for t in sg["tensors"].as_array().unwrap() {
                for k in ["index", "name", "shape", "type"] {
                    assert!(!t[k].is_null(), "{}: tensor lacks {k}", path.display());
                }
                if !t["quantization"].is_null() {
                    assert!(t["quantization"]["scale"].is_array() && t["quantization"]["zero_point"].is_array());
                }
            }
            for op in sg["operators"].as_array().unwrap() {
                for k in ["index", "op", "version", "inputs", "outputs", "runs_on"] {
                    assert!(!op[k].is_null(), "{}: operator lacks {k}", path.display());
                }
                let tpu = op["op"] == "edgetpu-custom-op";
                assert_eq!(op["runs_on"], if tpu { "tpu" } else { "cpu" });
            }
        }
        let name = path.file_name().unwrap().to_string_lossy();
        let tpu = doc["edgetpu"].as_array().unwrap();
        assert_eq!(tpu.len(), usize::from(name.ends_with("_edgetpu.tflite")), "{name}");
        for e in tpu {
            compiled += 1;
            for k in [
                "operator_index",
                "compiler_version",
                "min_runtime_version",
                "cached_parameter_bytes",
                "streamed_parameter_bytes",
                "fits_on_chip",
            ] {
                assert!(!e[k].is_null(), "{name}: edgetpu lacks {k}");
            }
            let token = e["parameter_caching_token"].as_str().unwrap();
            assert!(token.starts_with("0x") && token.len() == 18 && token == token.to_lowercase(), "{token}");
            for x in e["executables"].as_array().unwrap() {
                assert!(["STAND_ALONE", "PARAMETER_CACHING", "EXECUTION_ONLY"].contains(&x["type"].as_str().unwrap()));
                for k in [
                    "instruction_bytes",
                    "parameter_bytes",
                    "field_offsets",
                    "batch_size",
                    "dma_hints",
                    "fully_deterministic",
                ] {
                    assert!(!x[k].is_null(), "{name}: executable lacks {k}");
                }
            }
            for l in e["input_layers"].as_array().unwrap().iter().chain(e["output_layers"].as_array().unwrap()) {
                for k in ["name", "y", "x", "z", "type", "zero_point", "scale", "size_bytes"] {
                    assert!(!l[k].is_null(), "{name}: layer lacks {k}");
                }
            }
            assert!(e["output_layers"].as_array().unwrap().iter().all(|l| l["tiled"].is_boolean()));
        }
    }
    assert_eq!(compiled, 13);
}

#[test]
fn values_of_the_reference_model() {
    let (ok, stdout, _) = inspect(&testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite"), true);
    assert!(ok);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let e = &doc["edgetpu"][0];
    assert_eq!(e["parameter_caching_token"], "0x6d146c3f97d6648c");
    assert_eq!(e["cached_parameter_bytes"], 566_912);
    assert_eq!(e["streamed_parameter_bytes"], 0);
    assert_eq!(e["fits_on_chip"], true);
    assert_eq!(e["executables"][0]["type"], "EXECUTION_ONLY");
    assert_eq!(e["executables"][0]["instruction_bytes"], serde_json::json!([170_032]));
    assert_eq!(e["executables"][1]["parameter_bytes"], 566_912);
    assert_eq!(e["output_layers"][0]["size_bytes"], 1008);
    assert_eq!(e["output_layers"][0]["tiled"], false);
    assert_eq!(doc["subgraphs"][0]["tensors"][0]["type"], "uint8");
    assert_eq!(doc["subgraphs"][0]["tensors"][0]["quantization"]["zero_point"], serde_json::json!([128]));
    assert_eq!(doc["labels"]["count"], 1001);

    let (ok, stdout, _) = inspect(&testdata().join("keras_lstm_mnist_ptq_edgetpu.tflite"), true);
    assert!(ok);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["edgetpu"][0]["executables"][0]["fully_deterministic"], false);

    let (ok, stdout, _) = inspect(&testdata().join("deeplabv3_mnv2_dm05_pascal_quant_edgetpu.tflite"), false);
    assert!(ok);
    assert!(stdout.contains("on the Edge TPU") && stdout.contains("tiled"), "{stdout}");
}

#[test]
fn malformed_files_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("edgetpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read(testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap();
    for (i, cut) in [0usize, 7, 100, 1000, 50_000, 400_000].into_iter().enumerate() {
        let p = dir.join(format!("cut{i}.tflite"));
        std::fs::write(&p, &original[..cut]).unwrap();
        let (ok, _, stderr) = inspect(&p, true);
        assert!(!ok, "cut at {cut} was accepted");
        assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("byte ") || stderr.contains("empty"), "{stderr}");
    }
    let (ok, _, stderr) = inspect(&dir.join("missing.tflite"), false);
    assert!(!ok && stderr.contains("missing.tflite"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
