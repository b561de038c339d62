//! The camera example's loop: take a frame, detect objects, draw the boxes with the frame rate
//! and latency on it, and hand the picture to a file and/or an HTTP Motion JPEG stream.

use crate::frames::FrameSource;
use crate::http::MjpegServer;
use crate::{mjpeg, Session};
use anyhow::Result;
use edgetpu::vision::image::{DynamicImage, Rgb, RgbImage};
use edgetpu::vision::{draw, Detection, Labels};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the loop does besides detecting.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Only detections scoring at least this much.
    pub threshold: f32,
    /// Stop after this many frames (a camera runs until stopped otherwise).
    pub max_frames: Option<usize>,
    /// Write each annotated frame here (format from the extension). A `{frame}` in the name is
    /// replaced by the frame number (`out-{frame}.png`); without one the file is overwritten.
    pub output: Option<PathBuf>,
    /// Labels for the class ids.
    pub labels: Option<Labels>,
}

/// What happened to one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameReport {
    /// Frame number, from 0.
    pub index: usize,
    /// Where it came from (file name or `frame N`).
    pub name: String,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// What was found.
    pub detections: Vec<Detection>,
    /// Milliseconds in `invoke`.
    pub invoke_ms: f64,
    /// Milliseconds from having the frame to having its detections (preprocessing, inference,
    /// decoding; drawing comes after, since the figure is drawn on the frame).
    pub latency_ms: f64,
    /// Frames per second over the last second or so (the whole loop: capture included).
    pub fps: f64,
}

/// The overlay's status line, e.g. `12.5 FPS  LATENCY 38 MS  INVOKE 30 MS`.
pub fn status_line(fps: f64, latency_ms: f64, invoke_ms: f64) -> String {
    format!("{fps:.1} FPS  LATENCY {latency_ms:.0} MS  INVOKE {invoke_ms:.0} MS")
}

/// Draws the detections and, in the top-left corner, the status line.
pub fn annotate(image: &mut RgbImage, detections: &[Detection], status: &str) {
    draw::detections(image, detections);
    let scale = draw::scale_for(image);
    let (w, h) = (draw::text_width(status, scale) + 2 * scale, draw::text_height(scale) + 2 * scale);
    draw::fill(image, 0, 0, w, h, Rgb([0, 0, 0]));
    draw::text(image, scale, scale, status, scale, Rgb([255, 255, 0]));
}

/// Where frame `n` is written: `{frame}` in `output` replaced by the number, zero-padded to 5.
pub fn output_path(output: &Path, n: usize) -> PathBuf {
    let s = output.to_string_lossy();
    if s.contains("{frame}") {
        PathBuf::from(s.replace("{frame}", &format!("{n:05}")))
    } else {
        output.to_path_buf()
    }
}

/// Runs the loop until the source ends or `options.max_frames` frames are done, calling
/// `on_frame` after each; returns the number of frames.
pub fn run(
    session: &mut Session,
    source: &mut dyn FrameSource,
    options: &LiveOptions,
    server: Option<&MjpegServer>,
    mut on_frame: impl FnMut(&FrameReport),
) -> Result<usize> {
    // Frame rate over a sliding window of recent frame times.
    let mut times: VecDeque<Instant> = VecDeque::new();
    let mut index = 0;
    while options.max_frames.is_none_or(|m| index < m) {
        let Some(frame) = source.next_frame()? else { break };
        let start = Instant::now();
        let (width, height) = frame.image.dimensions();
        let image = DynamicImage::ImageRgb8(frame.image);
        let found = session.detect(&image, options.threshold, options.labels.as_ref())?;
        times.push_back(start);
        while times.len() > 2 && start.duration_since(times[0]).as_secs_f64() > 1.0 {
            times.pop_front();
        }
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        let fps = match (times.front(), times.len()) {
            (Some(first), n) if n >= 2 => (n - 1) as f64 / start.duration_since(*first).as_secs_f64().max(1e-9),
            _ => 1e3 / latency_ms.max(1e-3),
        };
        if options.output.is_some() || server.is_some() {
            let mut canvas = image.into_rgb8();
            annotate(&mut canvas, &found.value, &status_line(fps, latency_ms, found.invoke_ms));
            if let Some(out) = &options.output {
                crate::save_image(&canvas, &output_path(out, index))?;
            }
            if let Some(server) = server {
                server.publish(mjpeg::encode(&canvas, 80)?);
            }
        }
        on_frame(&FrameReport {
            index,
            name: frame.name,
            width,
            height,
            detections: found.value,
            invoke_ms: found.invoke_ms,
            latency_ms,
            fps,
        });
        index += 1;
    }
    Ok(index)
}
