//! `edgetpu detect`: objects in an image, optionally drawn onto it.

use crate::common::{self, ImageArgs, ModelArgs};
use crate::draw;
use anyhow::Result;
use edgetpu::vision::{self, DetectOptions};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `edgetpu detect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Label file (`index label` lines or one label per line); default: the labels packed in the
    /// model, if any.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Only detections scoring at least this much.
    #[arg(long, default_value_t = 0.4)]
    pub threshold: f32,
    /// Detections to report at most.
    #[arg(long)]
    pub max: Option<usize>,
    /// Write the image with the boxes and their labels drawn on it (format from the extension:
    /// .png, .jpg or .bmp).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let mut loaded = common::load(&args.model, None)?;
    let labels_file = loaded.labels_file(args.labels.as_deref());
    let it = &mut loaded.it;
    let labels = common::labels(labels_file.as_deref(), it.model())?;
    let (image, transform) = common::set_image(it, &args.image)?;
    let invoke_ms = common::invoke(it)?;
    let options =
        DetectOptions { threshold: args.threshold, max: args.max.unwrap_or(usize::MAX), ..DetectOptions::default() };
    let detections = vision::detect(it, &transform, &options, labels.as_ref())?;

    if let Some(out) = &args.output {
        let mut canvas = image.to_rgb8();
        draw::detections(&mut canvas, &detections);
        canvas.save(out).map_err(|e| anyhow::anyhow!("{}: cannot write the image: {e}", out.display()))?;
    }

    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "image": args.image.image.display().to_string(),
            "image_size": [image.width(), image.height()],
            "labels": common::labels_source(labels_file.as_deref(), labels.as_ref()),
            "transform": transform,
            "load_ms": loaded.load_ms,
            "invoke_ms": invoke_ms,
            "output": args.output.as_ref().map(|p| p.display().to_string()),
            "detections": detections,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if detections.is_empty() {
            println!("no detection scores at least {}", args.threshold);
        }
        for d in &detections {
            println!("{d}");
        }
        if let Some(out) = &args.output {
            println!("wrote {}", out.display());
        }
        println!("invoke: {invoke_ms:.2} ms on {} threads{}", it.threads(), loaded.device_note());
    }
    Ok(())
}
