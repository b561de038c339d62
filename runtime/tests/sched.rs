//! The runtime over several simulated devices: pipelined segments, data parallelism, the
//! residency-aware job choice against first-come-first-served, and many threads at once.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::sched::pipeline::{Pipeline, Pool};
use edgetpu::sched::{Policy, Runtime, RuntimeOptions, Simulated};
use edgetpu::sim::usb::TimeModel;
use edgetpu::sim::OracleChoice;
use edgetpu::Model;
use std::sync::Arc;
use std::time::Duration;

fn open(path: &str) -> Arc<Model> {
    Arc::new(Model::open(common::testdata().join(path)).unwrap())
}

fn one_thread() -> Options {
    Options { threads: 1, ..Default::default() }
}

const SEGMENTS: [&str; 3] = [
    "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite",
    "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_3_edgetpu.tflite",
    "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_2_of_3_edgetpu.tflite",
];

/// Runs the segments one after the other on `rt`, chaining by tensor name, and checks that the
/// CPU tail model (`detection/`) on segment 2's Edge TPU outputs gives segment 2's detections.
fn chain(rt: &Runtime, segs: &[Arc<Model>], image: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tensors: Vec<(String, Vec<u8>)> = vec![("normalized_input_image_tensor".into(), image.to_vec())];
    let mut tail_inputs = Vec::new();
    for (k, seg) in segs.iter().enumerate() {
        let sg = &seg.subgraphs()[0];
        let keep: Vec<usize> = if k == 2 {
            ["Squeeze1", "convert_scores"]
                .iter()
                .map(|n| sg.tensors.iter().position(|t| t.name == *n).unwrap_or_else(|| panic!("no tensor {n}")))
                .collect()
        } else {
            Vec::new()
        };
        let mut it =
            rt.interpreter(seg.clone(), &Options { threads: 1, keep: keep.clone(), ..Default::default() }).unwrap();
        for i in 0..it.inputs().len() {
            let name = it.inputs()[i].name.clone();
            let t = &tensors.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no tensor {name}")).1;
            it.set_input(i, t).unwrap();
        }
        it.invoke().unwrap();
        let outs: Vec<(String, Vec<u8>)> =
            it.outputs().iter().enumerate().map(|(j, t)| (t.name.clone(), it.output(j).unwrap().to_vec())).collect();
        tail_inputs = keep.iter().map(|&t| it.tensor(t).unwrap().to_vec()).collect();
        if k == 2 {
            tensors = outs;
        } else {
            tensors.extend(outs);
        }
    }
    // The CPU tail on the same intermediate tensors ends in the same detections.
    let mut tail =
        Interpreter::new(open("detection/ssd_mobilenet_v2_coco_postprocess_tail.tflite"), &one_thread()).unwrap();
    let names: Vec<String> = tail.inputs().iter().map(|t| t.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        let k = ["Squeeze1", "convert_scores"].iter().position(|n| n == name).unwrap();
        tail.set_input(i, &tail_inputs[k]).unwrap();
    }
    tail.invoke().unwrap();
    for (j, (_, want)) in tensors.iter().enumerate() {
        assert_eq!(tail.output(j).unwrap(), &want[..], "tail output {j}");
    }
    tensors
}

fn pipeline_on(devices: usize) {
    let rt = Simulated::usb(devices, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    let segs: Vec<Arc<Model>> = SEGMENTS.iter().map(|p| open(p)).collect();
    let images: Vec<Vec<u8>> = (0..6).map(|k| common::noise(300 * 300 * 3, k + 1)).collect();
    let expected: Vec<_> = images.iter().map(|img| chain(&rt, &segs, img)).collect();
    let before: Vec<u64> = rt.metrics().iter().map(|m| m.inferences).collect();
    let mut p = Pipeline::new(&rt, &segs, 2, &one_thread()).unwrap();
    // Stream them in while reading results out, in order.
    let mut got = Vec::new();
    for img in &images {
        p.send(vec![("normalized_input_image_tensor".into(), img.clone())]).unwrap();
        if p.pending() > 2 {
            got.push(p.recv().unwrap());
        }
    }
    while p.pending() > 0 {
        got.push(p.recv().unwrap());
    }
    assert_eq!(got, expected);
    let ran: Vec<u64> = rt.metrics().iter().zip(&before).map(|(m, b)| m.inferences - b).collect();
    // Segment k runs on device k % devices.
    let mut want = vec![0u64; devices];
    for k in 0..3 {
        want[k % devices] += images.len() as u64;
    }
    assert_eq!(ran, want, "{devices} devices");
    for sim in rt.sims() {
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }
}

#[test]
fn ssd_segments_pipelined_on_three_devices() {
    pipeline_on(3);
}

#[test]
fn ssd_segments_pipelined_on_fewer_devices() {
    pipeline_on(2);
    pipeline_on(1);
}

#[test]
fn one_model_data_parallel_on_four_devices() {
    // The devices take their modelled time for real, so a busy device hands work to the others
    // (with no time at all one device is always free and keeps everything, rightly).
    let time = TimeModel { realtime: true, ..TimeModel::usb3() };
    let rt = Simulated::usb(4, time, OracleChoice::Twin, RuntimeOptions::default()).unwrap();
    let model = open("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let mut twin = Interpreter::new(open("mobilenet_v1_0.25_128_quant.tflite"), &one_thread()).unwrap();
    let mut pool = Pool::new(&rt, model, 8, 4, &one_thread()).unwrap();
    let inputs: Vec<Vec<u8>> = (0..64).map(|k| common::noise(128 * 128 * 3, k)).collect();
    let mut outs = Vec::new();
    for x in &inputs {
        pool.send(vec![x.clone()]).unwrap();
        if pool.pending() > 8 {
            outs.push(pool.recv().unwrap());
        }
    }
    while pool.pending() > 0 {
        outs.push(pool.recv().unwrap());
    }
    for (x, out) in inputs.iter().zip(&outs) {
        twin.set_input(0, x).unwrap();
        twin.invoke().unwrap();
        assert_eq!(out[0], twin.output(0).unwrap());
    }
    let m = rt.metrics();
    assert_eq!(m.iter().map(|d| d.inferences).sum::<u64>(), 64);
    for d in &m {
        assert!(d.inferences > 0, "every device works: {m:?}");
        assert!(d.cache_misses <= 1, "each device loads the parameters once: {m:?}");
    }
}

/// Queues `rounds` inferences of each model, interleaved (A, B, C, A, ...), while the device is
/// held, then lets it run them; returns the parameter bytes it sent.
fn turns(policy: Policy, models: &[&str], rounds: usize) -> u64 {
    let options = RuntimeOptions::default().policy(policy);
    let rt = Simulated::usb(1, TimeModel::zero(), OracleChoice::Seeded, options).unwrap();
    let mut pools: Vec<Pool> =
        models.iter().map(|m| Pool::new(&rt, open(m), rounds, rounds, &one_thread()).unwrap()).collect();
    let sizes: Vec<usize> = models
        .iter()
        .map(|m| edgetpu::device::program::Program::for_model(&open(m)).unwrap().input_sizes().next().unwrap())
        .collect();
    {
        let _hold = rt.hold();
        let mut queued = 0;
        for r in 0..rounds {
            for (k, pool) in pools.iter_mut().enumerate() {
                pool.send(vec![common::noise(sizes[k], r as u32)]).unwrap();
                queued += 1;
                // Wait until the job is in the device queue, so that the order is A, B, C, A, ...
                let start = std::time::Instant::now();
                while rt.queue_depth() < queued {
                    assert!(start.elapsed() < Duration::from_secs(30), "the job never reached the queue");
                    std::thread::yield_now();
                }
            }
        }
    }
    for pool in &mut pools {
        for _ in 0..rounds {
            pool.recv().unwrap();
        }
    }
    rt.metrics()[0].parameter_bytes
}

#[test]
fn the_residency_scheduler_sends_fewer_parameter_bytes_than_first_come_first_served() {
    let models = [
        "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
        "mobilenet_v1_0.5_160_quant_edgetpu.tflite",
        "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
    ];
    let fifo = turns(Policy::Fifo, &models, 4);
    let ours = turns(Policy::Residency, &models, 4);
    assert!(ours * 3 <= fifo, "residency {ours} B vs first-come-first-served {fifo} B");
    // Co-compiled models share the cache: each loads once under either policy.
    let cocompiled = [
        "cocompilation/mobilenet_v1_0.25_128_quant_cocompiled_with_mobilenet_v1_0.5_160_quant_edgetpu.tflite",
        "cocompilation/mobilenet_v1_0.5_160_quant_cocompiled_with_mobilenet_v1_0.25_128_quant_edgetpu.tflite",
    ];
    let (fifo, ours) = (turns(Policy::Fifo, &cocompiled, 4), turns(Policy::Residency, &cocompiled, 4));
    assert!(ours <= fifo, "residency {ours} B vs first-come-first-served {fifo} B");
}

#[test]
fn runtime_and_interpreter_can_be_shared_and_sent() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Runtime>();
    send::<Interpreter>();
    send::<Pool>();
    send::<Pipeline>();
}

#[test]
fn many_threads_many_models_two_devices() {
    let rt = Arc::new(Simulated::usb(2, TimeModel::zero(), OracleChoice::Twin, RuntimeOptions::default()).unwrap());
    let cases = [
        ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mobilenet_v1_0.25_128_quant.tflite"),
        ("mobilenet_v1_0.5_160_quant_edgetpu.tflite", "mobilenet_v1_0.5_160_quant.tflite"),
        ("tools/split_concat_edgetpu.tflite", "tools/split_concat.tflite"),
    ];
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..6 {
        let (compiled, twin) = cases[t % cases.len()];
        let rt = rt.clone();
        let done = done_tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut tpu = rt.interpreter(open(compiled), &one_thread()).unwrap();
            let mut cpu = Interpreter::new(open(twin), &one_thread()).unwrap();
            for r in 0..15u32 {
                for i in 0..cpu.inputs().len() {
                    let x = common::noise(cpu.inputs()[i].byte_len(), r * 31 + t as u32 * 7 + i as u32);
                    cpu.set_input(i, &x).unwrap();
                    tpu.set_input(i, &x).unwrap();
                }
                cpu.invoke().unwrap();
                tpu.invoke().unwrap();
                for j in 0..cpu.outputs().len() {
                    assert_eq!(tpu.output(j).unwrap(), cpu.output(j).unwrap(), "{compiled} thread {t} round {r}");
                }
            }
            done.send(t).unwrap();
        }));
    }
    drop(done_tx);
    for _ in 0..6 {
        done_rx.recv_timeout(Duration::from_secs(300)).expect("a thread is stuck: deadlock?");
    }
    for h in handles {
        h.join().expect("a thread failed");
    }
    let m = rt.metrics();
    assert_eq!(m.iter().map(|d| d.inferences).sum::<u64>(), 6 * 15);
    for sim in rt.sims() {
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }
}

#[test]
fn models_that_fit_are_pinned_one_per_device_and_never_reloaded() {
    let rt = Simulated::usb(3, TimeModel::zero(), OracleChoice::Seeded, RuntimeOptions::default()).unwrap();
    let models = [
        "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
        "mobilenet_v1_0.5_160_quant_edgetpu.tflite",
        "mobilenet_v1_0.75_192_quant_edgetpu.tflite",
    ];
    let mut its: Vec<Interpreter> = models.iter().map(|m| rt.interpreter(open(m), &one_thread()).unwrap()).collect();
    for round in 0..10 {
        for it in &mut its {
            let n = it.inputs()[0].byte_len();
            it.set_input(0, &common::noise(n, round)).unwrap();
            it.invoke().unwrap();
        }
    }
    let m = rt.metrics();
    for d in &m {
        assert_eq!((d.inferences, d.cache_misses), (10, 1), "one model per device: {m:?}");
    }
}
