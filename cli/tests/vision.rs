//! `edgetpu run`, `classify`, `detect`, `segment` and `bench` end to end over the shared test data.
//! Whole-model runs need the CPU kernels of each model.

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

mod common;

use common::{edgetpu, testdata};

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    common::scratch("vision", name)
}

/// Runs `edgetpu ARGS --json`, asserting success, and parses stdout.
fn edgetpu_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, stdout, stderr) = edgetpu(&all);
    assert!(ok, "edgetpu {}: {stderr}", args.join(" "));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn golden_json(model: &str, tag: &str) -> Value {
    let p = testdata().join("golden").join(model).join(format!("{tag}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap()).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn run_reproduces_the_mobilenet_golden() {
    let td = testdata();
    let g = td.join("golden/mobilenet_v1_0.25_128_quant");
    let dir = scratch("run");
    let model = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let doc = edgetpu_json(&[
        "run",
        "--model",
        path(&model),
        "--input",
        path(&g.join("cat.in0.bin")),
        "--output-dir",
        path(&dir),
        "--threads",
        "2",
    ]);
    assert_eq!(std::fs::read(dir.join("out0.bin")).unwrap(), std::fs::read(g.join("cat.out0.bin")).unwrap());
    let out = &doc["outputs"][0];
    assert_eq!(out["index"], 88);
    assert_eq!(out["shape"], serde_json::json!([1, 1001]));
    assert_eq!(out["nbytes"], 1001);
    assert_eq!(out["sha256"], golden_json("mobilenet_v1_0.25_128_quant", "cat")["outputs"][0]["sha256"]);

    // --outputs picks tensors by index, in order: the output, then the input itself.
    let (ok, _, stderr) = edgetpu(&[
        "run",
        "--model",
        path(&model),
        "--input",
        path(&g.join("cat.in0.bin")),
        "--output-dir",
        path(&dir),
        "--outputs",
        "88,0",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(dir.join("out0.bin")).unwrap(), std::fs::read(g.join("cat.out0.bin")).unwrap());
    assert_eq!(std::fs::read(dir.join("out1.bin")).unwrap(), std::fs::read(g.join("cat.in0.bin")).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads a little-endian u32 at `at`.
fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// The absolute offset of field `id` of the flatbuffer table at `table`, if present.
fn fb_field(b: &[u8], table: usize, id: usize) -> Option<usize> {
    let vt = (table as i64 - i32::from_le_bytes(b[table..table + 4].try_into().unwrap()) as i64) as usize;
    let vt_size = u16::from_le_bytes(b[vt..vt + 2].try_into().unwrap()) as usize;
    let at = if 4 + 2 * id + 2 <= vt_size {
        u16::from_le_bytes(b[vt + 4 + 2 * id..vt + 6 + 2 * id].try_into().unwrap())
    } else {
        0
    };
    (at > 0).then_some(table + at as usize)
}

/// A copy of a .tflite file with every operator code `from` rewritten to `to` (both below 127):
/// both the `deprecated_builtin_code` and the `builtin_code` fields of `Model.operator_codes`.
fn with_opcode(model: &[u8], from: u8, to: u8) -> Vec<u8> {
    let mut b = model.to_vec();
    let root = u32_at(&b, 0);
    let codes_field = fb_field(&b, root, 1).unwrap();
    let codes = codes_field + u32_at(&b, codes_field);
    let mut changed = 0;
    for i in 0..u32_at(&b, codes) {
        let at = codes + 4 + 4 * i;
        let code = at + u32_at(&b, at);
        let deprecated = fb_field(&b, code, 0);
        let builtin = fb_field(&b, code, 3);
        let is_from =
            builtin.map_or_else(|| deprecated.is_some_and(|d| b[d] == from), |f| u32_at(&b, f) == from as usize);
        if is_from {
            if let Some(d) = deprecated {
                b[d] = to;
            }
            if let Some(f) = builtin {
                b[f..f + 4].copy_from_slice(&(to as i32).to_le_bytes());
            }
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "expected one operator code {from}");
    b
}

/// `--outputs` plans only what those tensors need: with its last op (SOFTMAX) turned into one
/// the runtime has no kernel for (LOG_SOFTMAX), mobilenet_v1 fails for its outputs, naming the
/// op and node, but gives the softmax input (tensor 87) as the intact model does.
#[test]
fn run_outputs_skips_an_unsupported_tail() {
    let td = testdata();
    let g = td.join("golden/mobilenet_v1_0.25_128_quant");
    let dir = scratch("run-pruned");
    let intact = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let mutated = dir.join("log_softmax_tail.tflite");
    std::fs::write(&mutated, with_opcode(&std::fs::read(&intact).unwrap(), 25, 50)).unwrap();
    let input = g.join("cat.in0.bin");
    let (ok, _, stderr) =
        edgetpu(&["run", "--model", path(&mutated), "--input", path(&input), "--output-dir", path(&dir)]);
    assert!(!ok, "the mutated model must not run whole");
    assert!(stderr.contains("LOG_SOFTMAX/v1") && stderr.contains("node 30"), "{stderr}");
    let want_dir = dir.join("intact");
    let args = |model: &Path, out: &Path| {
        edgetpu_json(&[
            "run",
            "--model",
            path(model),
            "--input",
            path(&input),
            "--output-dir",
            path(out),
            "--outputs",
            "87",
        ])
    };
    let want = args(&intact, &want_dir);
    let got = args(&mutated, &dir);
    assert_eq!(got["outputs"][0]["index"], 87);
    assert_eq!(got["outputs"][0]["nbytes"], 1001);
    assert_eq!(got["outputs"][0]["sha256"], want["outputs"][0]["sha256"]);
    assert_eq!(std::fs::read(dir.join("out0.bin")).unwrap(), std::fs::read(want_dir.join("out0.bin")).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_rejects_bad_inputs_with_hints() {
    let td = testdata();
    let dir = scratch("run-bad");
    let model = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let short = dir.join("short.bin");
    std::fs::write(&short, [0u8; 10]).unwrap();
    let (ok, _, stderr) =
        edgetpu(&["run", "--model", path(&model), "--input", path(&short), "--output-dir", path(&dir)]);
    assert!(!ok);
    assert!(stderr.starts_with("error: ") && stderr.contains("49152 bytes, got 10"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    let (ok, _, stderr) = edgetpu(&[
        "run",
        "--model",
        path(&model),
        "--input",
        path(&short),
        "--input",
        path(&short),
        "--output-dir",
        path(&dir),
    ]);
    assert!(!ok && stderr.contains("has 1 inputs"), "{stderr}");
    let (ok, _, stderr) = edgetpu(&[
        "run",
        "--model",
        path(&model),
        "--input",
        path(&dir.join("missing.bin")),
        "--output-dir",
        path(&dir),
    ]);
    assert!(!ok && stderr.contains("missing.bin") && stderr.contains("hint: check the path"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classify_cat_with_mobilenet_v1() {
    let td = testdata();
    let want = golden_json("mobilenet_v1_0.25_128_quant", "cat");
    let model = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let image = td.join("cat.bmp");
    let labels = td.join("imagenet_labels.txt");
    // The default filter (Pillow-exact LANCZOS) reproduces the golden input, hence its top-k.
    let doc = edgetpu_json(&["classify", "--model", path(&model), "--image", path(&image), "--labels", path(&labels)]);
    let got = doc["classes"].as_array().unwrap();
    let top = want["result"]["top_k"].as_array().unwrap();
    assert_eq!(got.len(), top.len());
    for (g, w) in got.iter().zip(top) {
        assert_eq!(g["id"], w["class_id"]);
        assert_eq!(g["label"], w["label"]);
        assert_eq!(g["score"], w["score"]);
    }
    assert_eq!(doc["classes"][0]["label"], "tiger cat");
    // The image crate's Lanczos3 differs by a few levels: enough to swap tiger cat (0.28) and
    // Egyptian cat (0.25) on this small model, but the top 3 are the same three cats.
    let (ok, stdout, stderr) = edgetpu(&[
        "classify",
        "-m",
        path(&model),
        "-i",
        path(&image),
        "--labels",
        path(&labels),
        "--top-k",
        "3",
        "--filter",
        "lanczos3",
    ]);
    assert!(ok, "{stderr}");
    let ids: Vec<&str> = stdout.lines().take(3).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["282", "283", "286"], "{stdout}");
    // Without --labels, the labels packed in the model's metadata are used.
    let doc = edgetpu_json(&["classify", "--model", path(&model), "--image", path(&image), "--threshold", "0.2"]);
    assert_eq!(doc["labels"], "model metadata");
    let classes = doc["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{doc}");
    assert_eq!((classes[0]["label"].as_str(), classes[1]["label"].as_str()), (Some("tiger cat"), Some("Egyptian cat")));
}

#[test]
fn classify_bird_with_inat() {
    let td = testdata();
    let doc = edgetpu_json(&[
        "classify",
        "--model",
        path(&td.join("mobilenet_v2_1.0_224_inat_bird_quant.tflite")),
        "--image",
        path(&td.join("bird.bmp")),
        "--labels",
        path(&td.join("inat_bird_labels.txt")),
        "--top-k",
        "1",
    ]);
    let top = &doc["classes"][0];
    assert_eq!(top["id"], 659);
    assert_eq!(top["label"], "Poecile atricapillus (Black-capped Chickadee)");
    assert!(top["score"].as_f64().unwrap() > 0.4, "{doc}");
}

#[test]
fn classify_grayscale_digit() {
    let td = testdata();
    let doc = edgetpu_json(&[
        "classify",
        "--model",
        path(&td.join("keras_lstm_mnist_ptq.tflite")),
        "--image",
        path(&td.join("mnist_nine.bmp")),
        "--top-k",
        "1",
    ]);
    assert_eq!(doc["classes"][0]["id"], 9, "{doc}");
    assert_eq!(doc["classes"][0]["quantized"], 255, "{doc}");
}

#[test]
fn detect_traffic_frames() {
    let td = testdata();
    let model = td.join("automl_video_ondevice/traffic_model.tflite");
    let dir = scratch("detect");
    for (frame, tag) in [("0001", "frame0001"), ("0002", "frame0002_chained")] {
        let image = td.join(format!("automl_video_ondevice/traffic_frames/{frame}.bmp"));
        let out = dir.join(format!("{frame}.png"));
        // The frames are 256x256, the input size: no resize, so the golden input exactly (the
        // LSTM state inputs are filled with their zero point, as in the goldens).
        let doc = edgetpu_json(&[
            "detect",
            "--model",
            path(&model),
            "--image",
            path(&image),
            "--threshold",
            "0.3",
            "--output",
            path(&out),
        ]);
        let golden = golden_json("traffic_model", tag);
        let want: Vec<&Value> = golden["result"]["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["score"].as_f64().unwrap() >= 0.3)
            .collect();
        let got = doc["detections"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{tag}: {doc}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["id"], w["class_id"]);
            assert_eq!(g["score"], w["score"]);
            let b = w["box_ymin_xmin_ymax_xmax"].as_array().unwrap();
            let px = |v: &Value| (v.as_f64().unwrap() * 256.0).clamp(0.0, 256.0);
            assert!((g["bbox"]["xmin"].as_f64().unwrap() - px(&b[1])).abs() < 1e-3, "{g} {w}");
            assert!((g["bbox"]["ymax"].as_f64().unwrap() - px(&b[2])).abs() < 1e-3, "{g} {w}");
        }
        let drawn = image::open(&out).unwrap().to_rgb8();
        let original = image::open(&image).unwrap().to_rgb8();
        assert_eq!(drawn.dimensions(), original.dimensions());
        assert_ne!(drawn.as_raw(), original.as_raw(), "nothing was drawn");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segment_bird() {
    let td = testdata();
    let model = td.join("deeplabv3_mnv2_dm05_pascal_quant.tflite");
    let labels = td.join("pascal_voc_segmentation_labels.txt");
    let want = golden_json("deeplabv3_mnv2_dm05_pascal_quant", "bird_segmentation");
    let want = want["result"]["pixels_per_class"].as_object().unwrap();
    let dir = scratch("segment");

    // Exact: the golden input through `run`.
    let input = dir.join("in0.bin");
    std::fs::write(&input, gunzip(&td.join("golden/deeplabv3_mnv2_dm05_pascal_quant/bird_segmentation.in0.bin.gz")))
        .unwrap();
    let (ok, _, stderr) =
        edgetpu(&["run", "--model", path(&model), "--input", path(&input), "--output-dir", path(&dir)]);
    assert!(ok, "{stderr}");
    let golden_out = gunzip(&td.join("golden/deeplabv3_mnv2_dm05_pascal_quant/bird_segmentation.out0.bin.gz"));
    assert!(std::fs::read(dir.join("out0.bin")).unwrap() == golden_out, "deeplab output differs from the golden");

    // From the image (513x513, the input size: no resize, so the counts are the golden's).
    let mask = dir.join("mask.png");
    let overlay = dir.join("overlay.png");
    let doc = edgetpu_json(&[
        "segment",
        "--model",
        path(&model),
        "--image",
        path(&td.join("bird_segmentation.bmp")),
        "--labels",
        path(&labels),
        "--output",
        path(&mask),
        "--overlay",
        path(&overlay),
    ]);
    let got = doc["pixels_per_class"].as_object().unwrap();
    assert_eq!(got, want, "{doc}");
    let m = image::open(&mask).unwrap().to_luma8();
    assert_eq!(m.dimensions(), (513, 513));
    let birds = m.pixels().filter(|p| p.0[0] == 3).count() as u64;
    assert_eq!(birds, want["bird"].as_u64().unwrap());
    assert_eq!(image::open(&overlay).unwrap().width(), 513);

    // A resized, letterboxed image still finds mostly background and a bird.
    let small = dir.join("small.png");
    image::open(td.join("bird_segmentation.bmp"))
        .unwrap()
        .resize_exact(400, 300, image::imageops::FilterType::Triangle)
        .save(&small)
        .unwrap();
    let doc = edgetpu_json(&[
        "segment",
        "--model",
        path(&model),
        "--image",
        path(&small),
        "--labels",
        path(&labels),
        "--output",
        path(&mask),
        "--fit",
        "letterbox",
        "--color",
    ]);
    assert_eq!((doc["width"].as_u64(), doc["height"].as_u64()), (Some(400), Some(300)));
    let counts = doc["pixels_per_class"].as_object().unwrap();
    let mut ranked: Vec<(&String, u64)> = counts.iter().map(|(k, v)| (k, v.as_u64().unwrap())).collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    assert_eq!(ranked[0].0, "background", "{ranked:?}");
    assert_eq!(ranked[1].0, "bird", "{ranked:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_reports_percentiles() {
    let td = testdata();
    let doc = edgetpu_json(&[
        "bench",
        "--model",
        path(&td.join("mobilenet_v1_0.25_128_quant.tflite")),
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--threads",
        "1",
    ]);
    let l = &doc["latency_ms"];
    let v = |k: &str| l[k].as_f64().unwrap();
    assert!(
        v("min") > 0.0 && v("min") <= v("p50") && v("p50") <= v("p90") && v("p90") <= v("p99") && v("p99") <= v("max")
    );
    assert_eq!(doc["iterations"], 5);
    assert_eq!(doc["threads"], 1);
    assert!(doc["arena_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn image_errors_are_clear() {
    let td = testdata();
    let model = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let dir = scratch("errors");
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let (ok, _, stderr) = edgetpu(&["classify", "--model", path(&model), "--image", path(&bad)]);
    assert!(!ok && stderr.contains("bad.png") && stderr.contains("cannot decode"), "{stderr}");
    let (ok, _, stderr) = edgetpu(&["classify", "--model", path(&model), "--image", path(&dir.join("none.png"))]);
    assert!(!ok && stderr.contains("none.png") && stderr.contains("hint: check the path"), "{stderr}");
    let (ok, _, stderr) =
        edgetpu(&["classify", "--model", path(&model), "--image", path(&td.join("cat.bmp")), "--fit", "squash"]);
    assert!(!ok && stderr.contains("squash"), "{stderr}");
    // A model without an image input.
    let (ok, _, stderr) = edgetpu(&[
        "detect",
        "--model",
        path(&td.join("detection/detection_postprocess_float_regular_nms.tflite")),
        "--image",
        path(&td.join("cat.bmp")),
    ]);
    assert!(!ok && stderr.contains("no image input"), "{stderr}");
    // Decode limits: cat.bmp is wider than 64 pixels; the message says how to raise the limit,
    // and the raised limit lets it through.
    let cat = td.join("cat.bmp");
    let (ok, _, stderr) =
        edgetpu(&["classify", "--model", path(&model), "--image", path(&cat), "--max-image-side", "64"]);
    assert!(!ok && stderr.contains("cat.bmp") && stderr.contains("64 pixels a side"), "{stderr}");
    assert!(stderr.contains("--max-image-side"), "{stderr}");
    let (ok, _, stderr) =
        edgetpu(&["classify", "--model", path(&model), "--image", path(&cat), "--max-image-side", "4096"]);
    assert!(ok, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
