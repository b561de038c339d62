//! One model on every attached Coral at once (data parallelism): each image goes to whichever
//! device is free, and the results come back in order.
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example multi_tpu -- \
//!     --model mobilenet_v1_1.0_224_quant_edgetpu.tflite --image cat.bmp --image bird.bmp --repeat 50
//! ```
//!
//! `--device auto` (the default) takes every attached Coral, or two simulated ones when none is
//! attached; `--device usb:0,usb:1` or `--device sim:0,sim:1,sim:2` choose.

use anyhow::Result;
use clap::Parser;
use edgetpu::Model;
use edgetpu_examples::{device, parallel};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// One model on every attached Coral at once.
#[derive(Parser)]
struct Args {
    /// A compiled classification model (*_edgetpu.tflite), or a catalog name (mobilenet_v1_1.0_224).
    #[arg(long)]
    model: PathBuf,
    /// Images to classify (repeat the option for several).
    #[arg(long, required = true)]
    image: Vec<PathBuf>,
    /// Classify the images this many times, to give the devices enough work to measure.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Label file (default: a catalog model's label file, else the labels packed in the model).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// auto (every attached Coral, else two simulated ones), or a list: usb:0,usb:1 or sim:0,sim:1.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // A catalog name or a CPU model stands for its compiled twin: only that runs on the devices.
    let (path, catalog_labels) = device::resolve_model(&args.model)?;
    let path = device::compiled_twin(&path).unwrap_or(path);
    let model = Arc::new(Model::open(&path)?);
    let labels = edgetpu_examples::labels(args.labels.as_deref().or(catalog_labels.as_deref()), &model)?;

    let list = device::device_list(&args.device, 2, device::attached_corals)?;
    let runtime = device::open_runtime(&list)?;
    println!("devices: {}", runtime.devices().join(", "));
    if runtime.is_simulated() {
        println!("{}", device::simulated_outputs(&path));
    }

    let images = args.image.iter().map(|p| edgetpu_examples::open_image(p)).collect::<Result<Vec<_>>>()?;
    let work: Vec<_> = images.iter().cycle().take(images.len() * args.repeat.max(1)).cloned().collect();

    let start = Instant::now();
    let results = parallel::classify_all(&runtime, model, &work, 1, labels.as_ref())?;
    let secs = start.elapsed().as_secs_f64();

    for (path, classes) in args.image.iter().zip(&results) {
        if let Some(c) = classes.first() {
            println!("{}: {} ({:.3})", path.display(), c.label.as_deref().unwrap_or("?"), c.score);
        }
    }
    println!("{} inferences in {secs:.2} s: {:.1} per second", work.len(), work.len() as f64 / secs);
    // How the work spread over the devices.
    for m in runtime.metrics() {
        println!("{}: {} inferences", m.name, m.inferences);
    }
    Ok(())
}
