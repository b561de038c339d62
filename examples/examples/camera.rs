//! Live object detection from a camera, with the boxes, the frame rate and the latency drawn on
//! each frame, written to a file or served as a Motion JPEG stream on localhost.
//!
//! ```sh
//! # A USB webcam (or a Raspberry Pi camera: prefix the command with `libcamerify`), viewed at
//! # http://127.0.0.1:8080/ in a browser:
//! cargo run --release -p edgetpu-examples --example camera -- \
//!     --model ssd_mobilenet_v2_coco --http 127.0.0.1:8080
//! # Without a camera: a directory of images or a Motion JPEG file, each frame written out:
//! cargo run --release -p edgetpu-examples --example camera -- \
//!     --model traffic_model.tflite --source traffic_frames --output 'out-{frame}.png'
//! ```

use anyhow::Result;
use clap::Parser;
use edgetpu::vision::{draw, Filter};
use edgetpu_examples::frames::{self, CaptureOptions, PixelFormat};
use edgetpu_examples::http::MjpegServer;
use edgetpu_examples::live::{self, LiveOptions};
use edgetpu_examples::{DeviceArgs, Session};
use std::path::PathBuf;

/// Live object detection from a camera, a directory of images or a Motion JPEG file.
#[derive(Parser)]
struct Args {
    /// A detection model: a .tflite file (or its compiled *_edgetpu.tflite), or a catalog name
    /// such as ssd_mobilenet_v2_coco (fetched with `edgetpu models fetch NAME`).
    #[arg(long)]
    model: PathBuf,
    /// Label file (default: a catalog model's label file, else the labels packed in the model).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// A camera (/dev/videoN), a directory of images, or a Motion JPEG file (.mjpeg, .mjpg).
    #[arg(long, default_value = "/dev/video0")]
    source: PathBuf,
    /// Camera frame width (the camera may pick the nearest it has).
    #[arg(long, default_value_t = 640)]
    width: u32,
    /// Camera frame height.
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// Camera pixel format: auto (MJPEG if offered, else YUYV), mjpeg or yuyv.
    #[arg(long, default_value = "auto")]
    format: PixelFormat,
    /// Only objects scoring at least this much.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Write each annotated frame to this file ({frame} in the name: one file per frame).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Serve the annotated frames as a Motion JPEG stream at this address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    http: Option<String>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut session = Session::open(&args.model, &args.device)?;
    // Bilinear resizing: much cheaper than Lanczos per frame, and good enough for video.
    session.preprocess.filter = Filter::PilBilinear;
    println!("{}", session.describe());
    let labels = session.labels(args.labels.as_deref())?;

    let capture = CaptureOptions { width: args.width, height: args.height, format: args.format };
    let mut source = frames::open(&args.source, &capture)?;
    println!("frames from {}", source.describe());
    let server = args.http.as_deref().map(MjpegServer::bind).transpose()?;
    if let Some(s) = &server {
        println!("serving the annotated frames at http://{}/", s.local_addr());
    }
    if args.output.is_none() && server.is_none() {
        println!("(no --output or --http: printing the detections only)");
    }

    let options =
        LiveOptions { threshold: args.threshold, max_frames: args.frames, output: args.output.clone(), labels };
    let n = live::run(&mut session, source.as_mut(), &options, server.as_ref(), |r| {
        let objects: Vec<String> =
            r.detections.iter().map(|d| format!("{} {:.0}%", draw::detection_name(d), d.score * 100.0)).collect();
        println!("{}  {:5.1} fps  {:6.1} ms  {}", r.name, r.fps, r.latency_ms, objects.join(", "));
    })?;
    println!("{n} frames");
    Ok(())
}
