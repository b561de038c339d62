//! Randomized differential testing of the CPU interpreter against TFLite's reference kernels:
//! `tools/op_fuzz/op_fuzz.py` with a fixed seed builds random one-op models for every op of the
//! interpreter's registry (`runtime/src/cpu/ops/mod.rs`) and every type its kernel supports, runs
//! them with ai-edge-litert's reference kernels and with this `edgetpu run`, and compares every
//! output byte. The run fails on any difference, on any op/type with no compared model, and when
//! the registry and the tool's op list disagree (docs/testing.md).
//!
//! The tests need Python 3 with ai-edge-litert 2.3.0, numpy and flatbuffers:
//! `EDGETPU_TEST_PYTHON` names an interpreter that has them, else the test makes a virtual
//! environment in the target directory and installs them from PyPI. They fail (never skip) when
//! neither works.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// Random models per op and type in the test suite (the long runs use more, see docs/testing.md).
const COUNT: &str = "8";
/// The suite's fixed seed.
const SEED: &str = "2026";
const PACKAGES: [&str; 3] = ["ai-edge-litert==2.3.0", "numpy", "flatbuffers"];

fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/op_fuzz/op_fuzz.py")
}

/// A Python interpreter with ai-edge-litert, numpy and flatbuffers.
fn python() -> PathBuf {
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import ai_edge_litert.interpreter, numpy, flatbuffers"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(p) = std::env::var_os("EDGETPU_TEST_PYTHON") {
        let py = PathBuf::from(p);
        assert!(
            has(&py),
            "EDGETPU_TEST_PYTHON={} lacks ai-edge-litert, numpy or flatbuffers: pip install {}",
            py.display(),
            PACKAGES.join(" ")
        );
        return py;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("op-fuzz-venv");
    let py = venv.join("bin/python");
    if !has(&py) {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(&py)
                .args(["-m", "pip", "install", "--quiet"])
                .args(PACKAGES)
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && has(&py),
            "this test needs Python 3 with {}: set EDGETPU_TEST_PYTHON to one, or let it install them into {}",
            PACKAGES.join(", "),
            venv.display()
        );
    }
    py
}

fn fuzz(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(python()).arg(tool()).args(args).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The op names of the interpreter's registry, read here independently of the tool.
fn registry() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/src/cpu/ops/mod.rs");
    let src = std::fs::read_to_string(&path).unwrap();
    let body = &src[src.find("match ctx.op_name {").expect("the registry's match")..];
    let body = &body[..body.find("_ =>").expect("the registry's default arm")];
    let mut names = Vec::new();
    for line in body.lines() {
        if let Some((pattern, _)) = line.split_once("=>") {
            names.extend(pattern.split('"').skip(1).step_by(2).map(str::to_string));
        }
    }
    names
}

#[test]
fn every_op_matches_the_reference_kernels() {
    let (ok, stdout, stderr) = fuzz(&["--edgetpu", env!("CARGO_BIN_EXE_edgetpu"), "--count", COUNT, "--seed", SEED]);
    println!("{stdout}");
    assert!(ok, "op_fuzz.py found differences or gaps:\n{stdout}\n{stderr}");
    // Every op of the registry but the exempt ones has a row, each with COUNT compared models.
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    for name in registry() {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r.len() == 7 && r[0] == name).collect();
        if mine.is_empty() {
            let exempt = stdout.lines().any(|l| l.contains("exempt: ") && l.contains(name.as_str()));
            assert!(exempt, "{name}: neither fuzzed nor exempt in\n{stdout}");
            continue;
        }
        for r in mine {
            assert_eq!(r[4], COUNT, "{name} {}: compared models\n{stdout}", r[1]);
            assert_eq!((r[5], r[6]), ("0", "0"), "{name} {}: differences\n{stdout}", r[1]);
        }
    }
}

#[test]
fn the_tool_covers_the_interpreter_registry() {
    let (ok, stdout, stderr) = fuzz(&["--list"]);
    assert!(ok, "op list mismatch:\n{stdout}\n{stderr}");
    let listed: Vec<&str> = stdout.lines().filter_map(|l| l.split_once(':').map(|(name, _)| name)).collect();
    let mut want = registry();
    assert!(want.len() >= 50, "the registry parse found only {want:?}");
    want.sort();
    let mut got: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want, "the tool's ops (fuzzed and exempt) differ from the registry");
    for must in ["SPLIT", "SLICE", "GATHER_ND", "UNIDIRECTIONAL_SEQUENCE_LSTM", "TFLite_Detection_PostProcess", "TILE"]
    {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{must}:"))).unwrap();
        assert!(!line.contains("exempt"), "{line}");
    }
}

/// A runtime that fails every model fails the run: differences cannot pass unnoticed.
#[test]
fn a_failing_runtime_fails_the_run() {
    let false_bin = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("false"))
        .find(|p| p.is_file())
        .expect("`false` on PATH");
    let (ok, stdout, _) =
        fuzz(&["--edgetpu", false_bin.to_str().unwrap(), "--count", "2", "--ops", "ADD", "--types", "int8"]);
    assert!(!ok, "the run passed with a runtime that fails:\n{stdout}");
    assert!(stdout.contains("DIFFERENCE ADD int8") && stdout.contains("failed"), "{stdout}");
}
