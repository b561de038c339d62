//! `Interpreter::invoke` does not touch the heap: a counting global allocator sees no allocation
//! during invocations after the first (on two threads, at most the thread pool's occasional
//! job-queue block).

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(path: &str, threads: usize, runs: usize) -> usize {
    let model = Arc::new(Model::open(common::testdata().join(path)).unwrap());
    let mut it = Interpreter::new(model, &Options { threads, ..Options::default() }).unwrap();
    for i in 0..it.inputs().len() {
        let n = it.input_mut(i).unwrap().len();
        it.set_input(i, &vec![7u8; n]).unwrap();
    }
    it.invoke().unwrap();
    // The counter sees every thread of the process, the test harness's too, which may still be
    // starting up during the first window: the fewest allocations of three windows counts (an
    // invoke that allocates shows in each).
    (0..3)
        .map(|_| {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..runs {
                it.invoke().unwrap();
            }
            ALLOCATIONS.load(Ordering::Relaxed) - before
        })
        .min()
        .unwrap_or(0)
}

/// Every CPU model of the test data that has goldens (one subgraph; the ones with float inputs
/// get 7-byte patterns, which is fine for counting allocations).
const MODELS: &[&str] = &[
    "mobilenet_v1_0.25_128_quant.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "keras_lstm_mnist_ptq.tflite",
    "movenet_single_pose_lightning_ptq.tflite",
    "detection/ssd_mobilenet_v2_coco_postprocess_tail.tflite",
    "detection/detection_postprocess_uint8_fast_nms.tflite",
    "automl_video_ondevice/traffic_model.tflite",
    "posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite",
    "tools/split_concat.tflite",
];

/// One test (the allocation counter is process-wide, so the checks must not run concurrently).
#[test]
fn invoke_does_not_allocate() {
    let counts: Vec<(&str, usize)> = MODELS.iter().map(|m| (*m, allocations(m, 1, 5))).collect();
    assert!(counts.iter().all(|c| c.1 == 0), "allocations in 5 invocations on one thread: {counts:?}");
    // On two threads the kernels split work with `join` inside one pool entry per invocation;
    // the thread pool's queues allocate a block now and then, independent of the model: far less
    // than one allocation per invocation.
    let counts: Vec<(&str, usize)> = MODELS.iter().map(|m| (*m, allocations(m, 2, 20))).collect();
    assert!(counts.iter().all(|c| c.1 <= 10), "allocations in 20 invocations on two threads: {counts:?}");
}
