//! `edgetpu detect`: objects in an image, optionally drawn onto it.

use crate::common::{self, ImageArgs, ModelArgs};
use crate::draw;
use anyhow::Result;
use edgetpu::vision::{self, DetectOptions, Detection};
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

fn name(d: &Detection) -> String {
    d.label.clone().unwrap_or_else(|| format!("class {}", d.id))
}

pub fn run(args: &Args) -> Result<()> {
    let mut loaded = common::load(&args.model, Vec::new())?;
    let it = &mut loaded.it;
    let labels = common::labels(args.labels.as_deref(), it.model())?;
    let (image, transform) = common::set_image(it, &args.image)?;
    let invoke_ms = common::invoke(it)?;
    let options =
        DetectOptions { threshold: args.threshold, max: args.max.unwrap_or(usize::MAX), ..DetectOptions::default() };
    let detections = vision::detect(it, &transform, &options, labels.as_ref())?;

    if let Some(out) = &args.output {
        let mut canvas = image.to_rgb8();
        let side = canvas.width().min(canvas.height()) as i64;
        let scale = (side / 240).clamp(1, 4);
        for d in &detections {
            let b = &d.bbox;
            let (x0, y0) = (b.xmin.floor() as i64, b.ymin.floor() as i64);
            let (x1, y1) = (b.xmax.ceil() as i64, b.ymax.ceil() as i64);
            draw::outline(&mut canvas, x0, y0, x1, y1, scale, draw::colour(d.id));
        }
        // Labels after all boxes, so that no box is drawn over a label.
        for d in &detections {
            let text = format!("{} {:.0}%", name(d), d.score * 100.0);
            draw::label(&mut canvas, d.bbox.xmin as i64, d.bbox.ymin as i64, &text, scale, draw::colour(d.id));
        }
        canvas.save(out).map_err(|e| anyhow::anyhow!("{}: cannot write the image: {e}", out.display()))?;
    }

    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "image": args.image.image.display().to_string(),
            "image_size": [image.width(), image.height()],
            "labels": common::labels_source(args.labels.as_deref(), labels.as_ref()),
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
            let b = &d.bbox;
            println!("{:.3}  {:<20}  x {:.1}..{:.1}  y {:.1}..{:.1}", d.score, name(d), b.xmin, b.xmax, b.ymin, b.ymax);
        }
        if let Some(out) = &args.output {
            println!("wrote {}", out.display());
        }
        println!("invoke: {invoke_ms:.2} ms on {} threads{}", it.threads(), loaded.device_note());
    }
    Ok(())
}
