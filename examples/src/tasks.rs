//! One call per task on a [`Session`]: image in, result out, with the inference time.
//!
//! Each call does the same three steps with `edgetpu::vision`: write the image into the model's
//! image input (resized to the input's size; the returned transform maps the model's coordinates
//! back to the image), invoke, and decode the outputs.

use crate::Session;
use anyhow::{Context, Result};
use edgetpu::cpu::Interpreter;
use edgetpu::vision::{
    self, image::DynamicImage, Class, ClassifyOptions, DetectOptions, Detection, Labels, Pose, Segmentation, Transform,
};
use std::time::Instant;

/// A result and the milliseconds `invoke` took to make it.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    /// The result.
    pub value: T,
    /// Milliseconds spent in `invoke` (CPU ops and Edge TPU steps).
    pub invoke_ms: f64,
}

impl Session {
    /// Writes `image` into the model's image input, fills any other input with zeros (the empty
    /// state of recurrent models such as video detectors), and invokes. Returns the transform from
    /// input to image pixels and the milliseconds `invoke` took.
    pub fn run_image(&mut self, image: &DynamicImage) -> Result<(Transform, f64)> {
        let index = vision::find_image_input(&self.it.inputs())?;
        vision::fill_other_inputs(&mut self.it, index)?;
        let transform = vision::set_image(&mut self.it, image, &self.preprocess).with_context(|| {
            format!("preparing a {}x{} image for {}", image.width(), image.height(), self.model_name())
        })?;
        let start = Instant::now();
        self.it.invoke()?;
        Ok((transform, start.elapsed().as_secs_f64() * 1e3))
    }

    /// [`Self::run_image`], then `decode` on the interpreter's outputs.
    fn timed<T>(
        &mut self,
        image: &DynamicImage,
        decode: impl FnOnce(&Interpreter, &Transform) -> edgetpu::Result<T>,
    ) -> Result<Timed<T>> {
        let (transform, invoke_ms) = self.run_image(image)?;
        Ok(Timed { value: decode(&self.it, &transform)?, invoke_ms })
    }

    /// The `top_k` best classes of `image`.
    pub fn classify(
        &mut self,
        image: &DynamicImage,
        top_k: usize,
        labels: Option<&Labels>,
    ) -> Result<Timed<Vec<Class>>> {
        let options = ClassifyOptions { top_k, ..ClassifyOptions::default() };
        self.timed(image, |it, _| vision::classify(it, &options, labels))
    }

    /// The objects in `image` scoring at least `threshold`, boxes in the image's pixels (the model
    /// must end in `TFLite_Detection_PostProcess`, as SSD and EfficientDet models do).
    pub fn detect(
        &mut self,
        image: &DynamicImage,
        threshold: f32,
        labels: Option<&Labels>,
    ) -> Result<Timed<Vec<Detection>>> {
        let options = DetectOptions { threshold, ..DetectOptions::default() };
        self.timed(image, |it, t| vision::detect(it, t, &options, labels))
    }

    /// A class per pixel of `image` (DeepLab-style models).
    pub fn segment(&mut self, image: &DynamicImage) -> Result<Timed<Segmentation>> {
        self.timed(image, |it, t| vision::segment(it, t, 0))
    }

    /// The poses in `image` scoring at least `threshold` (MoveNet or PoseNet models).
    pub fn pose(&mut self, image: &DynamicImage, threshold: f32) -> Result<Timed<Vec<Pose>>> {
        self.timed(image, |it, t| vision::pose(it, t, threshold))
    }

    fn model_name(&self) -> String {
        self.model_path.display().to_string()
    }
}
