//! Shared helpers of the integration tests.
#![allow(dead_code)]

mod testdata;
pub use testdata::testdata;

/// Every model of the test data listed in its `models.json`: all `.tflite` files except the
/// one-op regression cases under `regressions/`, which have tests of their own; sorted, as
/// paths relative to the test data.
pub fn all_models() -> Vec<String> {
    let root = testdata();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p != root.join("regressions") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "tflite") {
                out.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "expected the full test data set, found {} models", out.len());
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a golden `.bin` file, or its `.bin.gz` twin.
pub fn read_golden_bin(dir: &std::path::Path, file: &str) -> Vec<u8> {
    let file = file.strip_suffix(".gz").unwrap_or(file);
    let p = dir.join(file);
    if p.is_file() {
        return std::fs::read(&p).unwrap();
    }
    let gz = dir.join(format!("{file}.gz"));
    let f = std::fs::File::open(&gz).unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(f), &mut out).unwrap();
    out
}

/// Every golden run of `golden/<name>/`: (tag, parsed JSON), sorted by tag.
pub fn golden_runs(name: &str) -> Vec<(String, serde_json::Value)> {
    let dir = testdata().join("golden").join(name);
    let mut runs = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let tag = p.file_stem().unwrap().to_string_lossy().into_owned();
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            runs.push((tag, json));
        }
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!runs.is_empty(), "no golden runs in {}", dir.display());
    runs
}

/// Describes how two byte strings differ (empty when equal).
pub fn diff_summary(got: &[u8], want: &[u8]) -> String {
    if got == want {
        return String::new();
    }
    if got.len() != want.len() {
        return format!("length {} != {}", got.len(), want.len());
    }
    let diffs: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    let max = diffs.iter().map(|&i| (got[i] as i32 - want[i] as i32).abs()).max().unwrap_or(0);
    format!(
        "{} of {} bytes differ (first at {}: got {} want {}; max byte diff {max})",
        diffs.len(),
        got.len(),
        diffs[0],
        got[diffs[0]],
        want[diffs[0]]
    )
}

/// Deterministic pseudo-random bytes (xorshift32) for test inputs.
pub fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
