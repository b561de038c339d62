//! `edgetpu compile` end to end against the stand-in compiler of the compiler-bridge crate
//! (`edgetpu-compiler-standin`: the real compiler's options and output format, no compilation;
//! its "compiled" model is a copy of a real `*_edgetpu.tflite` from the test data).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;

use common::{scratch, testdata};

/// The stand-in's path: `EDGETPU_COMPILER_STANDIN`, else built (or found up to date) by cargo
/// with the profile of these tests and the `standin` feature it needs. A binary of another
/// package gets no `CARGO_BIN_EXE_*`, so cargo is asked where it is.
fn standin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("EDGETPU_COMPILER_STANDIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let profile = if cfg!(debug_assertions) { "test" } else { "release" };
        let out = Command::new(cargo)
            .args(["build", "--profile", profile, "-p", "edgetpu-compiler", "--features", "standin"])
            .args(["--bin", "edgetpu-compiler-standin"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("running cargo to build the stand-in compiler");
        assert!(
            out.status.success(),
            "building edgetpu-compiler-standin failed (or set EDGETPU_COMPILER_STANDIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "edgetpu-compiler-standin")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo named no edgetpu-compiler-standin executable")
    })
    .clone()
}

/// Runs `edgetpu compile ARGS --compiler STANDIN` with the stand-in's settings in `env`:
/// (success, stdout, stderr).
fn compile(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgetpu"));
    cmd.arg("compile").args(args).arg("--compiler").arg(standin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// A copy of the CPU model in a scratch directory (the compiler's input).
fn input(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(testdata().join("mobilenet_v1_0.25_128_quant.tflite"), &p).unwrap();
    p
}

#[test]
fn compile_prints_the_compiler_summary_and_the_compiled_model() {
    let dir = scratch("compile", "text");
    let model = input(&dir, "net.tflite");
    let out = dir.join("out");
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let (ok, stdout, stderr) = compile(
        &[model.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "-m", "13"],
        &[("EDGETPU_STANDIN_MODEL", &compiled)],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("edgetpu_compiler 16.0.384591198: compiled in 42 ms"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} -> {}", model.display(), out.join("net_edgetpu.tflite").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("operations: 6 total, 6 on the Edge TPU, 0 on the CPU; 1 Edge TPU subgraph(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("off-chip: 0.00B streamed per inference"), "{stdout}");
    // The inspect figures of the compiled model (the copied test model: one custom op, runtime 12).
    assert!(stdout.contains("operators: 1 (1 edgetpu-custom-op, 0 on the CPU)"), "{stdout}");
    assert!(stdout.contains("streamed per inference; min runtime version 12"), "{stdout}");
    assert!(stdout.contains("cached on chip, 0.00B streamed"), "{stdout}");
    assert_eq!(std::fs::read(out.join("net_edgetpu.tflite")).unwrap(), std::fs::read(&compiled).unwrap());
    assert!(out.join("net_edgetpu.log").is_file());
    // Progress on stderr (not a terminal here: plain lines), and no warnings.
    assert!(stderr.contains("compiling ") && stderr.contains("with edgetpu_compiler 16.0.384591198 ("), "{stderr}");
    assert!(stderr.contains("compiler finished in "), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn json_has_the_report_and_the_compiled_models() {
    let dir = scratch("compile", "json");
    let a = input(&dir, "a.tflite");
    let b = input(&dir, "b.tflite");
    let out = dir.join("out");
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let (ok, stdout, stderr) = compile(
        &[a.to_str().unwrap(), b.to_str().unwrap(), "-o", out.to_str().unwrap(), "-a", "-i", "x,y", "--json"],
        &[("EDGETPU_STANDIN_MODEL", &compiled)],
    );
    assert!(ok, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let run = &doc["run"];
    assert_eq!(run["report"]["version"], "16.0.384591198");
    assert_eq!(run["report"]["cocompiled"], true);
    assert_eq!(run["report"]["models"].as_array().unwrap().len(), 2);
    let args: Vec<&str> = run["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["-i", "x,y"]) && args.contains(&"-a") && args.contains(&"-s"), "{args:?}");
    // With -s the table follows the last model block.
    let row = &run["report"]["models"][1]["operations"][0];
    assert_eq!(
        (row["operator"].as_str(), row["count"].as_u64(), row["reason"].as_str()),
        (Some("CONV_2D"), Some(3), Some("mapped"))
    );
    let models = doc["compiled_models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(
            (m["operators"].as_u64(), m["tpu_ops"].as_u64(), m["cpu_ops"].as_u64()),
            (Some(1), Some(1), Some(0))
        );
        assert_eq!(m["edgetpu"][0]["min_runtime_version"], 12);
        assert_eq!(m["edgetpu"][0]["streamed_parameter_bytes"], 0);
    }
    let file = &run["models"][1]["outputs"][0];
    assert_eq!(file["model"], out.join("b_edgetpu.tflite").display().to_string());
    assert_eq!(file["log"], out.join("b_edgetpu.log").display().to_string());
    assert!(file["log_text"].as_str().unwrap().starts_with("Edge TPU Compiler version 16.0.384591198\n"));
    assert_eq!(file["log_report"]["models"][0]["operations"].as_array().unwrap().len(), 3);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 0);
}

#[test]
fn warns_about_streamed_parameters_and_a_new_runtime_version() {
    let dir = scratch("compile", "warn");
    let model = input(&dir, "big.tflite");
    let out = dir.join("out");
    // A compiled model whose package asks for runtime version 14.
    let compiled = dir.join("runtime14_edgetpu.tflite");
    let mut bytes = std::fs::read(testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap();
    set_min_runtime_version(&mut bytes, &compiled, 14);
    std::fs::write(&compiled, &bytes).unwrap();
    let (ok, stdout, stderr) = compile(
        &[model.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &[("EDGETPU_STANDIN_MODEL", &compiled), ("EDGETPU_STANDIN_OFF_CHIP", Path::new("1.70MiB"))],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("off-chip: 1.70MiB streamed per inference"), "{stdout}");
    assert!(stdout.contains("min runtime version 14"), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings[0].contains("1.70MiB of parameters do not fit in the on-chip memory"), "{stderr}");
    assert!(warnings[1].contains("needs Edge TPU runtime version 14") && warnings[1].contains("-m 13"), "{stderr}");
}

/// Rewrites the `min_runtime_version` field of the model's Edge TPU package (found through
/// `edgetpu inspect --json`, which gives the package's file offset).
fn set_min_runtime_version(bytes: &mut [u8], scratch_copy: &Path, version: i32) {
    std::fs::write(scratch_copy, &*bytes).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_edgetpu")).arg("inspect").arg(scratch_copy).arg("--json").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["edgetpu"][0]["min_runtime_version"], 12);
    let pkg = doc["edgetpu"][0]["package_offset"].as_u64().unwrap() as usize;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let table = pkg + u32_at(bytes, pkg) as usize;
    let vtable = (table as i64 - i64::from(u32_at(bytes, table) as i32)) as usize;
    // Field 0 of the Package table (vtable slot at byte 4) is min_runtime_version.
    let field = u16::from_le_bytes(bytes[vtable + 4..vtable + 6].try_into().unwrap()) as usize;
    assert_ne!(field, 0, "the package stores no min_runtime_version");
    assert_eq!(u32_at(bytes, table + field), 12);
    bytes[table + field..table + field + 4].copy_from_slice(&version.to_le_bytes());
}

#[test]
fn segments_are_each_summarised() {
    let dir = scratch("compile", "segments");
    let model = input(&dir, "kp.tflite");
    let out = dir.join("out");
    let compiled = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let (ok, stdout, stderr) = compile(
        &[model.to_str().unwrap(), "-o", out.to_str().unwrap(), "-n", "2"],
        &[("EDGETPU_STANDIN_MODEL", &compiled)],
    );
    assert!(ok, "{stderr}");
    for i in 0..2 {
        let path = out.join(format!("kp_segment_{i}_of_2_edgetpu.tflite"));
        assert!(stdout.contains(&format!("compiled model {}:", path.display())), "{stdout}");
    }
}

#[test]
fn a_model_that_stays_on_the_cpu_is_flagged() {
    let dir = scratch("compile", "cpu");
    let model = input(&dir, "float.tflite");
    let (ok, _stdout, stderr) = compile(&[model.to_str().unwrap(), "-o", dir.join("out").to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    // The stand-in copied the CPU model: no custom op.
    assert!(stderr.contains("no operator runs on the Edge TPU"), "{stderr}");
}

#[test]
fn failures_are_explained() {
    let dir = scratch("compile", "fail");
    let model = input(&dir, "m.tflite");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("standin.env"), "EDGETPU_STANDIN_FAIL=Model not quantized\n").unwrap();
    let (ok, _, stderr) = compile(&[model.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("error: compiling ") && stderr.contains("failed (exit status 1): "), "{stderr}");
    assert!(stderr.contains("ERROR: Model not quantized"), "{stderr}");

    let (ok, _, stderr) = compile(&[model.to_str().unwrap(), "-m", "9"], &[]);
    assert!(!ok && stderr.contains("min_runtime_version (-m)") && stderr.contains("10 to 14"), "{stderr}");
    let (ok, _, stderr) = compile(&[dir.join("absent.tflite").to_str().unwrap()], &[]);
    assert!(!ok && stderr.contains("absent.tflite"), "{stderr}");
}

#[test]
fn a_missing_compiler_says_where_it_looked() {
    let dir = scratch("compile", "missing");
    let model = input(&dir, "m.tflite");
    let out = Command::new(env!("CARGO_BIN_EXE_edgetpu"))
        .args(["compile", model.to_str().unwrap()])
        .env("PATH", &dir)
        .env_remove("EDGETPU_COMPILER")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(stderr.contains("edgetpu_compiler not found") && stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(stderr.contains("edgetpu-compiler") && stderr.contains("EDGETPU_COMPILER"), "{stderr}");
}
