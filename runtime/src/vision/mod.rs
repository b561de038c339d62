//! Images in, answers out: turns an image file into a model's input tensor, and a model's output
//! tensors into classes, detections, segmentation masks or poses.
//!
//! Preprocessing ([`preprocess`]) decodes with the `image` crate, converts to RGB or grayscale
//! according to the input's channel count, fits the image to the input's height x width
//! ([`Fit::Stretch`], [`Fit::Letterbox`] or [`Fit::CenterCrop`], resampled by a [`Filter`]) and
//! writes the tensor: raw 0..255 pixels for uint8 inputs, `round(v / scale) + zero_point` for
//! int8 inputs, normalised floats for float inputs. It returns a [`Transform`] that maps points of
//! the input tensor back to the original image, so that boxes, masks and keypoints are reported
//! in the original image's pixels.
//!
//! The adapters ([`classify()`], [`detect()`], [`segment()`], [`pose()`]) read an
//! [`Interpreter`](crate::cpu::Interpreter)'s outputs after `invoke`, and [`draw`] draws boxes,
//! labels and skeletons onto the image.
//!
//! ```no_run
//! use edgetpu::cpu::{Interpreter, Options};
//! use edgetpu::vision::{self, Labels, Preprocess};
//! use std::sync::Arc;
//!
//! let model = Arc::new(edgetpu::Model::open("mobilenet_v1_0.25_128_quant.tflite")?);
//! let labels = Labels::from_file("imagenet_labels.txt")?;
//! let mut it = Interpreter::new(model, &Options::default())?;
//! let image = vision::open_image("cat.bmp")?;
//! vision::set_image(&mut it, &image, &Preprocess::default())?;
//! it.invoke()?;
//! for c in vision::classify(&it, &vision::ClassifyOptions::default(), Some(&labels))? {
//!     println!("{:.3} {}", c.score, c.label.as_deref().unwrap_or("?"));
//! }
//! # Ok::<(), edgetpu::Error>(())
//! ```

mod classify;
mod detect;
pub mod draw;
mod labels;
mod pil;
mod pose;
pub mod preprocess;
mod segment;

pub use classify::{classify, classify_scores, Class, ClassifyOptions};
pub use detect::{detect, detect_tensors, BBox, DetectOptions, Detection};
pub use labels::Labels;
pub use pose::{movenet_poses, pose, posenet_poses, Keypoint, Pose, KEYPOINT_NAMES};
pub use preprocess::{
    fill_other_inputs, find_image_input, prepare, set_image, Filter, Fit, InputGeometry, Normalize, Preprocess,
    Transform,
};
pub use segment::{segment, segment_tensor, voc_palette, Segmentation};

/// The `image` crate this module uses, re-exported so callers name the same types.
pub use image;

use crate::cpu::TensorInfo;
use crate::error::{Error, Result};
use crate::model::TensorType;
use std::path::Path;

/// Decode limits for untrusted images: an image over them is refused from its header, before
/// its pixels are decoded. The defaults (16384 pixels a side, 1 GiB of decoded data) are far
/// beyond any camera; raise them for panoramas or scans (the CLI's and `serve`'s
/// `--max-image-side` and `--max-image-mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width and height, pixels.
    pub max_side: u32,
    /// Most bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_side: 16384, max_alloc: 1 << 30 }
    }
}

/// Opens and decodes an image file (PNG, JPEG or BMP) within the default [`ImageLimits`].
///
/// A missing or unreadable file gives an [`Error::Io`] naming the path; a file that does not
/// decode gives an [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error.
pub fn open_image(path: impl AsRef<Path>) -> Result<image::DynamicImage> {
    open_image_within(path, &ImageLimits::default())
}

/// [`open_image`] within the given limits.
pub fn open_image_within(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<image::DynamicImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    open_image_bytes_within(&bytes, limits).map_err(|e| Error::argument(format!("{}: {e}", path.display())))
}

/// Decodes an image held in memory (PNG, JPEG or BMP), such as one received over a network,
/// within the default [`ImageLimits`]: a hostile image is refused before it is decoded in full.
pub fn open_image_bytes(bytes: &[u8]) -> Result<image::DynamicImage> {
    open_image_bytes_within(bytes, &ImageLimits::default())
}

/// [`open_image_bytes`] within the given limits.
pub fn open_image_bytes_within(bytes: &[u8], limits: &ImageLimits) -> Result<image::DynamicImage> {
    check_jpeg_sampling(bytes)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::argument(format!("cannot read the image: {e}")))?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    reader.decode().map_err(|e| {
        let hint = match e {
            image::ImageError::Limits(_) => format!(
                " (limits: {} pixels a side, {} MiB decoded; raise them with --max-image-side and \
                 --max-image-mib)",
                limits.max_side,
                limits.max_alloc >> 20
            ),
            _ => String::new(),
        };
        Error::argument(format!("cannot decode the image: {e}{hint}"))
    })
}

/// Refuses a JPEG whose first component is not sampled at least as finely as every other one.
/// Cameras and encoders put luma, the most finely sampled component, first; the JPEG decoder
/// underneath (zune-jpeg 0.5) panics in its upsampler on some files that do not (found by the
/// `image_preprocess` fuzz target), so such a file is refused before it is decoded. Anything
/// that is not a JPEG, or whose header ends before a frame header, is left to the decoder.
fn check_jpeg_sampling(bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(());
    }
    let mut at = 2usize;
    loop {
        let (Some(&byte), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else { return Ok(()) };
        if byte != 0xFF {
            // Junk between segments: the decoder skips to the next marker, and so does this scan.
            at += 1;
            continue;
        }
        match marker {
            // Fill bytes, and markers without a length.
            0xFF => at += 1,
            0x01 | 0xD0..=0xD8 => at += 2,
            // End of image, or scan data before any frame header: the decoder decides.
            0xD9 | 0xDA => return Ok(()),
            _ => {
                let Some(&[hi, lo]) = bytes.get(at + 2..at + 4) else { return Ok(()) };
                let len = u16::from_be_bytes([hi, lo]) as usize;
                let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if is_frame {
                    let Some(segment) = bytes.get(at + 4..at + 2 + len.max(2)) else { return Ok(()) };
                    return check_frame_sampling(segment);
                }
                at += 2 + len;
            }
        }
    }
}

/// The sampling factors of a JPEG frame header (SOFn segment after its length).
fn check_frame_sampling(segment: &[u8]) -> Result<()> {
    let Some(&n) = segment.get(5) else { return Ok(()) };
    let factors = |k: usize| segment.get(7 + 3 * k).map(|&b| (b >> 4, b & 0xF));
    let Some((h0, v0)) = factors(0) else { return Ok(()) };
    for k in 1..n as usize {
        let Some((h, v)) = factors(k) else { return Ok(()) };
        if h > h0 || v > v0 {
            return Err(Error::argument(format!(
                "unsupported JPEG: component {} is sampled {h}x{v}, more finely than the first ({h0}x{v0})",
                k + 1
            )));
        }
    }
    Ok(())
}

/// Output `j` of an interpreter as (info, bytes), with a clear error when it does not exist.
fn output(it: &crate::cpu::Interpreter, j: usize) -> Result<(&TensorInfo, &[u8])> {
    let outputs = it.outputs();
    let info = outputs
        .get(j)
        .copied()
        .ok_or_else(|| Error::argument(format!("the model has {} outputs; output {j} is needed", outputs.len())))?;
    Ok((info, it.output(j)?))
}

/// Element values of a tensor as `f32`, dequantized (`scale * (q - zero_point)`) when the tensor
/// is quantized per tensor. Supports float32, uint8, int8, int16, int32 and int64.
pub fn dequantize(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let raw = raw_values(info, bytes)?;
    Ok(match (&info.quant, info.dtype) {
        (_, TensorType::FLOAT32) => raw.into_iter().map(|v| v as f32).collect(),
        (Some(q), _) if !q.scale.is_empty() && q.scale() != 0.0 => {
            let (scale, zp) = (q.scale(), q.zero_point() as f64);
            raw.into_iter().map(|v| ((v - zp) * scale as f64) as f32).collect()
        }
        _ => raw.into_iter().map(|v| v as f32).collect(),
    })
}

/// Element values of a tensor without dequantization (as `f64`, exact for every supported type
/// except int64 values beyond 2^53).
fn raw_values(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f64>> {
    let n = info.num_elements();
    let size = info.dtype.size_bytes().unwrap_or(0);
    if size == 0 || bytes.len() != n * size {
        return Err(Error::argument(format!(
            "tensor {} ({:?}, {} {:?}) has {} bytes; expected {} elements of a fixed-size type",
            info.index,
            info.name,
            info.dtype.name(),
            info.shape,
            bytes.len(),
            n
        )));
    }
    let v: Vec<f64> = match info.dtype {
        TensorType::FLOAT32 => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        TensorType::UINT8 => bytes.iter().map(|&b| b as f64).collect(),
        TensorType::INT8 => bytes.iter().map(|&b| b as i8 as f64).collect(),
        TensorType::INT16 => bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        TensorType::INT32 => {
            bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        TensorType::INT64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        t => {
            return Err(Error::argument(format!(
                "tensor {} ({:?}) has type {}, which this adapter cannot read",
                info.index,
                info.name,
                t.name()
            )))
        }
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::QuantParams;

    pub(crate) fn info(shape: &[usize], dtype: TensorType, quant: Option<(f32, i32)>) -> TensorInfo {
        TensorInfo {
            index: 0,
            name: "t".into(),
            shape: shape.to_vec(),
            dtype,
            quant: quant.map(|(s, z)| QuantParams { scale: vec![s], zero_point: vec![z], axis: 0 }),
        }
    }

    #[test]
    fn dequantizes_each_type() {
        let u8i = info(&[3], TensorType::UINT8, Some((0.5, 2)));
        assert_eq!(dequantize(&u8i, &[0, 2, 10]).unwrap(), vec![-1.0, 0.0, 4.0]);
        let i8i = info(&[2], TensorType::INT8, Some((0.25, -128)));
        assert_eq!(dequantize(&i8i, &[0x80, 0x7f]).unwrap(), vec![0.0, 63.75]);
        let f = info(&[1], TensorType::FLOAT32, None);
        assert_eq!(dequantize(&f, &1.5f32.to_le_bytes()).unwrap(), vec![1.5]);
        let l = info(&[1], TensorType::INT64, None);
        assert_eq!(dequantize(&l, &7i64.to_le_bytes()).unwrap(), vec![7.0]);
        assert!(dequantize(&u8i, &[0, 1]).is_err());
    }
}
