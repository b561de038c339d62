//! What the running commands share: loading a model into a CPU interpreter, labels, image options.

use anyhow::{Context, Result};
use edgetpu::cpu::{Interpreter, Options, TensorInfo};
use edgetpu::vision::{self, Filter, Fit, Labels, Preprocess, Transform};
use edgetpu::Model;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `--model`, `--threads` and where to run.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// The model file (.tflite: a CPU model, or a compiled *_edgetpu.tflite one), or the name of a
    /// catalog model fetched with `edgetpu models fetch` (the compiled variant for Edge TPU devices).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Threads for the CPU kernels (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub device: crate::tpu::DeviceArgs,
}

/// `--image` and how it becomes the input tensor.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// The image (PNG, JPEG or BMP).
    #[arg(long, short)]
    pub image: PathBuf,
    /// How the image is fitted to the input size: stretch (ignore the aspect ratio), letterbox
    /// (keep it and pad) or center-crop.
    #[arg(long, default_value = "stretch")]
    pub fit: Fit,
    /// Resampling filter when the image is not the input size: pil-lanczos (bit-exact Pillow
    /// LANCZOS, as pycoral's Python examples and the test goldens), lanczos3 (the image crate's),
    /// pil-bilinear, triangle or nearest.
    #[arg(long, default_value = "pil-lanczos")]
    pub filter: Filter,
    /// Refuse images wider or higher than this many pixels (from the header, before decoding).
    #[arg(long, default_value_t = 16384, value_name = "PIXELS")]
    pub max_image_side: u32,
    /// Refuse images whose decoding would allocate more than this many MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_image_mib: u64,
}

impl ImageArgs {
    /// The decode limits of `--max-image-side` and `--max-image-mib`.
    pub fn limits(&self) -> vision::ImageLimits {
        vision::ImageLimits { max_side: self.max_image_side, max_alloc: self.max_image_mib.saturating_mul(1 << 20) }
    }
}

/// An interpreter and what it took to make it.
pub struct Loaded {
    pub it: Interpreter,
    /// Milliseconds to open and plan the model (and open the devices).
    pub load_ms: f64,
    /// The devices a compiled model's Edge TPU steps run on (dropped after `it`).
    pub runtime: Option<edgetpu::sched::Runtime>,
    /// The label file of the catalog model `--model` named, if it was fetched.
    pub catalog_labels: Option<PathBuf>,
}

impl Loaded {
    /// What ran the model, for the `invoke:` line.
    pub fn device_note(&self) -> String {
        crate::tpu::note(self.runtime.as_ref())
    }

    /// The label file to use: `--labels`, else the catalog model's label file, if any.
    pub fn labels_file(&self, given: Option<&Path>) -> Option<PathBuf> {
        given.map(Path::to_path_buf).or_else(|| self.catalog_labels.clone())
    }
}

/// Opens `args.model` (a path, or a fetched catalog model: [`crate::models::resolve`]) and plans
/// it (CPU ops on the CPU, Edge TPU steps on the devices of `--device`) for the tensors `outputs`
/// (`None`: the model outputs), with only the nodes those depend on.
pub fn load(args: &ModelArgs, outputs: Option<Vec<usize>>) -> Result<Loaded> {
    let resolved = crate::models::resolve(&args.model, || crate::models::want_for_device(&args.device.device))?;
    let start = Instant::now();
    let model = Arc::new(Model::open(&resolved.path)?);
    let options = Options { threads: args.threads, outputs, ..Options::default() };
    let runtime = crate::tpu::runtime_for(&resolved.path, &model, &args.device)?;
    let it = match &runtime {
        Some(rt) => rt.interpreter(model, &options)?,
        None => Interpreter::new(model, &options)?,
    };
    Ok(Loaded { it, load_ms: ms(start), runtime, catalog_labels: resolved.labels })
}

/// Milliseconds since `start`.
pub fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Labels from `--labels`, else from the model's metadata, else none.
pub fn labels(file: Option<&Path>, model: &Model) -> Result<Option<Labels>> {
    match file {
        Some(p) => Ok(Some(Labels::from_file(p)?)),
        None => Ok(Labels::from_model(model)?),
    }
}

/// Where labels came from, for the JSON output.
pub fn labels_source(file: Option<&Path>, labels: Option<&Labels>) -> Value {
    match (file, labels) {
        (Some(p), _) => json!(p.display().to_string()),
        (None, Some(_)) => json!("model metadata"),
        (None, None) => Value::Null,
    }
}

/// Decodes `args.image`, writes it into the model's image input, fills the other inputs with
/// their zero point, and returns the image and the transform from image to input pixels.
pub fn set_image(it: &mut Interpreter, args: &ImageArgs) -> Result<(vision::image::DynamicImage, Transform)> {
    // A file that does not decode is not a model argument problem: no hint for it.
    let image = vision::open_image_within(&args.image, &args.limits()).map_err(|e| match e.kind() {
        edgetpu::ErrorKind::InvalidArgument => anyhow::anyhow!("{e}"),
        _ => anyhow::Error::from(e),
    })?;
    let index = vision::find_image_input(&it.inputs())?;
    vision::fill_other_inputs(it, index)?;
    let pre = Preprocess { fit: args.fit, filter: args.filter, ..Preprocess::default() };
    let t = vision::set_image(it, &image, &pre).with_context(|| format!("preparing {}", args.image.display()))?;
    Ok((image, t))
}

/// Invokes once and returns the milliseconds it took.
pub fn invoke(it: &mut Interpreter) -> Result<f64> {
    let start = Instant::now();
    it.invoke()?;
    Ok(ms(start))
}

/// A tensor's description for JSON output.
pub fn tensor_json(t: &TensorInfo) -> Value {
    json!({
        "index": t.index,
        "name": t.name,
        "shape": t.shape,
        "type": t.dtype.name(),
        "quantization": t.quant.as_ref().map(|q| json!({"scale": q.scale, "zero_point": q.zero_point})),
    })
}
