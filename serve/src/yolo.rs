//! Frigate's `yologeneric` decoding, as its edgetpu detector computes it from a YOLO model's
//! quantized outputs: a class-logit tensor `[1, N, classes]` and a DFL box tensor `[1, N, 64]`
//! (4 sides × 16 bins), N anchors over the strides 8, 16 and 32.
//!
//! Step by step, in the same number types:
//! 1. the largest quantized logit of each anchor is kept when it is at least
//!    `int(log(min_score / (1 - min_score)) / scale + zero_point)`;
//! 2. kept boxes are dequantized (float32), each side's 16 bins go through a softmax and the
//!    expected bin is the distance, in stride units, from the anchor (cell centre);
//! 3. non-maximum suppression as `cv2.dnn.NMSBoxes(boxes, scores, threshold, 0.4)`: scores are
//!    the logits shifted to be non-negative, candidates are visited by decreasing score (stable),
//!    and a box is kept when its overlap with every kept box is at most 0.4. Frigate hands the
//!    `[x1, y1, x2, y2]` corners to an API that reads `[x, y, width, height]`, so the overlap is
//!    that of the rectangles `(x1, y1)` to `(x1 + x2, y1 + y2)`; this decoder does the same, so that
//!    it keeps the boxes Frigate keeps;
//! 4. at most 20 rows `class, sigmoid(logit), y1/H, x1/W, y2/H, x2/W`, the class being the first
//!    largest quantized logit.
//!
//! One difference: Frigate subtracts the zero point from int8 logits in int8 arithmetic, which
//! wraps when `logit - zero_point` leaves -128..=127; this decoder subtracts exactly.

use edgetpu::model::TensorType;
use edgetpu::TensorInfo;

/// Bins per box side (`reg_max`).
const BINS: usize = 16;
/// The detection heads' strides.
const STRIDES: [usize; 3] = [8, 16, 32];
/// NMS overlap threshold of Frigate's detector.
const NMS_THRESHOLD: f32 = 0.4;

/// A quantized output tensor: which output, its element type and quantization.
#[derive(Debug, Clone, Copy)]
struct Quantized {
    output: usize,
    signed: bool,
    scale: f64,
    zero_point: i64,
}

impl Quantized {
    fn of(output: usize, t: &TensorInfo) -> Result<Quantized, String> {
        let signed = match t.dtype {
            TensorType::INT8 => true,
            TensorType::UINT8 => false,
            other => {
                return Err(format!(
                    "YOLO output {output} ({:?}) is {}; Frigate's yologeneric decoding needs uint8 or int8 outputs",
                    t.name,
                    other.name()
                ))
            }
        };
        let q = t.quant.as_ref().filter(|q| !q.scale.is_empty());
        let (scale, zero_point) = q
            .map(|q| (q.scale(), q.zero_point()))
            .ok_or_else(|| format!("YOLO output {output} ({:?}) has no quantization parameters", t.name))?;
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(format!("YOLO output {output} has scale {scale}; it must be positive"));
        }
        Ok(Quantized { output, signed, scale: f64::from(scale), zero_point: i64::from(zero_point) })
    }

    fn value(&self, b: u8) -> i64 {
        if self.signed {
            i64::from(b as i8)
        } else {
            i64::from(b)
        }
    }
}

/// What a YOLO model's decoding needs, worked out once per model.
#[derive(Debug, Clone)]
pub struct Yolo {
    scores: Quantized,
    boxes: Quantized,
    anchors: usize,
    classes: usize,
    width: usize,
    height: usize,
    /// `log(min_score / (1 - min_score))`.
    min_logit: f64,
    /// The quantized threshold of step 1.
    min_quantized: i64,
    /// Added to logits to make them non-negative for the NMS.
    shift: f64,
    /// Anchor (x, y) in cell units and its stride.
    grid: Vec<(f32, f32, f32)>,
}

impl Yolo {
    /// Reads the layout of a model with input `[1, height, width, C]` and outputs `outputs`, as
    /// Frigate's detector does: the 3-D output whose last dimension is 64 holds the boxes, the
    /// other 3-D one with more than one channel the class logits.
    pub fn new(input: &TensorInfo, outputs: &[&TensorInfo], min_score: f32) -> Result<Yolo, String> {
        if !(2..=3).contains(&outputs.len()) {
            return Err(format!(
                "a yologeneric model has 2 or 3 outputs (class scores and DFL boxes), this one has {}",
                outputs.len()
            ));
        }
        let (height, width) = match input.shape[..] {
            [1, h, w, _] => (h, w),
            _ => return Err(format!("the input has shape {:?}; expected [1, height, width, channels]", input.shape)),
        };
        let mut boxes = None;
        let mut scores = None;
        for (i, t) in outputs.iter().enumerate() {
            match t.shape[..] {
                [_, _, 64] => boxes = Some(i),
                [_, _, c] if c > 1 => scores = Some(i),
                _ => {}
            }
        }
        let (Some(bi), Some(si)) = (boxes, scores) else {
            return Err(format!(
                "no YOLO layout in outputs {:?}: expected [1, N, classes] class logits and [1, N, 64] DFL boxes",
                outputs.iter().map(|t| &t.shape).collect::<Vec<_>>()
            ));
        };
        let (st, bt) = (outputs[si], outputs[bi]);
        let (anchors, classes) = (st.shape[1], st.shape[2]);
        if bt.shape[1] != anchors {
            return Err(format!("class logits have {anchors} anchors, boxes {}", bt.shape[1]));
        }
        let mut grid = Vec::with_capacity(anchors);
        for s in STRIDES {
            let (fh, fw) = (height / s, width / s);
            for y in 0..fh {
                for x in 0..fw {
                    grid.push((x as f32 + 0.5, y as f32 + 0.5, s as f32));
                }
            }
        }
        if grid.len() != anchors {
            return Err(format!(
                "a {width}x{height} input has {} anchors over the strides 8, 16 and 32, the outputs {anchors}",
                grid.len()
            ));
        }
        let scores = Quantized::of(si, st)?;
        let boxes = Quantized::of(bi, bt)?;
        let min_score = f64::from(min_score);
        let min_logit = (min_score / (1.0 - min_score)).ln();
        // Python's int() truncates toward zero.
        let min_quantized = (min_logit / scores.scale + scores.zero_point as f64).trunc() as i64;
        let shift = (((128 + scores.zero_point) as f64 * scores.scale).ceil()).max(0.0) + 1.0;
        Ok(Yolo { scores, boxes, anchors, classes, width, height, min_logit, min_quantized, shift, grid })
    }

    /// Which outputs hold the class logits and the boxes.
    pub fn outputs(&self) -> (usize, usize) {
        (self.scores.output, self.boxes.output)
    }

    /// The 20 × 6 detection rows (row-major) from the raw bytes of the class-logit and box
    /// outputs.
    pub fn decode(&self, scores: &[u8], boxes: &[u8], rows: usize) -> Result<Vec<f32>, String> {
        let (n, c) = (self.anchors, self.classes);
        if scores.len() != n * c || boxes.len() != n * 4 * BINS {
            return Err(format!(
                "YOLO outputs have {} and {} bytes; expected {} and {}",
                scores.len(),
                boxes.len(),
                n * c,
                n * 4 * BINS
            ));
        }
        let mut out = vec![0f32; rows * 6];
        // 1. Candidates: the anchors whose best quantized logit passes.
        let mut cand: Vec<Candidate> = Vec::new();
        for a in 0..n {
            let row = &scores[a * c..(a + 1) * c];
            let (mut best, mut class) = (self.scores.value(row[0]), 0);
            for (k, &b) in row.iter().enumerate().skip(1) {
                let v = self.scores.value(b);
                if v > best {
                    best = v;
                    class = k;
                }
            }
            if best < self.min_quantized {
                continue;
            }
            let shifted = (best - self.scores.zero_point) as f64 * self.scores.scale + self.shift;
            cand.push(Candidate { class, shifted, corners: self.corners(a, &boxes[a * 64..(a + 1) * 64]) });
        }
        if cand.is_empty() {
            return Ok(out);
        }
        // 3. NMS on float32 scores (OpenCV takes a vector<float>), stable by decreasing score.
        let threshold = (self.min_logit + self.shift) as f32;
        let mut order: Vec<usize> = (0..cand.len()).filter(|&i| cand[i].shifted as f32 > threshold).collect();
        order.sort_by(|&i, &j| {
            (cand[j].shifted as f32).partial_cmp(&(cand[i].shifted as f32)).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut kept: Vec<usize> = Vec::new();
        for &i in &order {
            if kept.iter().all(|&k| overlap(&cand[i].corners, &cand[k].corners) <= NMS_THRESHOLD) {
                kept.push(i);
            }
        }
        // 4. Rows.
        for (r, &i) in kept.iter().take(rows).enumerate() {
            let d = &cand[i];
            let logit = d.shifted - self.shift;
            let score = (1.0 / (1.0 + (-logit).exp())) as f32;
            let [x1, y1, x2, y2] = d.corners;
            out[r * 6..r * 6 + 6].copy_from_slice(&[
                d.class as f32,
                score,
                y1 / self.height as f32,
                x1 / self.width as f32,
                y2 / self.height as f32,
                x2 / self.width as f32,
            ]);
        }
        Ok(out)
    }

    /// 2. Box corners `[x1, y1, x2, y2]` in input pixels from anchor `a`'s 64 quantized bins.
    fn corners(&self, a: usize, q: &[u8]) -> [f32; 4] {
        let (zp, scale) = (self.boxes.zero_point as f32, self.boxes.scale as f32);
        let mut dist = [0f32; 4];
        for (side, d) in dist.iter_mut().enumerate() {
            let mut v = [0f32; BINS];
            for (k, x) in v.iter_mut().enumerate() {
                *x = (self.boxes.value(q[side * BINS + k]) as f32 - zp) * scale;
            }
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: [f32; BINS] = std::array::from_fn(|k| (v[k] - max).exp());
            let sum = pairwise16(&e);
            let mut acc = 0f32;
            for (k, &x) in e.iter().enumerate() {
                acc += (x / sum) * k as f32;
            }
            *d = acc;
        }
        let (ax, ay, s) = self.grid[a];
        [(ax - dist[0]) * s, (ay - dist[1]) * s, (ax + dist[2]) * s, (ay + dist[3]) * s]
    }
}

/// A candidate detection.
struct Candidate {
    class: usize,
    shifted: f64,
    corners: [f32; 4],
}

/// numpy's float32 sum of 16 contiguous values: eight running sums, then a pairwise tree.
fn pairwise16(v: &[f32; BINS]) -> f32 {
    let r: [f32; 8] = std::array::from_fn(|j| v[j] + v[j + 8]);
    ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
}

/// A `Rect2d`: x, y, width, height.
type Rect = [f64; 4];

/// OpenCV's `Rect_::operator&` (intersection), in its arithmetic order; empty as all zeros.
fn intersect(a: Rect, b: Rect) -> Rect {
    let empty = |r: &Rect| r[2] <= 0.0 || r[3] <= 0.0;
    if empty(&a) || empty(&b) {
        return [0.0; 4];
    }
    let (x_min, x_max) = if a[0] < b[0] { (a, b) } else { (b, a) };
    let (y_min, y_max) = if a[1] < b[1] { (a, b) } else { (b, a) };
    if (x_min[0] < 0.0 && x_min[0] + x_min[2] < x_max[0])
        || (x_max[0] - x_min[0]) >= x_min[2]
        || (y_min[1] < 0.0 && y_min[1] + y_min[3] < y_max[1])
        || (y_max[1] - y_min[1]) >= y_min[3]
    {
        return [0.0; 4];
    }
    let w = (x_min[2] - (x_max[0] - x_min[0])).min(x_max[2]);
    let h = (y_min[3] - (y_max[1] - y_min[1])).min(y_max[3]);
    [x_max[0], y_max[1], w, h]
}

/// OpenCV's `rectOverlap` of two `Rect2d` (`1 - jaccardDistance`, computed in double, returned
/// as a float), here of Frigate's corners read as `[x, y, width, height]` (see the module notes).
fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (a, b) = (a.map(f64::from), b.map(f64::from));
    let (area_a, area_b) = (a[2] * a[3], b[2] * b[3]);
    let distance = if area_a + area_b <= f64::EPSILON {
        0.0
    } else {
        let i = intersect(a, b);
        let inter = i[2] * i[3];
        1.0 - inter / (area_a + area_b - inter)
    };
    1.0 - distance as f32
}
