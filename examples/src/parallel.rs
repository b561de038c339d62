//! Several Edge TPUs at once: one model data-parallel ([`classify_all`], over
//! `edgetpu::sched::pipeline::Pool`), or a model compiled into segments with each segment on its
//! own device ([`detect_pipelined`], over `edgetpu::sched::pipeline::Pipeline`).
//!
//! Both keep a few inferences in flight per device: sending blocks while the queue is full, and
//! results come back in the order the images went in.

use anyhow::{bail, Context, Result};
use edgetpu::cpu::{Options, TensorInfo};
use edgetpu::sched::pipeline::{Pipeline, Pool};
use edgetpu::sched::Runtime;
use edgetpu::vision::{
    self, image::DynamicImage, Class, ClassifyOptions, DetectOptions, Detection, Labels, Preprocess,
};
use edgetpu::Model;
use std::collections::VecDeque;
use std::sync::Arc;

/// The image input of a model, found by planning it once on `runtime`.
fn image_input(runtime: &Runtime, model: &Arc<Model>) -> Result<(TensorInfo, Vec<TensorInfo>)> {
    let probe = runtime.interpreter(model.clone(), &Options::default())?;
    let inputs = probe.inputs();
    let index = vision::find_image_input(&inputs)?;
    if inputs.len() != 1 {
        bail!("the model has {} inputs; these examples feed models with one image input", inputs.len());
    }
    Ok((inputs[index].clone(), probe.outputs().into_iter().cloned().collect()))
}

/// Inferences kept in flight: two per device, so that each device has the next one queued.
pub fn in_flight(runtime: &Runtime) -> usize {
    2 * runtime.devices().len()
}

/// The `top_k` classes of each image, classified by `model` (a compiled classifier) on every
/// device of `runtime` at once.
pub fn classify_all(
    runtime: &Runtime,
    model: Arc<Model>,
    images: &[DynamicImage],
    top_k: usize,
    labels: Option<&Labels>,
) -> Result<Vec<Vec<Class>>> {
    let (input, outputs) = image_input(runtime, &model)?;
    let scores = outputs.first().context("the model has no output")?;
    let n = in_flight(runtime);
    // `n` interpreters share the devices: any free device takes the next Edge TPU step.
    let mut pool = Pool::new(runtime, model, n, n, &Options::default())?;
    let options = ClassifyOptions { top_k, ..ClassifyOptions::default() };
    let mut results = Vec::with_capacity(images.len());
    let mut take = |pool: &mut Pool| -> Result<()> {
        let out = pool.recv()?;
        let first = out.first().context("the model returned no output")?;
        results.push(vision::classify_scores(scores, first, &options, labels)?);
        Ok(())
    };
    for image in images {
        let (bytes, _) = vision::prepare(image, &input, &Preprocess::default())?;
        pool.send(vec![bytes])?;
        if pool.pending() >= n as u64 {
            take(&mut pool)?;
        }
    }
    while pool.pending() > 0 {
        take(&mut pool)?;
    }
    Ok(results)
}

/// The detections in each image, by a detection model compiled into `segments` (in order; the
/// last one ends in `TFLite_Detection_PostProcess`), segment `k` on device `k` of `runtime`.
pub fn detect_pipelined(
    runtime: &Runtime,
    segments: &[Arc<Model>],
    images: &[DynamicImage],
    threshold: f32,
    labels: Option<&Labels>,
) -> Result<Vec<Vec<Detection>>> {
    let (first, last) = match (segments.first(), segments.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => bail!("give the segments of a model compiled with `edgetpu_compiler --num_segments N`"),
    };
    let (input, _) = image_input(runtime, first)?;
    let outputs: Vec<TensorInfo> =
        runtime.interpreter(last.clone(), &Options::default())?.outputs().into_iter().cloned().collect();
    if outputs.len() != 4 {
        bail!(
            "the last segment has {} outputs; a detection model ends in the 4 of TFLite_Detection_PostProcess",
            outputs.len()
        );
    }
    let n = in_flight(runtime);
    let mut pipeline = Pipeline::new(runtime, segments, n, &Options::default())?;
    let options = DetectOptions { threshold, ..DetectOptions::default() };
    // Each image's transform, to map its boxes back when its result comes out.
    let mut transforms = VecDeque::new();
    let mut results = Vec::with_capacity(images.len());
    let mut take = |pipeline: &mut Pipeline, transforms: &mut VecDeque<vision::Transform>| -> Result<()> {
        let out = pipeline.recv()?;
        let t = transforms.pop_front().context("a result without an image")?;
        if out.len() != outputs.len() {
            bail!("the pipeline returned {} tensors; the last segment has {} outputs", out.len(), outputs.len());
        }
        let tensor = |j: usize| (&outputs[j], &out[j].1[..]);
        results.push(vision::detect_tensors([tensor(0), tensor(1), tensor(2), tensor(3)], &t, &options, labels)?);
        Ok(())
    };
    for image in images {
        let (bytes, t) = vision::prepare(image, &input, &Preprocess::default())?;
        transforms.push_back(t);
        // The first segment's inputs go in by name; later segments find theirs by name too.
        pipeline.send(vec![(input.name.clone(), bytes)])?;
        if pipeline.pending() >= n as u64 {
            take(&mut pipeline, &mut transforms)?;
        }
    }
    while pipeline.pending() > 0 {
        take(&mut pipeline, &mut transforms)?;
    }
    Ok(results)
}
