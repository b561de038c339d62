//! Loads every model given on the command line, and mutations of it, the way a user-facing
//! command would (model, Edge TPU packages, associated files), ignoring the errors.
//!
//! `runtime/tests/abort_check.rs` builds this with the `abort-check` profile (`panic = "abort"`,
//! overflow checks on) and runs it on the malformed corpus: a panic anywhere in the loader kills
//! the process instead of being reported as an error, so the test sees it.
//!
//! ```text
//! cargo run --profile abort-check -p edgetpu --example load_corpus -- FILE...
//! ```
//!
//! The mutations: every truncation (files up to 4 KiB, else 200 cut points), an `i32::MIN` and an
//! `i32::MAX` written at every 4-byte-aligned position (files up to 16 KiB, else 1000 positions),
//! and 500 random byte changes (100 for files over 64 KiB). It prints `loaded N inputs, E errors` and exits 0.

use edgetpu::package::Package;
use edgetpu::Model;

fn load_all(bytes: Vec<u8>) -> edgetpu::Result<()> {
    let model = Model::from_bytes(bytes)?;
    for p in Package::all(&model)? {
        let _ = p.ensure_runnable();
    }
    let _ = model.associated_files();
    Ok(())
}

/// Deterministic xorshift generator, so that a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn main() -> std::process::ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: load_corpus FILE...");
        return std::process::ExitCode::from(2);
    }
    let (mut runs, mut errors) = (0usize, 0usize);
    let mut run = |bytes: Vec<u8>| {
        runs += 1;
        if load_all(bytes).is_err() {
            errors += 1;
        }
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for file in &files {
        let original = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let n = original.len();
        run(original.clone());
        let cuts: Vec<usize> = if n <= 4096 { (0..n).collect() } else { (0..200).map(|i| i * n / 200).collect() };
        for cut in cuts {
            run(original[..cut].to_vec());
        }
        let words = n / 4;
        let positions: Vec<usize> =
            if n <= 16384 { (0..words).collect() } else { (0..1000).map(|i| i * words / 1000).collect() };
        for w in positions {
            for v in [i32::MIN, i32::MAX] {
                let mut bytes = original.clone();
                bytes[4 * w..4 * w + 4].copy_from_slice(&v.to_le_bytes());
                run(bytes);
            }
        }
        for _ in 0..if n <= 65536 { 500 } else { 100 } {
            let mut bytes = original.clone();
            if bytes.is_empty() {
                break;
            }
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            run(bytes);
        }
    }
    println!("loaded {runs} inputs, {errors} errors");
    std::process::ExitCode::SUCCESS
}
