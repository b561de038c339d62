//! A model compiled into segments (`edgetpu_compiler --num_segments N`), pipelined: segment k
//! runs on device k, so N devices work on N images at once.
//!
//! ```sh
//! cargo run --release -p edgetpu-examples --example pipeline -- --image kite_and_cold.jpg \
//!     --segments ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite,\
//! ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_3_edgetpu.tflite,\
//! ssd_mobilenet_v2_coco_quant_postprocess_segment_2_of_3_edgetpu.tflite
//! ```
//!
//! `--device auto` (the default) takes every attached Coral, or one simulated Coral per segment
//! when none is attached (the simulator cannot run Edge TPU code: its outputs are stand-ins, so
//! the detections are too). With fewer devices than segments, segment k runs on device k mod n.

use anyhow::Result;
use clap::Parser;
use edgetpu::vision::draw;
use edgetpu::Model;
use edgetpu_examples::{device, parallel};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A model compiled into segments, one device per segment.
#[derive(Parser)]
struct Args {
    /// The segments of a detection model, in order, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    segments: Vec<PathBuf>,
    /// The image (PNG, JPEG or BMP).
    #[arg(long)]
    image: PathBuf,
    /// Run the image this many times, to measure the pipeline's rate.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Label file (for COCO models: coco_labels.txt).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Only objects scoring at least this much.
    #[arg(long, default_value_t = 0.4)]
    threshold: f32,
    /// auto (every attached Coral, else one simulated per segment), or a list: usb:0,usb:1,usb:2.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let list = device::device_list(&args.device, args.segments.len(), device::attached_corals)?;
    let runtime = device::open_runtime(&list)?;
    println!("devices: {}", runtime.devices().join(", "));
    if runtime.is_simulated() {
        // Segments have no CPU twins: say what the simulator returns instead.
        for s in &args.segments {
            println!("{}", device::simulated_outputs(s));
        }
    }

    let segments = args.segments.iter().map(|p| Ok(Arc::new(Model::open(p)?))).collect::<Result<Vec<_>>>()?;
    let labels = args.labels.as_deref().map(edgetpu::vision::Labels::from_file).transpose()?;
    let image = edgetpu_examples::open_image(&args.image)?;
    let work = vec![image; args.repeat.max(1)];

    let start = Instant::now();
    let results = parallel::detect_pipelined(&runtime, &segments, &work, args.threshold, labels.as_ref())?;
    let secs = start.elapsed().as_secs_f64();

    for d in results.first().into_iter().flatten() {
        println!("{:.3}  {}", d.score, draw::detection_name(d));
    }
    println!(
        "{} images through {} segments in {secs:.2} s: {:.1} per second",
        work.len(),
        segments.len(),
        work.len() as f64 / secs
    );
    for m in runtime.metrics() {
        println!("{}: {} segment runs", m.name, m.inferences);
    }
    Ok(())
}
