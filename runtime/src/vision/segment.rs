//! Semantic segmentation: a class per pixel, from a class map or per-class scores.

use super::{output, raw_values, Transform};
use crate::cpu::{Interpreter, TensorInfo};
use crate::error::{Error, Result};
use crate::model::TensorType;
use image::{GrayImage, RgbImage};
use std::collections::BTreeMap;

/// A class per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` class ids.
    pub classes: Vec<u16>,
}

impl Segmentation {
    /// The class of pixel (x, y).
    pub fn class_at(&self, x: usize, y: usize) -> u16 {
        self.classes[y * self.width + x]
    }

    /// The mask in the original image's pixels: each image pixel takes the class of the tensor
    /// pixel its centre falls in (nearest neighbour through `t`, so letterbox padding is skipped
    /// and crops are extended from the nearest edge). `self` must be at the input's size.
    pub fn to_image_size(&self, t: &Transform) -> Segmentation {
        let (w, h) = (t.image_width as usize, t.image_height as usize);
        if (w, h) == (self.width, self.height)
            && t.scale_x == 1.0
            && t.scale_y == 1.0
            && t.offset_x == 0.0
            && t.offset_y == 0.0
        {
            return self.clone();
        }
        // Tensor size may differ from the input's (e.g. a mask at output stride): rescale.
        let (sx, sy) = (self.width as f64 / t.input_width as f64, self.height as f64 / t.input_height as f64);
        let index = |v: f64, s: f64, n: usize| ((v * s).floor().max(0.0) as usize).min(n - 1);
        let cols: Vec<usize> = (0..w).map(|x| index(t.to_input(x as f64 + 0.5, 0.0).0, sx, self.width)).collect();
        let mut classes = Vec::with_capacity(w * h);
        for y in 0..h {
            let ty = index(t.to_input(0.0, y as f64 + 0.5).1, sy, self.height);
            let row = &self.classes[ty * self.width..][..self.width];
            classes.extend(cols.iter().map(|&tx| row[tx]));
        }
        Segmentation { width: w, height: h, classes }
    }

    /// Pixels of each class present.
    pub fn pixels_per_class(&self) -> BTreeMap<u16, usize> {
        let mut m = BTreeMap::new();
        for &c in &self.classes {
            *m.entry(c).or_insert(0) += 1;
        }
        m
    }

    /// The class ids as a grayscale image (ids above 255 saturate).
    pub fn to_gray(&self) -> GrayImage {
        let px = self.classes.iter().map(|&c| c.min(255) as u8).collect();
        GrayImage::from_raw(self.width as u32, self.height as u32, px).expect("one byte per pixel")
    }

    /// The classes in the PASCAL VOC colour palette (see [`voc_palette`]).
    pub fn colorize(&self) -> RgbImage {
        let palette = voc_palette(256);
        let px = self.classes.iter().flat_map(|&c| palette[c as usize % 256]).collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, px).expect("three bytes per pixel")
    }

    /// `image` blended with the coloured classes (`alpha` of the colour; background, class 0,
    /// left untouched). The image must have the mask's size.
    pub fn overlay(&self, image: &RgbImage, alpha: f32) -> Result<RgbImage> {
        if (image.width() as usize, image.height() as usize) != (self.width, self.height) {
            return Err(Error::argument(format!(
                "the image is {}x{} but the mask is {}x{}",
                image.width(),
                image.height(),
                self.width,
                self.height
            )));
        }
        let palette = voc_palette(256);
        let a = alpha.clamp(0.0, 1.0);
        let mut out = image.clone();
        for (p, &c) in out.pixels_mut().zip(&self.classes) {
            if c != 0 {
                let col = palette[c as usize % 256];
                for (v, &c) in p.0.iter_mut().zip(&col) {
                    *v = (*v as f32 * (1.0 - a) + c as f32 * a).round() as u8;
                }
            }
        }
        Ok(out)
    }
}

/// The PASCAL VOC colour map (as in the DeepLab demos): the bits of the class id spread over R,
/// G and B from the most significant bit down. Class 0 is black, 1 (aeroplane) dark red, ...
pub fn voc_palette(n: usize) -> Vec<[u8; 3]> {
    (0..n)
        .map(|i| {
            let (mut c, mut rgb) = (i, [0u8; 3]);
            for shift in (0..8).rev() {
                for (k, ch) in rgb.iter_mut().enumerate() {
                    *ch |= (((c >> k) & 1) as u8) << shift;
                }
                c >>= 3;
            }
            rgb
        })
        .collect()
}

/// The segmentation of output `output` of `it`, in the original image's pixels (see
/// [`Segmentation::to_image_size`]).
pub fn segment(it: &Interpreter, transform: &Transform, output_index: usize) -> Result<Segmentation> {
    let (info, bytes) = output(it, output_index)?;
    Ok(segment_tensor(info, bytes)?.to_image_size(transform))
}

/// The segmentation held by a tensor: a class map `[1, H, W]` (or `[1, H, W, 1]`) of integers,
/// or per-class scores `[1, H, W, C]` (argmax over C; ties go to the lower class).
pub fn segment_tensor(info: &TensorInfo, bytes: &[u8]) -> Result<Segmentation> {
    let (h, w, c) = match info.shape.as_slice() {
        [1, h, w] | [h, w] => (*h, *w, 1),
        [1, h, w, c] => (*h, *w, *c),
        _ => (0, 0, 0),
    };
    if h == 0 || w == 0 || c == 0 {
        return Err(Error::argument(format!(
            "output {} ({:?}) has shape {:?}; a segmentation output is [1, H, W] classes or [1, H, W, C] scores",
            info.index, info.name, info.shape
        )));
    }
    let values = raw_values(info, bytes)?;
    let classes = if c == 1 {
        if info.dtype == TensorType::FLOAT32 {
            return Err(Error::argument(format!(
                "output {} ({:?}) is a float32 map with one channel; expected integer class ids",
                info.index, info.name
            )));
        }
        values
            .iter()
            .map(|&v| {
                if (0.0..=u16::MAX as f64).contains(&v) {
                    Ok(v as u16)
                } else {
                    Err(Error::argument(format!("output {} holds class id {v}, outside 0..=65535", info.index)))
                }
            })
            .collect::<Result<Vec<u16>>>()?
    } else {
        if c > u16::MAX as usize + 1 {
            return Err(Error::argument(format!("output {} has {c} classes; at most 65536 are supported", info.index)));
        }
        // Quantized scores compare like their raw values (positive scale).
        values
            .chunks_exact(c)
            .map(|px| {
                let mut best = 0;
                for (k, &v) in px.iter().enumerate() {
                    if v > px[best] {
                        best = k;
                    }
                }
                best as u16
            })
            .collect()
    };
    Ok(Segmentation { width: w, height: h, classes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::tests::info;

    #[test]
    fn class_maps_and_scores() {
        let t = info(&[1, 2, 3], TensorType::INT64, None);
        let bytes: Vec<u8> = [0i64, 15, 15, 0, 3, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let s = segment_tensor(&t, &bytes).unwrap();
        assert_eq!((s.width, s.height), (3, 2));
        assert_eq!(s.class_at(1, 0), 15);
        assert_eq!(s.pixels_per_class(), BTreeMap::from([(0, 3), (3, 1), (15, 2)]));
        let bad: Vec<u8> = [-1i64, 0, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(segment_tensor(&t, &bad).is_err());

        let scores = info(&[1, 1, 2, 3], TensorType::UINT8, Some((0.1, 0)));
        let s = segment_tensor(&scores, &[1, 9, 9, 7, 2, 3]).unwrap();
        assert_eq!(s.classes, vec![1, 0]);
        assert!(segment_tensor(&info(&[4], TensorType::UINT8, None), &[0; 4]).is_err());
    }

    #[test]
    fn resizes_back_with_nearest_neighbour() {
        let s = Segmentation { width: 2, height: 2, classes: vec![1, 2, 3, 4] };
        // A 4x2 image stretched to 2x2.
        let t = Transform {
            image_width: 4,
            image_height: 2,
            input_width: 2,
            input_height: 2,
            scale_x: 0.5,
            ..Transform::identity(2, 2)
        };
        let big = s.to_image_size(&t);
        assert_eq!(big.classes, vec![1, 1, 2, 2, 3, 3, 4, 4]);
        // A 2x1 image letterboxed into 2x2 at row 1 (offset 0.5 rounds into row 1's pixels).
        let t = Transform { image_width: 2, image_height: 1, offset_y: 0.5, ..Transform::identity(2, 2) };
        assert_eq!(s.to_image_size(&t).classes, vec![3, 4]);
        assert_eq!(s.to_image_size(&Transform::identity(2, 2)), s);
    }

    #[test]
    fn palette_and_images() {
        let p = voc_palette(21);
        assert_eq!(p[0], [0, 0, 0]);
        assert_eq!(p[1], [128, 0, 0]);
        assert_eq!(p[2], [0, 128, 0]);
        assert_eq!(p[3], [128, 128, 0]);
        assert_eq!(p[8], [64, 0, 0]);
        assert_eq!(p[15], [192, 128, 128]); // person
        assert_eq!(p[20], [0, 64, 128]); // tvmonitor
        let s = Segmentation { width: 2, height: 1, classes: vec![0, 1] };
        assert_eq!(s.colorize().as_raw(), &vec![0, 0, 0, 128, 0, 0]);
        assert_eq!(s.to_gray().as_raw(), &vec![0, 1]);
        let img = RgbImage::from_raw(2, 1, vec![10, 10, 10, 0, 0, 0]).unwrap();
        assert_eq!(s.overlay(&img, 0.5).unwrap().as_raw(), &vec![10, 10, 10, 64, 0, 0]);
        assert!(s.overlay(&RgbImage::new(1, 1), 0.5).is_err());
    }
}
