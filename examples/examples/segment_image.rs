//! Semantic segmentation: a class for every pixel, written as the image with the classes
//! blended over it, and the share of the image each class covers.
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example segment_image -- \
//!     --model deeplabv3_mnv2_dm05_pascal_quant.tflite --labels pascal_voc_segmentation_labels.txt \
//!     --image bird.bmp --output segmentation.png
//! ```
//!
//! or, with the catalog (`edgetpu models fetch deeplabv3_mnv2_pascal` once):
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example segment_image -- --model deeplabv3_mnv2_pascal --image bird.bmp
//! ```

use anyhow::Result;
use clap::Parser;
use edgetpu_examples::ImageTask;
use std::path::PathBuf;

/// A class for every pixel of an image, blended over it.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    task: ImageTask,
    /// Where to write the image with the classes over it.
    #[arg(long, default_value = "segmentation.png")]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (mut session, labels, image) = args.task.open()?;

    // The mask comes back at the image's size (the model's own is usually smaller).
    let mask = session.segment(&image)?;
    let total = mask.value.classes.len().max(1) as f64;
    for (id, pixels) in mask.value.pixels_per_class() {
        let name = labels.as_ref().and_then(|l| l.get(id as usize)).unwrap_or("?");
        println!("{id:>4}  {name:<16} {:5.1} %", 100.0 * pixels as f64 / total);
    }
    println!("inference: {:.2} ms", mask.invoke_ms);

    // Each class in its PASCAL VOC colour, half over the image; the background left as it is.
    let overlay = mask.value.overlay(&image.to_rgb8(), 0.5)?;
    edgetpu_examples::save_image(&overlay, &args.output)?;
    println!("wrote {}", args.output.display());
    Ok(())
}
