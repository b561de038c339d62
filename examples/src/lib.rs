//! What the examples in `examples/` share, and the parts of them that are worth testing.
//!
//! Run an example with `cargo run --release -p edgetpu-examples --example NAME -- ARGS`; each one
//! prints its arguments with `--help`. Every example takes `--device` ([`DeviceArgs`]): `auto`
//! (the default) runs on a Coral when one is attached and on the CPU otherwise, and says which.
//!
//! - [`Session`]: a model opened on the chosen device, with one call per task
//!   ([`Session::classify`], [`Session::detect`], [`Session::segment`], [`Session::pose`]).
//! - [`parallel`]: one model data-parallel over several devices, and a model compiled into
//!   segments pipelined over several devices.
//! - [`frames`], [`mjpeg`], [`v4l2`], [`http`] and [`live`]: the camera example's frame sources
//!   (a V4L2 camera, a directory of images, an MJPEG file), its MJPEG stream over HTTP, and its
//!   detect-and-draw loop.

pub mod device;
pub mod frames;
pub mod http;
pub mod live;
pub mod mjpeg;
pub mod parallel;
mod tasks;
#[cfg(target_os = "linux")]
pub mod v4l2;

#[cfg(test)]
#[path = "../tests/common/testdata.rs"]
mod test_data;

pub use device::{DeviceArgs, Place, Session};
pub use tasks::Timed;

use anyhow::{Context, Result};
use edgetpu::vision::{self, image::DynamicImage, Labels};
use std::path::{Path, PathBuf};

/// The options of the examples that run a model on one image: the model, the image, labels and
/// where to run.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageTask {
    /// The model: a .tflite file (or its compiled *_edgetpu.tflite), or the name of a model of
    /// the catalog fetched with `edgetpu models fetch NAME`.
    #[arg(long)]
    pub model: PathBuf,
    /// The image (PNG, JPEG or BMP).
    #[arg(long)]
    pub image: PathBuf,
    /// Class names: one label per line, or `N label` lines (default: a catalog model's label
    /// file, else the labels packed in the model, if any).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Where to run.
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl ImageTask {
    /// Opens the model where `--device` says (and prints where), its labels and the image.
    pub fn open(&self) -> Result<(Session, Option<Labels>, DynamicImage)> {
        let session = Session::open(&self.model, &self.device)?;
        println!("{}", session.describe());
        let labels = session.labels(self.labels.as_deref())?;
        Ok((session, labels, open_image(&self.image)?))
    }
}

/// Opens and decodes an image, with an error that names the file.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    vision::open_image(path).with_context(|| format!("reading the image {}", path.display()))
}

/// Labels from `file` when given, else those packed in the model (if any).
pub fn labels(file: Option<&Path>, model: &edgetpu::Model) -> Result<Option<Labels>> {
    match file {
        Some(p) => Ok(Some(Labels::from_file(p).with_context(|| format!("reading the labels {}", p.display()))?)),
        None => Ok(Labels::from_model(model)?),
    }
}

/// Writes an image (format from the extension: .png, .jpg or .bmp), naming the file on error.
pub fn save_image(image: &vision::image::RgbImage, path: &Path) -> Result<()> {
    image
        .save(path)
        .with_context(|| format!("writing {}: use a .png, .jpg or .bmp name in a writable directory", path.display()))
}
