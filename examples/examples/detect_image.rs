//! Detects objects in an image and writes the image with their boxes drawn on it.
//!
//! ```sh
//! edgetpu models fetch ssd_mobilenet_v2_coco     # once: the model, its compiled twin, its labels
//! cargo run --release -p edgetpu-examples --example detect_image -- \
//!     --model ssd_mobilenet_v2_coco --image kite_and_cold.jpg --output detections.png
//! ```
//!
//! The model must end in `TFLite_Detection_PostProcess` (SSD, SSDLite, EfficientDet-Lite).

use anyhow::Result;
use clap::Parser;
use edgetpu::vision::draw;
use edgetpu_examples::ImageTask;
use std::path::PathBuf;

/// Detects objects in an image and writes the image with their boxes drawn on it.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    task: ImageTask,
    /// Only objects scoring at least this much.
    #[arg(long, default_value_t = 0.4)]
    threshold: f32,
    /// Where to write the annotated image (.png, .jpg or .bmp).
    #[arg(long, default_value = "detections.png")]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (mut session, labels, image) = args.task.open()?;

    // Boxes come back in the image's own pixels, whatever the model's input size.
    let found = session.detect(&image, args.threshold, labels.as_ref())?;
    for d in &found.value {
        println!("{d}"); // score, label, box
    }
    println!("{} objects; inference: {:.2} ms", found.value.len(), found.invoke_ms);

    // Draw each box and its label, and save.
    let mut canvas = image.to_rgb8();
    draw::detections(&mut canvas, &found.value);
    edgetpu_examples::save_image(&canvas, &args.output)?;
    println!("wrote {}", args.output.display());
    Ok(())
}
