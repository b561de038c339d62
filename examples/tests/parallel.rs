//! Data parallelism and pipelined segments over simulated Corals.

mod common;

use common::testdata;
use edgetpu::Model;
use edgetpu_examples::{device, open_image, parallel};
use std::sync::Arc;

#[test]
fn classifies_data_parallel_over_two_devices_like_the_cpu() {
    let td = testdata();
    let images: Vec<_> =
        ["cat.bmp", "bird.bmp", "grace_hopper.bmp"].iter().map(|f| open_image(&td.join(f)).unwrap()).collect();
    let work: Vec<_> = images.iter().cycle().take(9).cloned().collect();
    let rt = device::open_runtime("sim:0,sim:1").unwrap();
    let model = Arc::new(Model::open(td.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap());
    let got = parallel::classify_all(&rt, model, &work, 1, None).unwrap();
    // The simulator answers with the CPU twin, so each result is the CPU's, in order.
    let mut cpu = common::session("mobilenet_v1_0.25_128_quant.tflite", "cpu");
    for (image, classes) in work.iter().zip(&got) {
        assert_eq!(classes, &cpu.classify(image, 1, None).unwrap().value);
    }
    assert_eq!(got[0][0].id, 283, "tiger cat");
    let runs: Vec<u64> = rt.metrics().iter().map(|m| m.inferences).collect();
    assert_eq!(runs.iter().sum::<u64>(), 9, "{runs:?}");
}

#[test]
fn pipelines_the_ssd_segments_over_three_devices() {
    let td = testdata();
    let segs: Vec<Arc<Model>> = (0..3)
        .map(|k| {
            let p = format!("pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_3_edgetpu.tflite");
            Arc::new(Model::open(td.join(p)).unwrap())
        })
        .collect();
    let image = open_image(&td.join("kite_and_cold.jpg")).unwrap();
    let rt = device::open_runtime("sim:0,sim:1,sim:2").unwrap();
    let got = parallel::detect_pipelined(&rt, &segs, &vec![image; 4], 0.0, None).unwrap();
    assert_eq!(got.len(), 4);
    // The segments have no CPU twin: the simulator's outputs are seeded stand-ins, the same for
    // the same input, so every image gives the same detections, decoded by the CPU
    // post-processing of the last segment (at most its 20).
    assert!(got.iter().all(|d| d == &got[0]));
    assert!(!got[0].is_empty() && got[0].len() <= 20);
    let runs: Vec<u64> = rt.metrics().iter().map(|m| m.inferences).collect();
    assert_eq!(runs, [4, 4, 4], "segment k on device k");
    assert!(parallel::detect_pipelined(&rt, &[], &[], 0.5, None).is_err());
}
