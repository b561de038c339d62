//! `edgetpu segment`: a class per pixel, as a mask image at the original image's size.

use crate::common::{self, ImageArgs, ModelArgs};
use anyhow::Result;
use edgetpu::vision;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// Arguments of `edgetpu segment`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub image: ImageArgs,
    /// The mask image to write, at the original image's size: each pixel's class id as a gray
    /// level (or, with --color, the PASCAL VOC colour of the class). Format from the extension.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Write the mask in the PASCAL VOC colour palette instead of class ids.
    #[arg(long)]
    pub color: bool,
    /// Also write the image with the coloured classes blended over it.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Label file (`index label` lines or one label per line); default: the labels packed in the
    /// model, if any.
    #[arg(long)]
    pub labels: Option<PathBuf>,
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
    let mask = vision::segment(it, &transform, 0)?;

    let save_err =
        |p: &PathBuf, e: vision::image::ImageError| anyhow::anyhow!("{}: cannot write the image: {e}", p.display());
    if args.color {
        mask.colorize().save(&args.output).map_err(|e| save_err(&args.output, e))?;
    } else {
        mask.to_gray().save(&args.output).map_err(|e| save_err(&args.output, e))?;
    }
    if let Some(p) = &args.overlay {
        mask.overlay(&image.to_rgb8(), 0.5)?.save(p).map_err(|e| save_err(p, e))?;
    }

    let name = |id: u16| labels.as_ref().and_then(|l| l.get(id as usize)).map(str::to_string);
    let counts = mask.pixels_per_class();
    let total = mask.classes.len().max(1);
    let mut per_class = Map::new();
    for (&id, &n) in &counts {
        per_class.insert(name(id).unwrap_or_else(|| id.to_string()), json!(n));
    }
    if args.json {
        let classes: Vec<Value> =
            counts.iter().map(|(&id, &n)| json!({"id": id, "label": name(id), "pixels": n})).collect();
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "image": args.image.image.display().to_string(),
            "width": mask.width,
            "height": mask.height,
            "labels": common::labels_source(labels_file.as_deref(), labels.as_ref()),
            "transform": transform,
            "load_ms": loaded.load_ms,
            "invoke_ms": invoke_ms,
            "output": args.output.display().to_string(),
            "pixels_per_class": per_class,
            "classes": classes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (&id, &n) in &counts {
            let label = name(id).unwrap_or_default();
            println!("{id:>5}  {label:<20}  {n:>9} px  {:5.1} %", 100.0 * n as f64 / total as f64);
        }
        println!("wrote {} ({}x{})", args.output.display(), mask.width, mask.height);
        println!("invoke: {invoke_ms:.2} ms on {} threads{}", it.threads(), loaded.device_note());
    }
    Ok(())
}
