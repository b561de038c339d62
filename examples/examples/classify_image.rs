//! Classifies an image: the top classes with their scores.
//!
//! ```sh
//! edgetpu models fetch mobilenet_v2_1.0_224      # once: the model, its compiled twin, its labels
//! cargo run --release -p edgetpu-examples --example classify_image -- --model mobilenet_v2_1.0_224 --image cat.jpg
//! ```
//!
//! `--model` also takes a file (`mobilenet_v2_1.0_224_quant.tflite`); labels then come from the
//! model's metadata, or from `--labels FILE`.

use anyhow::Result;
use clap::Parser;
use edgetpu_examples::ImageTask;

/// Classifies an image: the top classes with their scores.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    task: ImageTask,
    /// How many classes to print.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The model on the Coral if one is attached, else on the CPU (or where --device says).
    let (mut session, labels, image) = args.task.open()?;

    // Resize the image into the input tensor, invoke, and read the best scores.
    let result = session.classify(&image, args.top_k, labels.as_ref())?;
    for c in &result.value {
        println!("{:.4}  {:>4}  {}", c.score, c.id, c.label.as_deref().unwrap_or("?"));
    }
    println!("inference: {:.2} ms", result.invoke_ms);
    Ok(())
}
