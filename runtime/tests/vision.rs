//! The vision module against the shared test data: preprocessing reproduces the goldens' input
//! bytes (Pillow LANCZOS), the adapters decode the goldens' outputs into the goldens' `result`,
//! and whole models run from image files.

mod common;

use edgetpu::cpu::{Interpreter, Options, QuantParams, TensorInfo};
use edgetpu::model::TensorType;
use edgetpu::vision::{self, ClassifyOptions, DetectOptions, Filter, Labels, Preprocess, Transform};
use edgetpu::Model;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn dtype(name: &str) -> TensorType {
    match name {
        "uint8" => TensorType::UINT8,
        "int8" => TensorType::INT8,
        "float32" => TensorType::FLOAT32,
        "int32" => TensorType::INT32,
        "int64" => TensorType::INT64,
        other => panic!("type {other}"),
    }
}

/// The TensorInfo a golden JSON records for an input or output.
fn info(t: &Value) -> TensorInfo {
    let q = &t["quantization"];
    let quant = if q.is_object() && !q["scale"].as_array().unwrap().is_empty() {
        Some(QuantParams {
            scale: q["scale"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect(),
            zero_point: q["zero_point"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect(),
            axis: 0,
        })
    } else {
        None
    };
    TensorInfo {
        index: t["index"].as_u64().unwrap() as usize,
        name: t["name"].as_str().unwrap().to_string(),
        shape: t["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect(),
        dtype: dtype(t["dtype"].as_str().unwrap()),
        quant,
    }
}

fn golden(model: &str, tag: &str) -> (PathBuf, Value) {
    let dir = common::testdata().join("golden").join(model);
    let json = serde_json::from_slice(&std::fs::read(dir.join(format!("{tag}.json"))).unwrap()).unwrap();
    (dir, json)
}

/// The image file a golden input was made from (from its `source` text).
fn source_image(json: &Value) -> PathBuf {
    let source = json["inputs"][0]["source"].as_str().unwrap();
    let name = source.strip_prefix("image ").unwrap().split(' ').next().unwrap();
    let root = common::testdata();
    let model_dir = root.join(json["model_path"].as_str().unwrap()).parent().unwrap().to_path_buf();
    [root.join(name), model_dir.join(name), model_dir.join("traffic_frames").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("image {name} not found"))
}

const IMAGE_GOLDENS: [(&str, &str); 13] = [
    ("keras_lstm_mnist_ptq", "mnist_nine"), // grayscale: Pillow's convert('L')
    ("mobilenet_v1_0.25_128_quant", "cat"),
    ("mobilenet_v1_0.25_128_quant", "grace_hopper"),
    ("mobilenet_v1_0.5_160_quant", "cat"),
    ("mobilenet_v1_0.75_192_quant", "grace_hopper"),
    ("mobilenet_v2_1.0_224_inat_bird_quant", "bird"),
    ("mobilenet_v2_1.0_224_inat_insect_quant", "dragonfly"),
    ("tf2_mobilenet_v2_1.0_224_ptq", "cat"),
    ("movenet_single_pose_lightning_ptq", "squat"),
    ("posenet_mobilenet_v1_075_353_481_16_quant_decoder", "squat"),
    ("posenet_mobilenet_v1_075_353_481_16_quant_decoder", "test_image"),
    ("deeplabv3_mnv2_dm05_pascal_quant", "bird_segmentation"),
    ("traffic_model", "frame0001"),
];

#[test]
fn pil_lanczos_reproduces_every_golden_input() {
    for (model, tag) in IMAGE_GOLDENS {
        let (dir, json) = golden(model, tag);
        let input = info(&json["inputs"][0]);
        let image = vision::open_image(source_image(&json)).unwrap();
        let pre = Preprocess { filter: Filter::PilLanczos, ..Preprocess::default() };
        let (bytes, t) = vision::prepare(&image, &input, &pre).unwrap();
        let want = common::read_golden_bin(&dir, json["inputs"][0]["file"].as_str().unwrap());
        let d = common::diff_summary(&bytes, &want);
        assert!(d.is_empty(), "{model}/{tag}: {d}");
        assert_eq!((t.image_width, t.image_height), (image.width(), image.height()));
    }
}

#[test]
fn lanczos3_is_close_to_pillow() {
    for (model, tag) in IMAGE_GOLDENS {
        let (dir, json) = golden(model, tag);
        let input = info(&json["inputs"][0]);
        let image = vision::open_image(source_image(&json)).unwrap();
        let (bytes, _) = vision::prepare(&image, &input, &Preprocess::default()).unwrap();
        let want = common::read_golden_bin(&dir, json["inputs"][0]["file"].as_str().unwrap());
        assert_eq!(bytes.len(), want.len());
        let diffs: Vec<i32> = bytes.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        // Measured: max 0..13, mean 0.10..0.18 levels (the image crate resamples in f32 and
        // rounds once; Pillow rounds each pass to 8 bits).
        assert!(max <= 16 && mean < 0.25, "{model}/{tag}: max diff {max}, mean {mean:.3}");
    }
}

#[test]
fn classify_decodes_the_golden_top_k() {
    let root = common::testdata();
    for (model, tag, labels) in [
        ("mobilenet_v1_0.25_128_quant", "cat", "imagenet_labels.txt"),
        ("mobilenet_v2_1.0_224_inat_bird_quant", "bird", "inat_bird_labels.txt"),
        ("tf2_mobilenet_v2_1.0_224_ptq", "grace_hopper", "imagenet_labels.txt"),
    ] {
        let (dir, json) = golden(model, tag);
        let out = info(&json["outputs"][0]);
        let bytes = common::read_golden_bin(&dir, json["outputs"][0]["file"].as_str().unwrap());
        let labels = Labels::from_file(root.join(labels)).unwrap();
        let want = json["result"]["top_k"].as_array().unwrap();
        let opts = ClassifyOptions { top_k: want.len(), ..ClassifyOptions::default() };
        let got = vision::classify_scores(&out, &bytes, &opts, Some(&labels)).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.id as u64, w["class_id"].as_u64().unwrap(), "{model}/{tag}");
            assert_eq!(g.label.as_deref(), w["label"].as_str(), "{model}/{tag}");
            assert_eq!(g.quantized, w["quantized"].as_i64());
            assert_eq!(g.score as f64, w["score"].as_f64().unwrap());
        }
    }
}

#[test]
fn detect_decodes_the_golden_detections() {
    for tag in ["frame0001", "frame0002_chained"] {
        let (dir, json) = golden("traffic_model", tag);
        let outs: Vec<(TensorInfo, Vec<u8>)> = (0..4)
            .map(|j| {
                let o = &json["outputs"][j];
                (info(o), common::read_golden_bin(&dir, o["file"].as_str().unwrap()))
            })
            .collect();
        let tensors = [0, 1, 2, 3].map(|j| (&outs[j].0, &outs[j].1[..]));
        // The frames are 256x256 like the input: pixels = normalised * 256, clamped to the image.
        let t = Transform::identity(256, 256);
        let opts = DetectOptions { threshold: 0.0, ..DetectOptions::default() };
        let got = vision::detect_tensors(tensors, &t, &opts, None).unwrap();
        let want = json["result"]["detections"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.id as u64, w["class_id"].as_u64().unwrap());
            assert_eq!(g.score as f64, w["score"].as_f64().unwrap());
            let b: Vec<f64> =
                w["box_ymin_xmin_ymax_xmax"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(g.normalized.map(f64::from).to_vec(), b);
            let px = |v: f64| (v * 256.0).clamp(0.0, 256.0) as f32;
            assert_eq!([g.bbox.ymin, g.bbox.xmin, g.bbox.ymax, g.bbox.xmax], [px(b[0]), px(b[1]), px(b[2]), px(b[3])]);
        }
        let strong = vision::detect_tensors(tensors, &t, &DetectOptions::default(), None).unwrap();
        assert!(strong.iter().all(|d| d.score >= 0.5));
    }
}

#[test]
fn segment_counts_the_golden_classes() {
    let (dir, json) = golden("deeplabv3_mnv2_dm05_pascal_quant", "bird_segmentation");
    let out = info(&json["outputs"][0]);
    let bytes = common::read_golden_bin(&dir, json["outputs"][0]["file"].as_str().unwrap());
    let mask = vision::segment_tensor(&out, &bytes).unwrap();
    let labels = Labels::from_file(common::testdata().join("pascal_voc_segmentation_labels.txt")).unwrap();
    let want = json["result"]["pixels_per_class"].as_object().unwrap();
    let got = mask.pixels_per_class();
    assert_eq!(got.len(), want.len());
    for (id, n) in got {
        let label = labels.get(id as usize).unwrap();
        assert_eq!(want[label].as_u64().unwrap(), n as u64, "{label}");
    }
}

#[test]
fn movenet_golden_output_gives_a_pose_inside_the_image() {
    let (dir, json) = golden("movenet_single_pose_lightning_ptq", "squat");
    let out = info(&json["outputs"][0]);
    let bytes = common::read_golden_bin(&dir, json["outputs"][0]["file"].as_str().unwrap());
    let t = Transform {
        image_width: 500,
        image_height: 610,
        scale_x: 192.0 / 500.0,
        scale_y: 192.0 / 610.0,
        ..Transform::identity(192, 192)
    };
    let poses = vision::movenet_poses((&out, &bytes), &t).unwrap();
    assert_eq!(poses.len(), 1);
    for k in &poses[0].keypoints {
        assert!(
            (0.0..=500.0).contains(&k.x) && (0.0..=610.0).contains(&k.y) && (0.0..=1.0).contains(&k.score),
            "{k:?}"
        );
    }
    // The squat image shows one person: the nose is above the ankles.
    let (nose, ankle) = (&poses[0].keypoints[0], &poses[0].keypoints[15]);
    assert!(nose.y < ankle.y, "{nose:?} {ankle:?}");
}

/// Whole model from the image file: needs the model's CPU kernels.
#[test]
fn mobilenet_v1_classifies_cat_bmp_like_the_golden() {
    let root = common::testdata();
    let (dir, _) = golden("mobilenet_v1_0.25_128_quant", "cat");
    let model = Arc::new(Model::open(root.join("mobilenet_v1_0.25_128_quant.tflite")).unwrap());
    let mut it = Interpreter::new(model, &Options { threads: 2, ..Options::default() }).unwrap();
    let image = vision::open_image(root.join("cat.bmp")).unwrap();
    let pre = Preprocess { filter: Filter::PilLanczos, ..Preprocess::default() };
    vision::set_image(&mut it, &image, &pre).unwrap();
    it.invoke().unwrap();
    let want = common::read_golden_bin(&dir, "cat.out0.bin");
    assert_eq!(it.output(0).unwrap(), &want[..]);
    let labels = Labels::from_file(root.join("imagenet_labels.txt")).unwrap();
    let top = vision::classify(&it, &ClassifyOptions::default(), Some(&labels)).unwrap();
    assert_eq!(top[0].label.as_deref(), Some("tiger cat"));
}

/// Whole model from the image file: MoveNet's keypoints come back in the image's pixels.
#[test]
fn movenet_pose_of_squat_bmp() {
    let root = common::testdata();
    let (dir, _) = golden("movenet_single_pose_lightning_ptq", "squat");
    let model = Arc::new(Model::open(root.join("movenet_single_pose_lightning_ptq.tflite")).unwrap());
    let mut it = Interpreter::new(model, &Options { threads: 2, ..Options::default() }).unwrap();
    let image = vision::open_image(root.join("squat.bmp")).unwrap();
    let t = vision::set_image(&mut it, &image, &Preprocess::default()).unwrap();
    it.invoke().unwrap();
    let want = common::read_golden_bin(&dir, "squat.out0.bin");
    assert_eq!(it.output(0).unwrap(), &want[..]);
    let poses = vision::pose(&it, &t, 0.0).unwrap();
    assert_eq!(poses.len(), 1);
    let v: Vec<f32> = want.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    for (k, (kp, name)) in poses[0].keypoints.iter().zip(vision::KEYPOINT_NAMES).enumerate() {
        assert_eq!(kp.name, name);
        assert!((kp.y - v[3 * k] * 610.0).abs() < 1e-3 && (kp.x - v[3 * k + 1] * 500.0).abs() < 1e-3, "{kp:?}");
        assert_eq!(kp.score, v[3 * k + 2]);
    }
    assert!(vision::pose(&it, &t, 1.01).unwrap().is_empty());
}

#[test]
fn images_past_the_decode_limits_are_refused_before_decoding() {
    // 16385 pixels wide (the limit is 16384 a side), one pixel high: small to make, refused by
    // its header.
    let wide = image::RgbImage::new(16385, 1);
    let mut png = Vec::new();
    wide.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let e = edgetpu::vision::open_image_bytes(&png).unwrap_err();
    assert_eq!(e.kind(), edgetpu::ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("cannot decode the image"), "{e}");
    assert!(e.to_string().contains("16384 pixels a side") && e.to_string().contains("--max-image-side"), "{e}");
    // Raised limits let it through.
    let wider = edgetpu::vision::ImageLimits { max_side: 20000, ..Default::default() };
    assert_eq!(edgetpu::vision::open_image_bytes_within(&png, &wider).unwrap().width(), 16385);
    let ok = image::RgbImage::new(16384, 1);
    let mut png = Vec::new();
    ok.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    assert_eq!(edgetpu::vision::open_image_bytes(&png).unwrap().width(), 16384);
    // The allocation limit: 1000x1000 RGB needs 3 MB decoded, over a 1 MiB limit, under 4 MiB.
    let square = image::RgbImage::new(1000, 1000);
    let mut png = Vec::new();
    square.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let small = edgetpu::vision::ImageLimits { max_alloc: 1 << 20, ..Default::default() };
    let e = edgetpu::vision::open_image_bytes_within(&png, &small).unwrap_err();
    assert!(e.to_string().contains("1 MiB decoded"), "{e}");
    let enough = edgetpu::vision::ImageLimits { max_alloc: 4 << 20, ..Default::default() };
    assert_eq!(edgetpu::vision::open_image_bytes_within(&png, &enough).unwrap().height(), 1000);
}

#[test]
fn a_directory_given_as_a_model_says_so() {
    let e = edgetpu::Model::open(common::testdata()).unwrap_err();
    assert!(e.to_string().contains("is a directory, not a model file"), "{e}");
}

#[test]
fn jpeg_with_a_second_component_sampled_finer_is_refused_not_a_panic() {
    // Found by the image_preprocess fuzz target (its first byte is the target's selector): a
    // progressive JPEG whose 2x2-sampled component is the second one made the JPEG decoder
    // underneath panic in its upsampler.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/image_preprocess");
    let crash = std::fs::read(corpus.join("crash_jpeg_second_component_sampled_finer")).unwrap();
    let err = edgetpu::vision::open_image_bytes(&crash[1..]).unwrap_err();
    assert_eq!(err.kind(), edgetpu::ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("component 2 is sampled 2x2, more finely than the first (1x1)"), "{err}");
    // The seed it was mutated from, a progressive 4:2:0 JPEG, decodes.
    let seed = std::fs::read(corpus.join("jpeg_rgb_6")).unwrap();
    let img = edgetpu::vision::open_image_bytes(&seed[1..]).unwrap();
    assert_eq!((img.width(), img.height()), (7, 5));
}
