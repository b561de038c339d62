//! Malformed model files: every one must give an error (never a panic), and the error must name
//! a byte offset or field.

mod common;

use edgetpu::package::Package;
use edgetpu::{ErrorKind, Model};

/// Loads and decodes everything a user-facing command would touch.
fn load_all(bytes: Vec<u8>) -> edgetpu::Result<()> {
    let model = Model::from_bytes(bytes)?;
    for p in Package::all(&model)? {
        let _ = p.ensure_runnable();
    }
    let _ = model.associated_files();
    Ok(())
}

fn expect_invalid(bytes: Vec<u8>, what: &str) -> edgetpu::Error {
    let err = load_all(bytes).expect_err(what);
    assert!(matches!(err.kind(), ErrorKind::InvalidModel | ErrorKind::Unsupported), "{what}: {err}");
    if err.kind() == ErrorKind::InvalidModel {
        let loc = err.location().expect("invalid-model errors carry a location");
        assert!(!loc.field.is_empty(), "{what}: {err}");
        assert!(err.to_string().contains("byte "), "{what}: {err}");
    }
    err
}

/// Small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SMALL_MODELS: &[&str] = &[
    "tools/split_concat_edgetpu.tflite",
    "keras_lstm_mnist_ptq_edgetpu.tflite",
    "tools/split_concat.tflite",
    "detection/detection_postprocess_uint8_fast_nms.tflite",
    "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
];

#[test]
fn truncated_files_are_errors() {
    for rel in SMALL_MODELS.iter().chain(&["mobilenet_v1_0.25_128_quant_edgetpu.tflite"]) {
        let bytes = std::fs::read(common::testdata().join(rel)).unwrap();
        load_all(bytes.clone()).unwrap();
        // Every byte for tiny files, else 400 cut points spread over the file plus the last 64.
        let n = bytes.len();
        let mut cuts: Vec<usize> = if n <= 4096 { (0..n).collect() } else { (0..400).map(|i| i * n / 400).collect() };
        cuts.extend(n.saturating_sub(64)..n);
        for cut in cuts {
            let truncated = bytes[..cut].to_vec();
            if cut < n / 2 {
                expect_invalid(truncated, &format!("{rel} cut at {cut}"));
            } else {
                // A cut inside a trailing zip archive (labels) may leave a valid flatbuffer; that is fine
                // as long as nothing panics.
                let _ = load_all(truncated);
            }
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // EDGETPU_MUTATIONS raises the count per model for a longer local hunt.
    let per_model: usize = std::env::var("EDGETPU_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    let mut runs = 0;
    for rel in SMALL_MODELS {
        let original = std::fs::read(common::testdata().join(rel)).unwrap();
        for _ in 0..per_model {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes[at] = rng.next() as u8,
                    _ => {
                        // An absurd 32-bit value (length, offset or index).
                        let v = [0xFFFF_FFFFu32, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF][rng.below(4)];
                        let end = (at + 4).min(bytes.len());
                        bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                    }
                }
            }
            runs += 1;
            if let Err(e) = load_all(bytes) {
                errors += 1;
                if e.kind() == ErrorKind::InvalidModel {
                    assert!(e.location().is_some(), "{rel}: {e}");
                }
            }
        }
    }
    // Most mutations land in weights or instructions and stay loadable; a good share must not.
    assert!(errors > runs / 50, "only {errors} of {runs} mutations were rejected");
}

#[test]
fn wrong_identifier_and_garbage() {
    let bytes = std::fs::read(common::testdata().join("tools/split_concat.tflite")).unwrap();
    let mut wrong = bytes.clone();
    wrong[4..8].copy_from_slice(b"TFL2");
    let err = expect_invalid(wrong, "wrong identifier");
    assert_eq!(err.location().unwrap().offset, 4);
    assert!(err.to_string().contains("TFL3"), "{err}");

    expect_invalid(Vec::new(), "empty");
    expect_invalid(b"TFL3".to_vec(), "four bytes");
    let mut garbage = vec![0xAB; 4096];
    garbage[4..8].copy_from_slice(b"TFL3");
    expect_invalid(garbage, "garbage with an identifier");
    // A root offset pointing far past the end.
    let mut far = bytes.clone();
    far[0..4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    let err = expect_invalid(far, "root offset past the end");
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn empty_file_on_disk_names_the_path() {
    let dir = std::env::temp_dir().join(format!("edgetpu-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("empty.tflite");
    std::fs::write(&path, b"").unwrap();
    let err = Model::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModel);
    assert!(err.to_string().contains("empty.tflite") && err.to_string().contains("empty"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fuzz_corpus_replays_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/load_decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let _ = load_all(std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "fuzz corpus at {} has only {n} inputs", dir.display());
}

#[test]
fn tensor_index_out_of_range_is_named() {
    // A seed of the fuzz corpus, made by fuzz/make_corpus.py: operator 0 reads tensor 7 of 2.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/load_decode/bad_tensor_index");
    let err = Model::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModel);
    assert_eq!(err.location().unwrap().field, "subgraphs[0].operators[0].inputs[0]");
    assert!(err.to_string().contains("tensor index 7 out of range (2 tensors)"), "{err}");
    assert!(err.to_string().contains("bad_tensor_index"), "{err}");
    // The well-formed seeds load.
    for ok in ["add", "const", "optional_input"] {
        let model = Model::open(path.with_file_name(ok)).unwrap();
        assert_eq!(model.subgraphs()[0].operators.len(), 1);
    }
    let model = Model::open(path.with_file_name("optional_input")).unwrap();
    assert_eq!(model.subgraphs()[0].operators[0].inputs, vec![None, Some(0)]);
    let model = Model::open(path.with_file_name("const")).unwrap();
    let t = &model.subgraphs()[0].tensors[0];
    assert_eq!(model.tensor_data(t), Some(&[1u8, 2, 3, 4][..]));
}

#[test]
fn vtable_offset_of_i32_min_is_an_error() {
    // A seed of the fuzz corpus (fuzz/make_corpus.py): the root table's vtable offset is i32::MIN.
    // The flatbuffers 2.x verifier panicked on it with overflow checks on (abs() of i32::MIN); the
    // test profile has them on for every crate.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/load_decode/soffset_i32_min");
    let bytes = std::fs::read(&path).unwrap();
    let root = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(bytes[root..root + 4], i32::MIN.to_le_bytes());
    let err = expect_invalid(bytes, "soffset i32::MIN");
    assert_eq!(err.kind(), ErrorKind::InvalidModel);
    assert!(err.to_string().contains("vtable offset -2147483648 points outside the buffer"), "{err}");
    assert_eq!(err.location().unwrap().offset, root, "{err}");
}
