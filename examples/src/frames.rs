//! Where the camera example's frames come from: a V4L2 camera (`/dev/videoN`), a Motion JPEG
//! file (`.mjpeg` / `.mjpg`), a directory of images (taken in name order), or one image.

use crate::mjpeg::{self, MjpegReader};
use anyhow::{bail, Context, Result};
use edgetpu::vision::image::RgbImage;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The picture.
    pub image: RgbImage,
    /// Where it came from: a file name, or `frame N`.
    pub name: String,
}

/// A sequence of frames.
pub trait FrameSource {
    /// The next frame, or `None` when a file or directory has no more (a camera never ends).
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// What the frames come from, for messages.
    fn describe(&self) -> String;
}

/// Pixel format asked of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// MJPEG if the camera offers it (less USB bandwidth), else YUYV.
    #[default]
    Auto,
    /// Motion JPEG: each frame a JPEG image.
    Mjpeg,
    /// YUYV 4:2:2: two pixels in four bytes (Y0 U Y1 V).
    Yuyv,
}

impl std::str::FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(PixelFormat::Auto),
            "mjpeg" | "mjpg" => Ok(PixelFormat::Mjpeg),
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            _ => Err(format!("{s:?}: use auto, mjpeg or yuyv")),
        }
    }
}

/// What to ask of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Frame width in pixels (the driver may pick the nearest size it has).
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions { width: 640, height: 480, format: PixelFormat::Auto }
    }
}

/// Opens `source`: a V4L2 device (`/dev/video0`), a directory of images, a `.mjpeg` / `.mjpg`
/// file, or one image file.
pub fn open(source: &Path, capture: &CaptureOptions) -> Result<Box<dyn FrameSource>> {
    let name = source.display();
    if source.starts_with("/dev") {
        return open_camera(source, capture);
    }
    if source.is_dir() {
        return Ok(Box::new(ImageDir::open(source)?));
    }
    if !source.exists() {
        bail!("{name}: no such camera, file or directory; give a camera (/dev/video0; `ls /dev/video*` lists them), a directory of images or an .mjpeg file");
    }
    let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "mjpeg" || ext == "mjpg" {
        return Ok(Box::new(MjpegFile::open(source)?));
    }
    Ok(Box::new(ImageDir { name: name.to_string(), files: vec![source.to_path_buf()], next: 0 }))
}

#[cfg(target_os = "linux")]
fn open_camera(source: &Path, capture: &CaptureOptions) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(crate::v4l2::Camera::open(source, capture)?))
}

#[cfg(not(target_os = "linux"))]
fn open_camera(source: &Path, _: &CaptureOptions) -> Result<Box<dyn FrameSource>> {
    bail!(
        "{}: camera capture is implemented for Linux (V4L2) only; give a directory of images or an .mjpeg file",
        source.display()
    )
}

/// The images of a directory (PNG, JPEG, BMP), in file name order.
pub struct ImageDir {
    name: String,
    files: Vec<PathBuf>,
    next: usize,
}

impl ImageDir {
    /// Lists the images of `dir`; a directory without any is an error.
    pub fn open(dir: &Path) -> Result<ImageDir> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if path.is_file() && matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "bmp") {
                files.push(path);
            }
        }
        if files.is_empty() {
            bail!("{}: no .png, .jpg or .bmp images in this directory", dir.display());
        }
        files.sort();
        Ok(ImageDir { name: dir.display().to_string(), files, next: 0 })
    }
}

impl FrameSource for ImageDir {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some(path) = self.files.get(self.next) else { return Ok(None) };
        self.next += 1;
        let image = crate::open_image(path)?.to_rgb8();
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Some(Frame { image, name }))
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.name, self.files.len())
    }
}

/// The frames of a Motion JPEG file.
pub struct MjpegFile {
    path: PathBuf,
    reader: MjpegReader<BufReader<File>>,
}

impl MjpegFile {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<MjpegFile> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(MjpegFile { path: path.to_path_buf(), reader: MjpegReader::new(BufReader::new(file)) })
    }
}

impl FrameSource for MjpegFile {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let index = self.reader.frames();
        let Some(jpeg) = self.reader.next_frame().with_context(|| self.path.display().to_string())? else {
            if index == 0 {
                bail!(
                    "{}: no JPEG frame in this file (is it Motion JPEG? an .mp4 or .avi is not)",
                    self.path.display()
                );
            }
            return Ok(None);
        };
        let image = mjpeg::decode(&jpeg).with_context(|| format!("{}: frame {index}", self.path.display()))?;
        Ok(Some(Frame { image, name: format!("frame {index}") }))
    }

    fn describe(&self) -> String {
        format!("{} (Motion JPEG)", self.path.display())
    }
}

/// Converts YUYV 4:2:2 (`Y0 U Y1 V` for each pair of pixels) to RGB with the BT.601
/// limited-range coefficients cameras use. `stride` is the bytes per row (at least `2 * width`).
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32, stride: usize) -> Result<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if !w.is_multiple_of(2) || stride < 2 * w {
        bail!("YUYV frame of width {width} and {stride} bytes per row: the width must be even and each row 2 bytes a pixel");
    }
    let need = if h == 0 { 0 } else { stride * (h - 1) + 2 * w };
    if data.len() < need {
        bail!("YUYV frame of {width}x{height} needs {need} bytes; the camera gave {}", data.len());
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for quad in data[row * stride..row * stride + 2 * w].chunks_exact(4) {
            let (u, v) = (quad[1] as i32 - 128, quad[3] as i32 - 128);
            for y in [quad[0], quad[2]] {
                let c = 298 * (y as i32 - 16);
                let px = [c + 409 * v, c - 100 * u - 208 * v, c + 516 * u];
                rgb.extend(px.map(|p| ((p + 128) >> 8).clamp(0, 255) as u8));
            }
        }
    }
    RgbImage::from_raw(width, height, rgb).context("building the RGB frame")
}
