//! The examples' one-call tasks on real models of the test data, checked against the goldens of
//! the reference interpreter, and the choice of file and device behind `--device`.

mod common;

use common::{golden, session, testdata};
use edgetpu::vision::{image::Rgb, Labels};
use edgetpu_examples::{device, open_image, Place};

#[test]
fn classifies_the_cat_like_the_golden_on_the_cpu_and_the_simulator() {
    let td = testdata();
    let labels = Labels::from_file(td.join("imagenet_labels.txt")).unwrap();
    let image = open_image(&td.join("cat.bmp")).unwrap();
    let want = golden("mobilenet_v1_0.25_128_quant", "cat");
    let want = &want["result"]["top_k"];
    for (model, device) in
        [("mobilenet_v1_0.25_128_quant.tflite", "cpu"), ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "sim")]
    {
        let mut s = session(model, device);
        let got = s.classify(&image, 3, Some(&labels)).unwrap().value;
        let ids: Vec<usize> = got.iter().map(|c| c.id).collect();
        assert_eq!(ids, [283, 286, 282], "{model} on {device}");
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            assert_eq!(g.id as u64, w["class_id"].as_u64().unwrap());
            assert_eq!(g.quantized, w["quantized"].as_i64());
            assert_eq!(g.label.as_deref(), w["label"].as_str());
        }
        match (&s.place, device) {
            (Place::Cpu, "cpu") => assert_eq!(s.note, None),
            (Place::EdgeTpu { devices, simulated: true }, "sim") => {
                assert_eq!(devices.len(), 1);
                let d = s.describe();
                assert!(d.contains("simulated") && d.contains("CPU twin"), "{d}");
                assert_eq!(s.runtime().unwrap().metrics()[0].inferences, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn detects_traffic_like_the_golden() {
    let mut s = session(common::TRAFFIC_MODEL, "cpu");
    let image = open_image(&testdata().join("automl_video_ondevice/traffic_frames/0001.bmp")).unwrap();
    let found = s.detect(&image, 0.3, None).unwrap();
    common::assert_traffic_golden(&found.value, "frame0001", 0.3);
    assert!(found.invoke_ms > 0.0);
}

#[test]
fn segments_the_bird_like_the_golden() {
    let td = testdata();
    let labels = Labels::from_file(td.join("pascal_voc_segmentation_labels.txt")).unwrap();
    let mut s = session("deeplabv3_mnv2_dm05_pascal_quant.tflite", "cpu");
    let image = open_image(&td.join("bird_segmentation.bmp")).unwrap();
    let mask = s.segment(&image).unwrap().value;
    assert_eq!((mask.width, mask.height), (513, 513));
    let want = golden("deeplabv3_mnv2_dm05_pascal_quant", "bird_segmentation");
    let counts = mask.pixels_per_class();
    assert_eq!(counts.len(), want["result"]["pixels_per_class"].as_object().unwrap().len(), "{counts:?}");
    for (id, n) in counts {
        let name = labels.get(id as usize).unwrap();
        assert_eq!(n as u64, want["result"]["pixels_per_class"][name].as_u64().unwrap(), "{name}");
    }
    // What segment_image writes: the bird's pixels tinted, the background untouched.
    let over = mask.overlay(&image.to_rgb8(), 0.5).unwrap();
    let background = (0..513).flat_map(|y| (0..513).map(move |x| (x, y))).find(|&(x, y)| mask.class_at(x, y) == 0);
    let (x, y) = background.unwrap();
    assert_eq!(over.get_pixel(x as u32, y as u32), image.to_rgb8().get_pixel(x as u32, y as u32));
}

#[test]
fn finds_the_squatting_pose_like_the_golden() {
    let td = testdata();
    let mut s = session("movenet_single_pose_lightning_ptq.tflite", "cpu");
    let image = open_image(&td.join("squat.bmp")).unwrap();
    let poses = s.pose(&image, 0.0).unwrap().value;
    assert_eq!(poses.len(), 1);
    // The golden output: 17 (y, x, score) rows normalised to the input, which the whole image
    // was stretched into (500x610).
    let bytes = std::fs::read(td.join("golden/movenet_single_pose_lightning_ptq/squat.out0.bin")).unwrap();
    let want: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    for (k, w) in poses[0].keypoints.iter().zip(want.chunks_exact(3)) {
        assert_eq!(k.score, w[2], "{}", k.name);
        assert!((k.x - w[1] * 500.0).abs() < 1e-3 && (k.y - w[0] * 610.0).abs() < 1e-3, "{k:?} {w:?}");
    }
    // What pose_image draws: the confident keypoints as coloured squares.
    let mut canvas = image.to_rgb8();
    edgetpu::vision::draw::pose(&mut canvas, &poses[0], 0.3);
    let nose = &poses[0].keypoints[0];
    assert!(nose.score >= 0.3);
    assert_eq!(*canvas.get_pixel(nose.x as u32, nose.y as u32), Rgb(edgetpu::vision::draw::COLOURS[2]));
}

#[test]
fn auto_takes_the_coral_when_one_is_attached_else_the_cpu() {
    let td = testdata();
    let cpu = td.join("mobilenet_v1_0.25_128_quant.tflite");
    let tpu = td.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let coral = || vec!["usb:1-2".to_string()];
    let none = Vec::new;

    // A Coral attached: the compiled model, or the compiled twin of a CPU model, on it.
    let (path, list, note) = device::choose(&tpu, "auto", coral).unwrap();
    assert_eq!((path, list.as_deref()), (tpu.clone(), Some("usb:1-2")));
    assert!(note.unwrap().contains("Coral is attached"));
    let (path, list, _) = device::choose(&cpu, "auto", coral).unwrap();
    assert_eq!((path, list.as_deref()), (tpu.clone(), Some("usb:1-2")));
    // A CPU model without a compiled twin stays on the CPU, saying why.
    let v2 = td.join("mobilenet_v2_1.0_224_quant.tflite");
    let (path, list, note) = device::choose(&v2, "auto", coral).unwrap();
    assert_eq!((path, list), (v2.clone(), None));
    assert!(note.unwrap().contains("no *_edgetpu.tflite twin"));

    // No Coral: the CPU, with the CPU twin of a compiled model.
    let (path, list, note) = device::choose(&tpu, "auto", none).unwrap();
    assert_eq!((path, list), (cpu.clone(), None));
    assert!(note.unwrap().contains("no Coral attached"));
    let (path, list, _) = device::choose(&cpu, "auto", none).unwrap();
    assert_eq!((path, list), (cpu.clone(), None));
    // ... and a clear error for a compiled model without one.
    let seg = td.join("pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite");
    let e = device::choose(&seg, "auto", none).unwrap_err().to_string();
    assert!(e.contains("no Coral attached") && e.contains("--device sim"), "{e}");

    // Explicit choices.
    assert_eq!(device::choose(&tpu, "cpu", none).unwrap().0, cpu);
    assert_eq!(
        device::choose(&cpu, "sim:0,sim:1", none).unwrap(),
        (tpu.clone(), Some("sim:0,sim:1".into()), Some(format!("the compiled twin of {}", cpu.display())))
    );
    let e = device::choose(&v2, "usb", none).unwrap_err().to_string();
    assert!(e.contains("is a CPU model") && e.contains("--device cpu"), "{e}");
    let e = device::choose(&seg, "cpu", none).unwrap_err().to_string();
    assert!(e.contains("no CPU twin"), "{e}");
    let e = device::choose(&cpu, "gpu", none).unwrap_err().to_string();
    assert!(e.contains("\"gpu\"") && e.contains("auto, cpu, usb"), "{e}");
    let e = device::choose(&td.join("nothing.tflite"), "auto", none).unwrap_err().to_string();
    assert!(e.contains("nothing.tflite"), "{e}");

    // Several devices for the data-parallel and pipeline examples.
    assert_eq!(device::device_list("auto", 3, none).unwrap(), "sim:0,sim:1,sim:2");
    assert_eq!(device::device_list("auto", 3, || vec!["usb:1-1".into(), "usb:1-2".into()]).unwrap(), "usb:1-1,usb:1-2");
    assert!(device::device_list("cpu", 2, none).is_err());

    // On this machine: whatever `auto` finds, the session says where it runs.
    let s = common::session("mobilenet_v1_0.25_128_quant.tflite", "auto");
    let attached = !device::attached_corals().is_empty();
    assert_eq!(matches!(s.place, Place::EdgeTpu { simulated: false, .. }), attached, "{}", s.describe());
    assert!(s.describe().contains("auto:"), "{}", s.describe());
}
