//! The runtime's scheduling on simulated devices with the USB 3 time model, all figures of one
//! run side by side:
//!
//! 1. three models taking turns on one device: parameter bytes sent per inference under the
//!    residency scheduler and under libedgetpu's policy (first come, first served; the cache
//!    dropped whenever the token changes), for the same queue of requests;
//! 2. one model on 1, 2 and 4 devices: throughput and scaling efficiency (the simulator sleeps
//!    for its modelled time, so these are wall-clock figures);
//! 3. the three-segment SSD pipelined on 3 devices against the same segments on 1 device.
//!
//! Run: `cargo bench -p edgetpu --bench sched`.

use edgetpu::cpu::Options;
use edgetpu::device::program::Program;
use edgetpu::sched::pipeline::{Pipeline, Pool};
use edgetpu::sched::{Policy, RuntimeOptions, Simulated};
use edgetpu::sim::usb::TimeModel;
use edgetpu::sim::OracleChoice;
use edgetpu::Model;
use std::sync::Arc;
use std::time::Instant;

#[path = "../tests/common/testdata.rs"]
mod testdata;
use testdata::testdata;

fn open(p: &str) -> Arc<Model> {
    Arc::new(Model::open(testdata().join(p)).unwrap())
}

fn one_thread() -> Options {
    Options { threads: 1, ..Default::default() }
}

fn input_len(model: &Arc<Model>) -> usize {
    Program::for_model(model).unwrap().input_sizes().next().unwrap()
}

/// Parameter bytes per inference when `models` take turns on one device: `batches` times,
/// `in_flight` requests of each model are queued interleaved (A, B, C, A, B, C, ...) while the
/// device is held, then served. Both policies see exactly the same queue.
fn turns(policy: Policy, models: &[&str], batches: usize, in_flight: usize) -> f64 {
    let options = RuntimeOptions::default().policy(policy);
    let rt = Simulated::usb(1, TimeModel::usb3(), OracleChoice::Seeded, options).unwrap();
    let mut pools: Vec<Pool> =
        models.iter().map(|m| Pool::new(&rt, open(m), in_flight, in_flight, &one_thread()).unwrap()).collect();
    let sizes: Vec<usize> = models.iter().map(|m| input_len(&open(m))).collect();
    for b in 0..batches {
        {
            let _hold = rt.hold();
            let mut queued = 0;
            for r in 0..in_flight {
                for (k, pool) in pools.iter_mut().enumerate() {
                    pool.send(vec![vec![(b + r) as u8; sizes[k]]]).unwrap();
                    queued += 1;
                    while rt.queue_depth() < queued {
                        std::thread::yield_now();
                    }
                }
            }
        }
        for pool in &mut pools {
            while pool.pending() > 0 {
                pool.recv().unwrap();
            }
        }
    }
    let m = &rt.metrics()[0];
    m.parameter_bytes as f64 / m.inferences as f64
}

fn main() {
    println!("== three models taking turns on one device (USB 3 time model), parameter bytes per inference");
    let separate = [
        "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
        "mobilenet_v1_0.5_160_quant_edgetpu.tflite",
        "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
    ];
    let cocompiled = [
        "cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite",
        "cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite",
        "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
    ];
    println!("{:<52} {:>14} {:>14} {:>8}", "workload", "libedgetpu B", "residency B", "ratio");
    for (name, models, in_flight) in [
        ("3 separately compiled models, 4 queued each", &separate, 4),
        ("3 separately compiled models, 1 queued each", &separate, 1),
        ("co-compiled pair + 1 model, 4 queued each", &cocompiled, 4),
        ("co-compiled pair + 1 model, 1 queued each", &cocompiled, 1),
    ] {
        let base = turns(Policy::Fifo, models, 10, in_flight);
        let ours = turns(Policy::Residency, models, 10, in_flight);
        println!("{name:<52} {base:>14.0} {ours:>14.0} {:>7.2}x", base / ours);
    }

    println!();
    println!("== one model on 1, 2 and 4 devices (mobilenet_v1_0.75_192, USB 3 time model in real time)");
    println!("{:<10} {:>12} {:>12} {:>12}", "devices", "inf/s", "speed-up", "efficiency");
    let mut one = 0.0;
    for n in [1usize, 2, 4] {
        let time = TimeModel { realtime: true, ..TimeModel::usb3() };
        let rt = Simulated::usb(n, time, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
        let model = open("mobilenet_v1_0.75_192_quant_edgetpu.tflite");
        let len = input_len(&model);
        let mut pool = Pool::new(&rt, model, 2 * n, 2 * n, &one_thread()).unwrap();
        // Warm-up: every device caches the parameters.
        for _ in 0..4 * n {
            pool.send(vec![vec![1; len]]).unwrap();
        }
        while pool.pending() > 0 {
            pool.recv().unwrap();
        }
        let runs = 120 * n;
        let start = Instant::now();
        for k in 0..runs {
            pool.send(vec![vec![k as u8; len]]).unwrap();
            if pool.pending() >= 2 * n as u64 {
                pool.recv().unwrap();
            }
        }
        while pool.pending() > 0 {
            pool.recv().unwrap();
        }
        let rate = runs as f64 / start.elapsed().as_secs_f64();
        if n == 1 {
            one = rate;
        }
        println!("{n:<10} {rate:>12.1} {:>11.2}x {:>12.2}", rate / one, rate / one / n as f64);
    }

    println!();
    println!("== SSD MobileNet v2 in 3 segments (USB 3 time model in real time)");
    let segs: Vec<Arc<Model>> = [
        "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite",
        "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_3_edgetpu.tflite",
        "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_2_of_3_edgetpu.tflite",
    ]
    .iter()
    .map(|p| open(p))
    .collect();
    let mut rates = Vec::new();
    for n in [1usize, 3] {
        let time = TimeModel { realtime: true, ..TimeModel::usb3() };
        let rt = Simulated::usb(n, time, OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
        let mut p = Pipeline::new(&rt, &segs, 4, &one_thread()).unwrap();
        let image = vec![("normalized_input_image_tensor".to_string(), vec![128u8; 300 * 300 * 3])];
        for _ in 0..3 {
            p.send(image.clone()).unwrap();
        }
        while p.pending() > 0 {
            p.recv().unwrap();
        }
        let runs = 60;
        let start = Instant::now();
        for _ in 0..runs {
            p.send(image.clone()).unwrap();
            if p.pending() >= 4 {
                p.recv().unwrap();
            }
        }
        while p.pending() > 0 {
            p.recv().unwrap();
        }
        let rate = runs as f64 / start.elapsed().as_secs_f64();
        let bytes: u64 = rt.metrics().iter().map(|m| m.parameter_bytes).sum();
        println!(
            "{n} device(s): {rate:>8.1} inf/s, {:.0} parameter bytes per inference",
            bytes as f64 / (runs + 3) as f64
        );
        rates.push(rate);
    }
    println!(
        "pipelined on 3 devices / the same segments on 1 device: {:.2}x (the segments were compiled together and share \
         one caching token, so on 1 device they stay cached side by side: the stand-in for the whole model, which is \
         not in the test data)",
        rates[1] / rates[0]
    );
}
