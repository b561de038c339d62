//! The example programs themselves, run as a user runs them: built once by cargo, then each one
//! on the shared test data, with what it prints and the files it writes checked against the
//! goldens of the reference interpreter (the library calls behind them are tested in camera.rs,
//! tasks.rs and parallel.rs).

mod common;

use common::{golden, scratch, testdata, traffic_golden, GoldenDetection, TRAFFIC_FRAMES};
use edgetpu::vision::{draw, image, Labels};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The examples these tests run.
const EXAMPLES: [&str; 8] =
    ["camera", "detect_image", "classify_image", "segment_image", "pose_image", "bench", "multi_tpu", "pipeline"];

/// The example executables by name, built (or found up to date) by cargo with the profile of
/// these tests in the same target directory. Examples get no `CARGO_BIN_EXE_*`, so cargo's JSON
/// messages say where each executable is.
fn executables() -> &'static HashMap<String, PathBuf> {
    static EXES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    EXES.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let profile = if cfg!(debug_assertions) { "test" } else { "release" };
        let mut build = Command::new(cargo);
        // Without the variables cargo set for this test crate: a build script that watches one
        // (ring's, CARGO_MANIFEST_DIR) would otherwise rebuild its crate here and again in the
        // next top-level build.
        let per_crate = ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"];
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            let set_for_us = name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_");
            if set_for_us || per_crate.contains(&&*name) || name == "CARGO_TARGET_TMPDIR" {
                build.env_remove(&k);
            }
        }
        let out = build
            .args(["build", "--profile", profile, "-p", "edgetpu-examples", "--examples"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("running cargo to build the examples");
        assert!(out.status.success(), "building the examples failed: {}", String::from_utf8_lossy(&out.stderr));
        let found: HashMap<String, PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["kind"] == json!(["example"]))
            .filter_map(|m| Some((m["target"]["name"].as_str()?.to_string(), m["executable"].as_str()?.into())))
            .collect();
        for name in EXAMPLES {
            assert!(found.contains_key(name), "cargo named no executable for the example {name}: {found:?}");
        }
        found
    })
}

/// A command running example `name`.
fn example(name: &str) -> Command {
    let exe = executables().get(name).unwrap_or_else(|| panic!("cargo built no example named {name}"));
    Command::new(exe)
}

/// Runs `cmd`, which must succeed: its standard output.
fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{cmd:?}: {}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

/// The number after `key ` in `line` (digits and a point; a trailing unit or comma is ignored).
fn number(line: &str, key: &str) -> f64 {
    let at = line.find(&format!("{key} ")).unwrap_or_else(|| panic!("no {key:?} in {line:?}"));
    let rest = line[at + key.len()..].trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

/// The one line of `out` that starts with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = out.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting with {prefix:?} in:\n{out}");
    found[0]
}

/// The traffic detector, and frame `frame` of the traffic frames.
fn traffic(frame: &str) -> (PathBuf, PathBuf) {
    let td = testdata();
    (td.join(common::TRAFFIC_MODEL), td.join("automl_video_ondevice/traffic_frames").join(frame))
}

/// Checks an annotated traffic frame: it decodes, has the frame's size, and the left edge of the
/// golden's best box is drawn in its class colour.
fn assert_annotated(path: &Path, best: &GoldenDetection) {
    let drawn = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!(drawn.dimensions(), (256, 256), "{}", path.display());
    let (x, y) = (best.xmin.floor() as u32, ((best.ymin + best.ymax) / 2.0) as u32);
    assert_eq!(*drawn.get_pixel(x, y), draw::colour(best.id as usize), "{} at ({x}, {y})", path.display());
}

/// What the camera example prints for each frame: its name, then the objects as `class N P%`.
fn camera_frames(out: &str) -> Vec<(String, Vec<String>)> {
    out.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once("  ")?;
            let (fps, rest) = rest.trim_start().split_once(" fps")?;
            let (ms, objects) = rest.trim_start().split_once(" ms")?;
            assert!(fps.parse::<f64>().unwrap() > 0.0 && ms.parse::<f64>().unwrap() > 0.0, "{l}");
            let objects = objects.trim();
            let objects = if objects.is_empty() { Vec::new() } else { objects.split(", ").map(String::from).collect() };
            Some((name.to_string(), objects))
        })
        .collect()
}

#[test]
fn camera_detects_in_a_directory_of_frames_and_writes_them() {
    let dir = scratch("bin-camera-dir");
    let frames = dir.join("frames");
    std::fs::create_dir(&frames).unwrap();
    common::copy_traffic_frames(&frames);
    let (model, _) = traffic("0001.bmp");
    let out = stdout(
        example("camera")
            .arg("--model")
            .arg(&model)
            .arg("--source")
            .arg(&frames)
            .args(["--device", "cpu", "--threshold", "0.3", "--output"])
            .arg(dir.join("out-{frame}.png")),
    );
    assert!(out.starts_with(&format!("running {} on the CPU\n", model.display())), "{out}");
    line(&out, &format!("frames from {} (2 images)", frames.display()));
    assert_eq!(out.lines().last(), Some("2 frames"), "{out}");

    // Each frame's objects are its golden's, in order, with the score in per cent.
    let got = camera_frames(&out);
    assert_eq!(got.len(), 2, "{out}");
    for (k, ((name, objects), (file, case))) in got.iter().zip(TRAFFIC_FRAMES).enumerate() {
        assert_eq!(name, file);
        let want = traffic_golden(case, 0.3);
        let names: Vec<String> =
            want.iter().map(|d| format!("class {} {:.0}%", d.id, d.score as f32 * 100.0)).collect();
        assert_eq!(objects, &names, "{case}");
        assert_annotated(&dir.join(format!("out-{k:05}.png")), &want[0]);
    }
    assert!(!dir.join("out-00002.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn camera_detects_in_a_motion_jpeg_file() {
    let dir = scratch("bin-camera-mjpeg");
    let path = dir.join("traffic.mjpeg");
    std::fs::write(&path, common::traffic_mjpeg().0).unwrap();
    let (model, _) = traffic("0001.bmp");
    let run = |more: &[&str]| {
        stdout(
            example("camera")
                .arg("--model")
                .arg(&model)
                .arg("--source")
                .arg(&path)
                .args(["--device", "cpu", "--threshold", "0.3"])
                .args(more),
        )
    };
    let out = run(&[]);
    line(&out, "(no --output or --http: printing the detections only)");
    assert_eq!(out.lines().last(), Some("2 frames"), "{out}");
    let got = camera_frames(&out);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["frame 0", "frame 1"], "{out}");
    // JPEG moves the scores a little; the golden's strongest object (class 1, 48%) leads.
    for (_, objects) in &got {
        let top = objects.first().and_then(|o| o.strip_prefix("class 1 ")).unwrap_or_else(|| panic!("{out}"));
        let percent: f64 = top.trim_end_matches('%').parse().unwrap();
        assert!((percent - 48.0).abs() <= 5.0, "{out}");
    }
    // --frames stops early.
    let out = run(&["--frames", "1"]);
    assert_eq!(camera_frames(&out).len(), 1, "{out}");
    assert_eq!(out.lines().last(), Some("1 frames"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A line of detect_image (`Detection` displayed): score, class id, and the box's left, top,
/// right and bottom edges.
fn detection_line(line: &str) -> Option<(f64, u64, [f64; 4])> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [score, "class", id, "x", xs, "y", ys] = words[..] else { return None };
    let (x0, x1) = xs.split_once("..")?;
    let (y0, y1) = ys.split_once("..")?;
    let edges = [x0, y0, x1, y1].map(|v| v.parse::<f64>().unwrap());
    Some((score.parse().unwrap(), id.parse().unwrap(), edges))
}

#[test]
fn detect_image_prints_the_golden_detections_and_writes_the_annotated_image() {
    let dir = scratch("bin-detect");
    let (model, frame) = traffic("0001.bmp");
    let output = dir.join("annotated.png");
    let out = stdout(
        example("detect_image")
            .arg("--model")
            .arg(&model)
            .arg("--image")
            .arg(&frame)
            .args(["--device", "cpu", "--threshold", "0.3", "--output"])
            .arg(&output),
    );
    assert!(out.starts_with(&format!("running {} on the CPU\n", model.display())), "{out}");
    let got: Vec<_> = out.lines().filter_map(detection_line).collect();
    let want = traffic_golden("frame0001", 0.3);
    assert_eq!(got.len(), want.len(), "{out}");
    for ((score, id, edges), w) in got.iter().zip(&want) {
        assert_eq!(*id, w.id, "{out}");
        // Printed with three decimals, the edges with one.
        assert!((score - w.score).abs() <= 5e-4 + 1e-9, "{score} {w:?}");
        for (g, w) in edges.iter().zip([w.xmin, w.ymin, w.xmax, w.ymax]) {
            assert!((g - w).abs() <= 0.05 + 1e-3, "{edges:?} {w:?}");
        }
    }
    assert!(number(line(&out, &format!("{} objects; ", want.len())), "inference:") > 0.0, "{out}");
    assert_eq!(out.lines().last(), Some(format!("wrote {}", output.display()).as_str()));
    assert_annotated(&output, &want[0]);

    // A missing image: an error naming it.
    let missing = dir.join("missing.png");
    let failed = example("detect_image")
        .arg("--model")
        .arg(&model)
        .arg("--image")
        .arg(&missing)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classify_image_prints_the_tiger_cat_on_the_cpu_and_the_simulator() {
    let td = testdata();
    let want = golden("mobilenet_v1_0.25_128_quant", "cat");
    let want = &want["result"]["top_k"].as_array().unwrap()[..3];
    for (model, device, place) in [
        ("mobilenet_v1_0.25_128_quant.tflite", "cpu", "on the CPU"),
        ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "sim", "on simulated Coral sim:0 (no hardware)"),
    ] {
        let out = stdout(
            example("classify_image")
                .arg("--model")
                .arg(td.join(model))
                .arg("--image")
                .arg(td.join("cat.bmp"))
                .arg("--labels")
                .arg(td.join("imagenet_labels.txt"))
                .args(["--device", device]),
        );
        let first = out.lines().next().unwrap();
        assert!(first.starts_with(&format!("running {} {place}", td.join(model).display())), "{out}");
        if device == "sim" {
            assert!(first.contains("Edge TPU outputs from the CPU twin"), "{out}");
        }
        // `score  id  label`, best first: 283 tiger cat, as the reference interpreter finds.
        let classes: Vec<(f64, u64, &str)> = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (score, rest) = l.trim().split_once(' ')?;
                let (id, label) = rest.trim().split_once(' ')?;
                Some((score.parse().ok()?, id.parse().ok()?, label.trim()))
            })
            .collect();
        assert_eq!(classes.len(), 3, "{out}");
        assert_eq!((classes[0].1, classes[0].2), (283, "tiger cat"), "{out}");
        for ((score, id, label), w) in classes.iter().zip(want) {
            assert_eq!((*id, *label), (w["class_id"].as_u64().unwrap(), w["label"].as_str().unwrap()), "{out}");
            assert!((score - w["score"].as_f64().unwrap()).abs() <= 5e-5 + 1e-9, "{out}");
        }
        assert!(number(line(&out, "inference: "), "inference:") > 0.0);
    }
}

#[test]
fn segment_image_prints_the_share_of_each_class_and_writes_the_overlay() {
    let td = testdata();
    let dir = scratch("bin-segment");
    let output = dir.join("segmentation.png");
    let labels_file = td.join("pascal_voc_segmentation_labels.txt");
    let out = stdout(
        example("segment_image")
            .arg("--model")
            .arg(td.join("deeplabv3_mnv2_dm05_pascal_quant.tflite"))
            .arg("--labels")
            .arg(&labels_file)
            .arg("--image")
            .arg(td.join("bird_segmentation.bmp"))
            .args(["--device", "cpu", "--output"])
            .arg(&output),
    );
    // `id  name  share %` for each class of the golden (bird: 17.6 % of the 513x513 pixels).
    let labels = Labels::from_file(&labels_file).unwrap();
    let want = golden("deeplabv3_mnv2_dm05_pascal_quant", "bird_segmentation");
    let want = want["result"]["pixels_per_class"].as_object().unwrap();
    let total = 513.0 * 513.0;
    let shares: HashMap<&str, f64> = out
        .lines()
        .filter_map(|l| {
            let (rest, share) = l.strip_suffix(" %")?.trim_end().rsplit_once(' ')?;
            let (id, name) = rest.trim().split_once(' ')?;
            let name = name.trim();
            assert_eq!(labels.get(id.parse().unwrap()), Some(name), "{l}");
            Some((name, share.parse().unwrap()))
        })
        .collect();
    assert_eq!(shares.len(), want.len(), "{out}");
    for (name, pixels) in want {
        let share = shares.get(name.as_str()).unwrap_or_else(|| panic!("no {name} in\n{out}"));
        assert!((share - 100.0 * pixels.as_f64().unwrap() / total).abs() <= 0.05 + 1e-9, "{name}: {out}");
    }
    assert!((shares["bird"] - 17.6).abs() < 1e-9, "{out}");
    line(&out, "inference: ");
    // The classes other than the background are tinted, the background left as it is.
    let original = image::open(td.join("bird_segmentation.bmp")).unwrap().to_rgb8();
    let overlay = image::open(&output).unwrap().to_rgb8();
    assert_eq!(overlay.dimensions(), original.dimensions());
    let changed = overlay.pixels().zip(original.pixels()).filter(|(a, b)| a != b).count();
    let foreground = total as usize - want["background"].as_u64().unwrap() as usize;
    assert!(changed <= foreground && changed > foreground / 2, "{changed} of {foreground}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pose_image_prints_the_golden_keypoints_and_draws_them() {
    let td = testdata();
    let dir = scratch("bin-pose");
    let output = dir.join("pose.png");
    let out = stdout(
        example("pose_image")
            .arg("--model")
            .arg(td.join("movenet_single_pose_lightning_ptq.tflite"))
            .arg("--image")
            .arg(td.join("squat.bmp"))
            .args(["--device", "cpu", "--output"])
            .arg(&output),
    );
    line(&out, "pose 0: score ");
    assert!(!out.contains("pose 1:"), "{out}");
    // The golden: 17 (y, x, score) rows normalised to the 500x610 image.
    let bytes = std::fs::read(td.join("golden/movenet_single_pose_lightning_ptq/squat.out0.bin")).unwrap();
    let want: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let keypoints: Vec<Vec<&str>> =
        out.lines().filter(|l| l.starts_with("  ")).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(keypoints.len(), want.chunks_exact(3).filter(|k| k[2] >= 0.3).count(), "{out}");
    let nose = keypoints.iter().find(|k| k[0] == "nose").unwrap_or_else(|| panic!("{out}"));
    let (x, y): (f64, f64) = (nose[2].parse().unwrap(), nose[4].parse().unwrap());
    assert!((x - want[1] as f64 * 500.0).abs() <= 0.05 + 1e-3, "{nose:?} {:?}", &want[..3]);
    assert!((y - want[0] as f64 * 610.0).abs() <= 0.05 + 1e-3, "{nose:?} {:?}", &want[..3]);
    assert_eq!(out.lines().last(), Some(format!("wrote {}", output.display()).as_str()));
    let drawn = image::open(&output).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (500, 610));
    let (x, y) = ((want[1] * 500.0) as u32, (want[0] * 610.0) as u32);
    assert_eq!(drawn.get_pixel(x, y).0, draw::COLOURS[2], "the nose's square");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_prints_percentiles_and_the_device_figures() {
    let td = testdata();
    let model = td.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let out = stdout(example("bench").arg("--model").arg(&model).args([
        "--device",
        "sim",
        "--iterations",
        "10",
        "--warmup",
        "2",
    ]));
    let timed = line(&out, "10 inferences: ");
    let [mean, p50, p90, p99, min, max] = ["mean", "p50", "p90", "p99", "min", "max"].map(|k| number(timed, k));
    assert!(0.0 < min && min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{timed}");
    assert!(min <= mean && mean <= max, "{timed}");
    let rate = out.lines().find(|l| l.ends_with(" inferences/s, one at a time")).unwrap_or_else(|| panic!("{out}"));
    let rate: f64 = rate.split(' ').next().unwrap().parse().unwrap();
    assert!((rate - 1e3 / mean).abs() <= 0.05 * rate + 0.1, "{rate} per s, mean {mean} ms");
    // The simulated device ran the warm-up and the timed inferences, with the parameters.
    let device = line(&out, "sim:0: ");
    assert!(device.starts_with("sim:0: 12 runs, "), "{device}");
    assert!(number(device, "runs,") > 0.0 && number(device, "busy") > 0.0, "{device}");

    let failed = example("bench").arg("--model").arg(&model).args(["--iterations", "0"]).output().unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("--iterations must be at least 1"));
}

#[test]
fn multi_tpu_classifies_over_two_simulated_devices() {
    let td = testdata();
    let (cat, bird) = (td.join("cat.bmp"), td.join("bird.bmp"));
    let out = stdout(
        example("multi_tpu")
            .arg("--model")
            .arg(td.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite"))
            .arg("--labels")
            .arg(td.join("imagenet_labels.txt"))
            .arg("--image")
            .arg(&cat)
            .arg("--image")
            .arg(&bird)
            .args(["--repeat", "3", "--device", "sim:0,sim:1"]),
    );
    line(&out, "devices: sim:0, sim:1");
    line(&out, "Edge TPU outputs from the CPU twin ");
    assert_eq!(line(&out, &format!("{}: ", cat.display())), format!("{}: tiger cat (0.281)", cat.display()));
    line(&out, &format!("{}: ", bird.display()));
    let total = line(&out, "6 inferences in ");
    assert!(number(total, "in") > 0.0 && number(total, "s:") > 0.0, "{total}");
    // Every inference ran on one of the two devices.
    let runs: f64 = ["sim:0:", "sim:1:"].iter().map(|d| number(line(&out, d), d)).sum();
    assert_eq!(runs, 6.0, "{out}");
}

#[test]
fn pipeline_runs_the_ssd_segments_on_three_simulated_devices() {
    let td = testdata();
    let segments: Vec<String> = (0..3)
        .map(|k| {
            let p =
                td.join(format!("pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_3_edgetpu.tflite"));
            p.to_str().expect("a UTF-8 test data path").to_string()
        })
        .collect();
    let out = stdout(
        example("pipeline")
            .arg("--segments")
            .arg(segments.join(","))
            .arg("--image")
            .arg(td.join("kite_and_cold.jpg"))
            .arg("--labels")
            .arg(td.join("coco_labels.txt"))
            .args(["--repeat", "3", "--device", "sim:0,sim:1,sim:2"]),
    );
    line(&out, "devices: sim:0, sim:1, sim:2");
    // The segments have no CPU twins: the output says the detections are stand-ins.
    for s in &segments {
        line(&out, &format!("{s} has no CPU twin: Edge TPU outputs are seeded bytes"));
    }
    let detections = out
        .lines()
        .filter(|l| l.split_once("  ").is_some_and(|(score, _)| score.parse::<f64>().is_ok_and(|s| s <= 1.0)))
        .count();
    assert!((1..=20).contains(&detections), "{out}");
    let rate = line(&out, "3 images through 3 segments in ");
    assert!(number(rate, "in") > 0.0 && number(rate, "s:") > 0.0, "{rate}");
    for k in 0..3 {
        line(&out, &format!("sim:{k}: 3 segment runs"));
    }
}
