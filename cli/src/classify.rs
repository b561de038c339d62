//! `edgetpu classify`: the top classes of an image.

use crate::common::{self, ImageArgs, ModelArgs};
use anyhow::Result;
use edgetpu::vision::{self, ClassifyOptions};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `edgetpu classify`.
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
    /// Classes to show at most.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Only classes scoring at least this much (dequantized score).
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f32,
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
    let options = ClassifyOptions { top_k: args.top_k, threshold: args.threshold, output: 0 };
    let classes = vision::classify(it, &options, labels.as_ref())?;
    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "image": args.image.image.display().to_string(),
            "image_size": [image.width(), image.height()],
            "labels": common::labels_source(labels_file.as_deref(), labels.as_ref()),
            "transform": transform,
            "output": common::tensor_json(it.outputs()[0]),
            "load_ms": loaded.load_ms,
            "invoke_ms": invoke_ms,
            "classes": classes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if classes.is_empty() {
            println!("no class scores at least {}", args.threshold);
        }
        for c in &classes {
            println!("{:.5}  {:>5}  {}", c.score, c.id, c.label.as_deref().unwrap_or(""));
        }
        println!("invoke: {invoke_ms:.2} ms on {} threads{}", it.threads(), loaded.device_note());
    }
    Ok(())
}
