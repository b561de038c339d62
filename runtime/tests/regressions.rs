//! The one-op regression cases of the shared test data (`regressions/<case>/`: `model.tflite`,
//! `in<i>.bin`, and `out<j>.bin` as TFLite's reference kernels computed it, see that directory's
//! README): each is reproduced byte for byte by the fast kernels (2 threads), the reference
//! kernels (1 thread), and the portable kernels (what CPUs without AVX2 run, in a child process
//! with `EDGETPU_CPU_ISA=portable`).

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn regressions() -> PathBuf {
    common::testdata().join("regressions")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `case` with `options`; returns what differs from the expected outputs (empty when equal).
fn run(case: &str, options: &Options) -> Vec<String> {
    let dir = regressions().join(case);
    assert!(dir.join("model.tflite").is_file(), "{}: model.tflite is missing", dir.display());
    let model = Arc::new(Model::open(dir.join("model.tflite")).unwrap_or_else(|e| panic!("{case}: {e}")));
    let mut it = Interpreter::new(model, options).unwrap_or_else(|e| panic!("{case}: {e}"));
    for i in 0..it.inputs().len() {
        it.set_input(i, &read(&dir.join(format!("in{i}.bin")))).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    it.invoke().unwrap_or_else(|e| panic!("{case}: {e}"));
    let n_out = it.outputs().len();
    assert!(n_out > 0, "{case}: the model has no outputs");
    (0..n_out)
        .filter_map(|j| {
            let d = common::diff_summary(it.output(j).unwrap(), &read(&dir.join(format!("out{j}.bin"))));
            (!d.is_empty()).then(|| format!("{case} output {j}: {d}"))
        })
        .collect()
}

fn check(case: &str) {
    let fast = Options { threads: 2, ..Options::default() };
    let reference = Options { threads: 1, reference: true, ..Options::default() };
    let mut failures = run(case, &fast);
    failures.extend(run(case, &reference).into_iter().map(|f| format!("reference kernels: {f}")));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// int8 FULLY_CONNECTED with per-channel weights, where an output sits on a double-rounding tie:
/// TFLite requantizes FULLY_CONNECTED in double precision (one rounding), element 4 is 28 there
/// and was 29 with a fixed-point multiplier.
#[test]
fn fc_int8_per_channel() {
    check("fc_int8_per_channel");
}

/// Every case directory has a test above (so a new case cannot be forgotten).
#[test]
fn every_case_has_a_test() {
    const CASES: &[&str] = &["fc_int8_per_channel"];
    let mut dirs: Vec<String> = std::fs::read_dir(regressions())
        .unwrap_or_else(|e| panic!("{}: {e}", regressions().display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, CASES, "regression case directories and the tests of tests/regressions.rs differ");
}

/// The same cases on the portable kernels, in a child process (the kernel choice is read once
/// per process).
#[test]
fn portable_kernels() {
    if std::env::var_os("EDGETPU_CPU_ISA").is_some() {
        return; // the child itself
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("EDGETPU_CPU_ISA", "portable")
        .args(["fc_", "--test-threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "portable run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("test fc_int8_per_channel ... ok"), "the case did not run in the child:\n{stdout}");
}
