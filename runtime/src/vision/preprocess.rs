//! Image -> input tensor: colour conversion, fitting to the input size, resampling, quantization.

use super::pil;
use crate::cpu::{Interpreter, TensorInfo};
use crate::error::{Error, Result};
use crate::model::TensorType;
use image::imageops::FilterType;
use image::DynamicImage;
use serde::Serialize;
use std::str::FromStr;

/// How the image is fitted to the input's height x width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// Resize to exactly the input size, ignoring the aspect ratio (what the test goldens and
    /// pycoral's classification examples do).
    #[default]
    Stretch,
    /// Keep the aspect ratio: scale the image to fit inside the input, centre it and pad the rest
    /// with [`Preprocess::pad`].
    Letterbox,
    /// Keep the aspect ratio: crop the largest centred region with the input's aspect ratio, then
    /// resize it to the input size.
    CenterCrop,
}

impl FromStr for Fit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "stretch" => Ok(Fit::Stretch),
            "letterbox" => Ok(Fit::Letterbox),
            "center-crop" | "centre-crop" | "crop" => Ok(Fit::CenterCrop),
            _ => Err(format!("unknown fit {s:?}: use stretch, letterbox or center-crop")),
        }
    }
}

/// The resampling filter used when the image (or its crop) is not the input size already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    /// Bit-exact Pillow (13) `Image.resize((W, H), Image.LANCZOS)` on 8-bit pixels: reproduces
    /// the input bytes of the test goldens and of pycoral's Python examples, hence their
    /// results. The default.
    #[default]
    PilLanczos,
    /// The `image` crate's Lanczos3 (`imageops::resize`, f32 arithmetic, support widened when
    /// downscaling). Within a few levels of Pillow's LANCZOS (mean 0.1-0.2, at most 13 on the
    /// test images), but not bit-identical: enough to swap two close classes of a small model.
    Lanczos3,
    /// Bit-exact Pillow `Image.resize((W, H), Image.BILINEAR)` on 8-bit pixels.
    PilBilinear,
    /// The `image` crate's triangle (bilinear) filter.
    Triangle,
    /// The `image` crate's nearest neighbour.
    Nearest,
}

impl FromStr for Filter {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pil-lanczos" | "pil" => Ok(Filter::PilLanczos),
            "lanczos3" | "lanczos" => Ok(Filter::Lanczos3),
            "pil-bilinear" => Ok(Filter::PilBilinear),
            "triangle" | "bilinear" => Ok(Filter::Triangle),
            "nearest" => Ok(Filter::Nearest),
            _ => Err(format!("unknown filter {s:?}: use pil-lanczos, lanczos3, pil-bilinear, triangle or nearest")),
        }
    }
}

/// How pixel values (0..255) become tensor values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// uint8 inputs get the raw pixels; int8 inputs get `pixel - 128` (the same real values as
    /// raw pixels in a uint8 tensor whose zero point is 128 higher, i.e. 0..255 spread over the
    /// tensor's whole range); float inputs get `(pixel - 127.5) / 127.5`, in -1..1.
    #[default]
    Auto,
    /// Real value `v = (pixel - mean) / std`; float inputs get `v`, quantized inputs
    /// `round(v / scale) + zero_point` clamped to the type's range.
    MeanStd {
        /// Subtracted from the pixel.
        mean: f32,
        /// Divides the difference.
        std: f32,
    },
}

/// Preprocessing options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preprocess {
    /// How the image is fitted to the input size.
    pub fit: Fit,
    /// Resampling filter.
    pub filter: Filter,
    /// Pixel -> tensor value mapping.
    pub normalize: Normalize,
    /// Pixel (R, G, B; grayscale uses R) of the padding of [`Fit::Letterbox`].
    pub pad: [u8; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess { fit: Fit::Stretch, filter: Filter::PilLanczos, normalize: Normalize::Auto, pad: [0, 0, 0] }
    }
}

/// Height, width and channels of an image input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InputGeometry {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 3 (RGB) or 1 (grayscale).
    pub channels: usize,
}

impl InputGeometry {
    /// The geometry of `info` if it is an image input: `[1, H, W, 3]`, `[1, H, W, 1]` or
    /// `[1, H, W]` of uint8, int8 or float32. `[1, H, W]` needs H and W of at least 8, so that
    /// lists of boxes such as `[1, 1917, 4]` are not taken for grayscale images.
    pub fn of(info: &TensorInfo) -> Result<InputGeometry> {
        let bad = |why: &str| {
            Error::argument(format!(
                "input {} ({:?}, {} {:?}) is not an image input: {why}",
                info.index,
                info.name,
                info.dtype.name(),
                info.shape
            ))
        };
        if ![TensorType::UINT8, TensorType::INT8, TensorType::FLOAT32].contains(&info.dtype) {
            return Err(bad("expected uint8, int8 or float32"));
        }
        let (h, w, c) = match info.shape.as_slice() {
            [1, h, w, c] => (*h, *w, *c),
            [1, h, w] if *h >= 8 && *w >= 8 => (*h, *w, 1),
            _ => return Err(bad("expected shape [1, H, W, C] or [1, H, W]")),
        };
        if c != 1 && c != 3 {
            return Err(bad("expected 1 or 3 channels"));
        }
        if h == 0 || w == 0 {
            return Err(bad("the input has no pixels"));
        }
        Ok(InputGeometry { height: h, width: w, channels: c })
    }
}

/// Where the original image landed in the input tensor: `tensor = image * scale + offset`,
/// per axis, in pixels (pixel edges: the image's `0..width` maps to the tensor's
/// `offset_x..offset_x + width * scale_x`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Transform {
    /// Width of the original image.
    pub image_width: u32,
    /// Height of the original image.
    pub image_height: u32,
    /// Width of the input tensor.
    pub input_width: u32,
    /// Height of the input tensor.
    pub input_height: u32,
    /// Tensor pixels per image pixel, horizontally.
    pub scale_x: f64,
    /// Tensor pixels per image pixel, vertically.
    pub scale_y: f64,
    /// Tensor x of the image's left edge (positive: padding; negative: cropped).
    pub offset_x: f64,
    /// Tensor y of the image's top edge.
    pub offset_y: f64,
}

impl Transform {
    /// The transform of an image that already has the tensor's size (or a tensor's own size).
    pub fn identity(width: u32, height: u32) -> Transform {
        Transform {
            image_width: width,
            image_height: height,
            input_width: width,
            input_height: height,
            scale_x: 1.0,
            scale_y: 1.0,
            offset_x: 0.0,
            offset_y: 0.0,
        }
    }

    /// Tensor point (pixels) -> image point (pixels), not clamped.
    pub fn to_image(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y)
    }

    /// Image point (pixels) -> tensor point (pixels).
    pub fn to_input(&self, x: f64, y: f64) -> (f64, f64) {
        (x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y)
    }

    /// Normalised tensor point (0..1 of the input's width and height) -> image point in
    /// pixels, clamped to the image.
    pub fn normalized_to_image(&self, x: f64, y: f64) -> (f64, f64) {
        let (ix, iy) = self.to_image(x * self.input_width as f64, y * self.input_height as f64);
        (ix.clamp(0.0, self.image_width as f64), iy.clamp(0.0, self.image_height as f64))
    }
}

/// Index (among the model inputs) of the first image input (see [`InputGeometry::of`]).
pub fn find_image_input(inputs: &[&TensorInfo]) -> Result<usize> {
    inputs.iter().position(|t| InputGeometry::of(t).is_ok()).ok_or_else(|| {
        let list: Vec<String> = inputs.iter().map(|t| format!("{} {:?}", t.dtype.name(), t.shape)).collect();
        Error::argument(format!(
            "the model has no image input (uint8/int8/float32 [1, H, W, 1 or 3]); its inputs are: {}",
            list.join(", ")
        ))
    })
}

/// Decodes nothing: converts, fits, resamples and quantizes `image` into the bytes of the input
/// tensor `info`. Returns the bytes and the transform from image to tensor coordinates.
pub fn prepare(image: &DynamicImage, info: &TensorInfo, pre: &Preprocess) -> Result<(Vec<u8>, Transform)> {
    let geo = InputGeometry::of(info)?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::argument("the image has no pixels"));
    }
    let c = geo.channels;
    let pixels = to_channels(image, c);
    let (tw, th) = (geo.width, geo.height);
    let mut transform = Transform {
        image_width: w as u32,
        image_height: h as u32,
        input_width: tw as u32,
        input_height: th as u32,
        scale_x: tw as f64 / w as f64,
        scale_y: th as f64 / h as f64,
        offset_x: 0.0,
        offset_y: 0.0,
    };
    let canvas = match pre.fit {
        Fit::Stretch => resize(&pixels, w, h, c, tw, th, pre.filter),
        Fit::Letterbox => {
            let s = (tw as f64 / w as f64).min(th as f64 / h as f64);
            let nw = ((w as f64 * s).round() as usize).clamp(1, tw);
            let nh = ((h as f64 * s).round() as usize).clamp(1, th);
            let (ox, oy) = ((tw - nw) / 2, (th - nh) / 2);
            let inner = resize(&pixels, w, h, c, nw, nh, pre.filter);
            let mut canvas: Vec<u8> = (0..tw * th).flat_map(|_| pre.pad[..c].iter().copied()).collect();
            for y in 0..nh {
                canvas[((y + oy) * tw + ox) * c..][..nw * c].copy_from_slice(&inner[y * nw * c..][..nw * c]);
            }
            transform.scale_x = nw as f64 / w as f64;
            transform.scale_y = nh as f64 / h as f64;
            transform.offset_x = ox as f64;
            transform.offset_y = oy as f64;
            canvas
        }
        Fit::CenterCrop => {
            let (cw, ch) = if w * th > tw * h {
                (((h * tw) as f64 / th as f64).round().clamp(1.0, w as f64) as usize, h)
            } else {
                (w, ((w * th) as f64 / tw as f64).round().clamp(1.0, h as f64) as usize)
            };
            let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
            let mut crop = Vec::with_capacity(cw * ch * c);
            for y in y0..y0 + ch {
                crop.extend_from_slice(&pixels[(y * w + x0) * c..][..cw * c]);
            }
            transform.scale_x = tw as f64 / cw as f64;
            transform.scale_y = th as f64 / ch as f64;
            transform.offset_x = -(x0 as f64) * transform.scale_x;
            transform.offset_y = -(y0 as f64) * transform.scale_y;
            resize(&crop, cw, ch, c, tw, th, pre.filter)
        }
    };
    Ok((quantize(&canvas, info, pre.normalize)?, transform))
}

/// Writes `image` into the model's first image input (see [`prepare`]) and returns the
/// transform. Other inputs are left as they are (see [`fill_other_inputs`]).
pub fn set_image(it: &mut Interpreter, image: &DynamicImage, pre: &Preprocess) -> Result<Transform> {
    let (i, info) = {
        let inputs = it.inputs();
        let i = find_image_input(&inputs)?;
        (i, inputs[i].clone())
    };
    let (bytes, t) = prepare(image, &info, pre)?;
    it.set_input(i, &bytes)?;
    Ok(t)
}

/// Fills every input except `except` with its zero point (real value 0; zero bytes for
/// unquantized inputs): the "empty" state of recurrent models such as the LSTM state inputs of
/// `traffic_model`.
pub fn fill_other_inputs(it: &mut Interpreter, except: usize) -> Result<()> {
    let fills: Vec<(usize, Vec<u8>)> =
        it.inputs().iter().enumerate().filter(|(i, _)| *i != except).map(|(i, t)| (i, zero_bytes(t))).collect();
    for (i, bytes) in fills {
        it.input_mut(i)?.copy_from_slice(&bytes);
    }
    Ok(())
}

fn zero_bytes(t: &TensorInfo) -> Vec<u8> {
    let zp = t.quant.as_ref().map_or(0, |q| q.zero_point());
    let n = t.num_elements();
    match t.dtype {
        TensorType::UINT8 => vec![zp.clamp(0, 255) as u8; n],
        TensorType::INT8 => vec![zp.clamp(-128, 127) as i8 as u8; n],
        TensorType::INT16 => (0..n).flat_map(|_| (zp.clamp(-32768, 32767) as i16).to_le_bytes()).collect(),
        _ => vec![0; t.byte_len()],
    }
}

/// Interleaved 8-bit pixels with `channels` (3: RGB, alpha dropped; 1: Pillow's luma).
fn to_channels(image: &DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 3 {
        return image.to_rgb8().into_raw();
    }
    match image {
        DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        _ => image.to_rgb8().as_raw().chunks_exact(3).map(|p| pil::rgb_to_luma(p[0], p[1], p[2])).collect(),
    }
}

/// Resizes interleaved pixels; a no-op when the size is unchanged.
fn resize(px: &[u8], w: usize, h: usize, c: usize, nw: usize, nh: usize, filter: Filter) -> Vec<u8> {
    if (w, h) == (nw, nh) {
        return px.to_vec();
    }
    let kind = match filter {
        Filter::PilLanczos => return pil::resample(px, w, h, c, nw, nh, pil::Kernel::Lanczos),
        Filter::PilBilinear => return pil::resample(px, w, h, c, nw, nh, pil::Kernel::Bilinear),
        Filter::Lanczos3 => FilterType::Lanczos3,
        Filter::Triangle => FilterType::Triangle,
        Filter::Nearest => FilterType::Nearest,
    };
    let (w32, h32, nw32, nh32) = (w as u32, h as u32, nw as u32, nh as u32);
    if c == 3 {
        let img = image::RgbImage::from_raw(w32, h32, px.to_vec()).expect("pixel buffer matches its size");
        image::imageops::resize(&img, nw32, nh32, kind).into_raw()
    } else {
        let img = image::GrayImage::from_raw(w32, h32, px.to_vec()).expect("pixel buffer matches its size");
        image::imageops::resize(&img, nw32, nh32, kind).into_raw()
    }
}

/// Pixels (0..255) -> tensor bytes of `info`'s type.
fn quantize(px: &[u8], info: &TensorInfo, normalize: Normalize) -> Result<Vec<u8>> {
    let quant =
        info.quant.as_ref().filter(|q| !q.scale.is_empty() && q.scale() > 0.0).map(|q| (q.scale(), q.zero_point()));
    let q = |v: f32, lo: i32, hi: i32| -> Result<i32> {
        let (scale, zp) = quant.ok_or_else(|| {
            Error::argument(format!(
                "input {} ({:?}) has no quantization parameters to quantize normalised pixels with",
                info.index, info.name
            ))
        })?;
        Ok(((v / scale).round() as i64 + zp as i64).clamp(lo as i64, hi as i64) as i32)
    };
    let mean_std = |p: u8, mean: f32, std: f32| (p as f32 - mean) / std;
    Ok(match (info.dtype, normalize) {
        (TensorType::UINT8, Normalize::Auto) => px.to_vec(),
        (TensorType::INT8, Normalize::Auto) => px.iter().map(|&p| (p as i32 - 128) as i8 as u8).collect(),
        (TensorType::FLOAT32, Normalize::Auto) => {
            px.iter().flat_map(|&p| mean_std(p, 127.5, 127.5).to_le_bytes()).collect()
        }
        (TensorType::FLOAT32, Normalize::MeanStd { mean, std }) => {
            px.iter().flat_map(|&p| mean_std(p, mean, std).to_le_bytes()).collect()
        }
        (TensorType::UINT8, Normalize::MeanStd { mean, std }) => {
            px.iter().map(|&p| q(mean_std(p, mean, std), 0, 255).map(|v| v as u8)).collect::<Result<_>>()?
        }
        (TensorType::INT8, Normalize::MeanStd { mean, std }) => {
            px.iter().map(|&p| q(mean_std(p, mean, std), -128, 127).map(|v| v as i8 as u8)).collect::<Result<_>>()?
        }
        (t, _) => return Err(Error::argument(format!("input type {} is not an image type", t.name()))),
    })
}

#[cfg(test)]
#[path = "preprocess_tests.rs"]
mod tests;
