//! Pose estimation: the keypoints of the people in an image, drawn as skeletons.
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example pose_image -- \
//!     --model movenet_single_pose_lightning_ptq.tflite --image squat.bmp --output pose.png
//! ```
//!
//! or, with the catalog (`edgetpu models fetch movenet_lightning` once):
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example pose_image -- --model movenet_lightning --image squat.bmp
//! ```
//!
//! Works with MoveNet single-pose models and PoseNet models that end in Coral's decoder op
//! (keypoints have fixed names: `--labels` is not used).

use anyhow::Result;
use clap::Parser;
use edgetpu::vision::draw;
use edgetpu_examples::ImageTask;
use std::path::PathBuf;

/// The poses of the people in an image, drawn as skeletons.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    task: ImageTask,
    /// Only poses and keypoints scoring at least this much.
    #[arg(long, default_value_t = 0.3)]
    threshold: f32,
    /// Where to write the image with the skeletons drawn on it.
    #[arg(long, default_value = "pose.png")]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (mut session, _, image) = args.task.open()?;

    // Keypoints come back in the image's own pixels.
    let poses = session.pose(&image, args.threshold)?;
    let mut canvas = image.to_rgb8();
    for (i, pose) in poses.value.iter().enumerate() {
        println!("pose {i}: score {:.3}", pose.score);
        for k in pose.keypoints.iter().filter(|k| k.score >= args.threshold) {
            println!("  {:<15} x {:6.1}  y {:6.1}  ({:.2})", k.name, k.x, k.y, k.score);
        }
        draw::pose(&mut canvas, pose, args.threshold);
    }
    println!("inference: {:.2} ms", poses.invoke_ms);
    edgetpu_examples::save_image(&canvas, &args.output)?;
    println!("wrote {}", args.output.display());
    Ok(())
}
