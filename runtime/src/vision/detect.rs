//! Object detection: the four outputs of `TFLite_Detection_PostProcess` as boxes in the
//! original image.

use super::{dequantize, output, Labels, Transform};
use crate::cpu::{Interpreter, TensorInfo};
use crate::error::{Error, Result};
use serde::Serialize;

/// A box in pixels of the original image (`x` right, `y` down; max edges exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BBox {
    /// Left edge.
    pub xmin: f32,
    /// Top edge.
    pub ymin: f32,
    /// Right edge.
    pub xmax: f32,
    /// Bottom edge.
    pub ymax: f32,
}

impl BBox {
    /// Width (0 for an empty box).
    pub fn width(&self) -> f32 {
        (self.xmax - self.xmin).max(0.0)
    }
    /// Height (0 for an empty box).
    pub fn height(&self) -> f32 {
        (self.ymax - self.ymin).max(0.0)
    }
    /// Area.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// Intersection over union with `other` (0 when both are empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        let i = BBox {
            xmin: self.xmin.max(other.xmin),
            ymin: self.ymin.max(other.ymin),
            xmax: self.xmax.min(other.xmax),
            ymax: self.ymax.min(other.ymax),
        }
        .area();
        let u = self.area() + other.area() - i;
        if u > 0.0 {
            i / u
        } else {
            0.0
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Class index (as the model numbers them; background excluded by the post-processing op).
    pub id: usize,
    /// Its label, when labels are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Score.
    pub score: f32,
    /// Box in pixels of the original image, clamped to it (letterbox padding and crops undone).
    pub bbox: BBox,
    /// The model's box: ymin, xmin, ymax, xmax, normalised to the input tensor.
    pub normalized: [f32; 4],
}

impl std::fmt::Display for Detection {
    /// One line: score, label (or `class N`), box edges, e.g.
    /// `0.836  person                x 12.0..40.5  y 3.0..50.2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.bbox;
        let name = super::draw::detection_name(self);
        write!(f, "{:.3}  {name:<20}  x {:.1}..{:.1}  y {:.1}..{:.1}", self.score, b.xmin, b.xmax, b.ymin, b.ymax)
    }
}

/// Options of [`detect`].
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// Only detections scoring at least this much.
    pub threshold: f32,
    /// Detections to return at most.
    pub max: usize,
    /// Model outputs holding boxes `[1, N, 4]`, classes `[1, N]`, scores `[1, N]` and the count
    /// `[1]`: `TFLite_Detection_PostProcess`'s order, which SSD models keep as outputs 0..3.
    pub outputs: [usize; 4],
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions { threshold: 0.5, max: usize::MAX, outputs: [0, 1, 2, 3] }
    }
}

/// The detections of a model ending in `TFLite_Detection_PostProcess`, best first, boxes mapped
/// back to the original image with `transform` (from [`set_image`](super::set_image)).
pub fn detect(
    it: &Interpreter,
    transform: &Transform,
    options: &DetectOptions,
    labels: Option<&Labels>,
) -> Result<Vec<Detection>> {
    let [b, c, s, n] = options.outputs;
    detect_tensors([output(it, b)?, output(it, c)?, output(it, s)?, output(it, n)?], transform, options, labels)
}

/// [`detect`] on the four tensors (boxes, classes, scores, count) as (info, bytes).
pub fn detect_tensors(
    tensors: [(&TensorInfo, &[u8]); 4],
    transform: &Transform,
    options: &DetectOptions,
    labels: Option<&Labels>,
) -> Result<Vec<Detection>> {
    let [boxes, classes, scores, count] = tensors.map(|(info, bytes)| (info, dequantize(info, bytes)));
    let n = classes.1.as_ref().map_or(0, Vec::len);
    let shape_error = || {
        let d = |t: &TensorInfo| format!("{:?}", t.shape);
        Error::argument(format!(
            "detection outputs have shapes {}, {}, {}, {}; expected boxes [1, N, 4], classes [1, N], scores [1, N] \
             and count [1] (the outputs of TFLite_Detection_PostProcess)",
            d(boxes.0),
            d(classes.0),
            d(scores.0),
            d(count.0)
        ))
    };
    let (boxes, classes, scores, count) = (boxes.1?, classes.1?, scores.1?, count.1?);
    if boxes.len() != 4 * n || scores.len() != n || count.len() != 1 {
        return Err(shape_error());
    }
    let valid = if count[0].is_finite() { (count[0].max(0.0) as usize).min(n) } else { 0 };
    let mut out = Vec::new();
    for i in 0..valid {
        let (score, class) = (scores[i], classes[i]);
        // NaN scores and classes fail these tests.
        let keep = score >= options.threshold && class >= 0.0 && class.is_finite();
        if !keep {
            continue;
        }
        let nb = [boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]];
        let (x0, y0) = transform.normalized_to_image(nb[1] as f64, nb[0] as f64);
        let (x1, y1) = transform.normalized_to_image(nb[3] as f64, nb[2] as f64);
        let id = class as usize;
        out.push(Detection {
            id,
            label: labels.and_then(|l| l.get(id)).map(str::to_string),
            score,
            bbox: BBox { xmin: x0 as f32, ymin: y0 as f32, xmax: x1 as f32, ymax: y1 as f32 },
            normalized: nb,
        });
    }
    // The op sorts by score already; keep its order for equal scores.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(options.max);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorType;
    use crate::vision::tests::info;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn maps_boxes_back_through_a_letterbox() {
        // A 200x100 image letterboxed into 100x100: scale 0.5, content at rows 25..75.
        let t = Transform {
            image_width: 200,
            image_height: 100,
            input_width: 100,
            input_height: 100,
            scale_x: 0.5,
            scale_y: 0.5,
            offset_x: 0.0,
            offset_y: 25.0,
        };
        let (bi, ci, si, ni) = (
            info(&[1, 3, 4], TensorType::FLOAT32, None),
            info(&[1, 3], TensorType::FLOAT32, None),
            info(&[1, 3], TensorType::FLOAT32, None),
            info(&[1], TensorType::FLOAT32, None),
        );
        let boxes = f32s(&[0.25, 0.0, 0.75, 1.0, 0.5, 0.5, 0.625, 0.75, 0.0, 0.0, 0.1, 0.1]);
        let classes = f32s(&[2.0, 0.0, 1.0]);
        let scores = f32s(&[0.9, 0.6, 0.4]);
        let count = f32s(&[3.0]);
        let labels = Labels::parse("person\nbicycle\ncar\n");
        let opts = DetectOptions { threshold: 0.5, ..DetectOptions::default() };
        let tensors = [(&bi, &boxes[..]), (&ci, &classes[..]), (&si, &scores[..]), (&ni, &count[..])];
        let got = detect_tensors(tensors, &t, &opts, Some(&labels)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, got[0].label.as_deref()), (2, Some("car")));
        assert_eq!(got[0].bbox, BBox { xmin: 0.0, ymin: 0.0, xmax: 200.0, ymax: 100.0 });
        assert_eq!(got[1].bbox, BBox { xmin: 100.0, ymin: 50.0, xmax: 150.0, ymax: 75.0 });
        assert_eq!(got[1].normalized, [0.5, 0.5, 0.625, 0.75]);
        assert_eq!(got[0].to_string(), format!("0.900  {:<20}  x 0.0..200.0  y 0.0..100.0", "car"));
        // The count limits the rows read; max limits the result.
        let count1 = f32s(&[1.0]);
        let tensors = [(&bi, &boxes[..]), (&ci, &classes[..]), (&si, &scores[..]), (&ni, &count1[..])];
        assert_eq!(detect_tensors(tensors, &t, &opts, None).unwrap().len(), 1);
        let opts = DetectOptions { threshold: 0.0, max: 2, ..DetectOptions::default() };
        assert_eq!(detect_tensors(tensors, &t, &opts, None).unwrap().len(), 1);
        let tensors = [(&bi, &boxes[..]), (&ci, &classes[..]), (&si, &scores[..]), (&ni, &count[..])];
        let got = detect_tensors(tensors, &t, &opts, None).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bbox.iou(&got[0].bbox), 1.0);
        assert_eq!(got[0].bbox.iou(&got[1].bbox), 0.0625);
        // Wrong shapes are an error.
        let tensors = [(&ci, &classes[..]), (&bi, &boxes[..]), (&si, &scores[..]), (&ni, &count[..])];
        assert!(detect_tensors(tensors, &t, &opts, None).is_err());
    }
}
