//! `TFLite_Detection_PostProcess`: SSD box decoding against anchors, then regular (per class) or
//! fast (class-agnostic) non-maximum suppression, bit-exact with TFLite's
//! `kernels/detection_postprocess.cc`.
//!
//! Bit-exactness details: boxes and anchors are dequantized in float (`(q - zp) * scale`), scores
//! like TFLite's optimized `Dequantize` (see [`dequantize_scores`]), boxes are decoded in double.
//! Candidates are ordered by a stable sort and classes merged stably (regular NMS, as in current
//! TFLite, which replaced a `std::partial_sort` there), but fast NMS ranks each anchor's classes
//! with `std::partial_sort`, which is not stable: [`partial_sort`] replays libstdc++'s heap
//! algorithm so that tied scores come out in the same order.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::{Error, Result};
use crate::model::TensorType;
use crate::package::flexbuffer::{FlexError, FlexMap, FlexRef, FlexType};

/// Most output rows (`max_detections * max_classes_per_detection`) a model may ask for.
const MAX_ROWS: usize = 1 << 20;

/// Decoded options of the op.
#[derive(Debug, Clone, Copy)]
struct Params {
    max_detections: usize,
    max_classes_per_detection: usize,
    detections_per_class: usize,
    score_threshold: f32,
    iou_threshold: f32,
    num_classes: usize,
    regular: bool,
    /// y, x, h, w scales.
    scale: [f32; 4],
}

/// How a tensor's elements become floats.
#[derive(Debug, Clone, Copy)]
enum Data {
    F32,
    U8 { scale: f32, zero_point: i32 },
}

struct Detection {
    p: Params,
    num_boxes: usize,
    box_len: usize,
    /// Columns of the scores tensor (classes plus an optional background column).
    cols: usize,
    label_offset: usize,
    boxes: Data,
    anchors: Data,
    scores: Data,
    /// Rows of the output tensors (`max_detections * max_classes_per_detection`).
    out_rows: usize,
}

/// Builds the kernel; sets the output shapes `[1, rows, 4]`, `[1, rows]`, `[1, rows]`, `[1]`.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    if ctx.inputs.len() != 3 || ctx.outputs.len() != 4 {
        return Err(ctx.err(format!(
            "needs 3 inputs and 4 outputs, has {} and {}",
            ctx.inputs.len(),
            ctx.outputs.len()
        )));
    }
    let p = parse_options(ctx)?;
    let (boxes, scores, anchors) = (ctx.input(0)?.clone(), ctx.input(1)?.clone(), ctx.input(2)?.clone());
    if boxes.shape.len() != 3 || scores.shape.len() != 3 || anchors.shape.len() != 2 {
        return Err(ctx.err(format!(
            "box encodings {:?}, class predictions {:?} and anchors {:?} must be 3-D, 3-D and 2-D",
            boxes.shape, scores.shape, anchors.shape
        )));
    }
    let (num_boxes, box_len, cols) = (boxes.shape[1], boxes.shape[2], scores.shape[2]);
    if boxes.shape[0] != 1 || scores.shape[0] != 1 || scores.shape[1] != num_boxes || box_len < 4 {
        return Err(ctx.err(format!(
            "box encodings {:?} and class predictions {:?} must be [1, boxes, >= 4] and [1, boxes, classes]",
            boxes.shape, scores.shape
        )));
    }
    if anchors.shape != [num_boxes, 4] {
        return Err(ctx.err(format!("anchors have shape {:?}, expected [{num_boxes}, 4]", anchors.shape)));
    }
    if cols < p.num_classes || cols - p.num_classes > 1 {
        return Err(ctx.err(format!(
            "num_classes is {} but the class predictions have {cols} columns (num_classes, or one more \
             for a background column)",
            p.num_classes
        )));
    }
    if num_boxes.checked_mul(cols).is_none_or(|x| x > i32::MAX as usize) {
        return Err(ctx.err(format!("{num_boxes} boxes x {cols} classes is too many")));
    }
    let data = |t: &crate::cpu::TensorInfo, what: &str| -> Result<Data> {
        match t.dtype {
            TensorType::FLOAT32 => Ok(Data::F32),
            TensorType::UINT8 => {
                let (scale, zero_point) = t.qparams()?;
                Ok(Data::U8 { scale, zero_point })
            }
            other => Err(ctx.err(format!("{what} have type {}; only float32 and uint8 are supported", other.name()))),
        }
    };
    let box_data = data(&boxes, "box encodings")?;
    let anchor_data = data(&anchors, "anchors")?;
    let score_data = data(&scores, "class predictions")?;
    // TFLite reads the anchors with the box encodings' type.
    if anchors.dtype != boxes.dtype {
        return Err(ctx.err("anchors must have the same type as the box encodings"));
    }
    let out_rows = p.max_detections * p.max_classes_per_detection;
    let shapes = [vec![1, out_rows, 4], vec![1, out_rows], vec![1, out_rows], vec![1]];
    for (out, shape) in ctx.outputs.iter_mut().zip(shapes) {
        out.shape = shape;
        out.dtype = TensorType::FLOAT32;
        out.quant = None;
    }
    let k = Detection {
        p,
        num_boxes,
        box_len,
        cols,
        label_offset: cols - p.num_classes,
        boxes: box_data,
        anchors: anchor_data,
        scores: score_data,
        out_rows,
    };
    let scratch = k.scratch_bytes().ok_or_else(|| ctx.err("the scratch memory it needs overflows usize"))?;
    Built::with_scratch(k, scratch)
}

fn parse_options(ctx: &BuildCtx<'_>) -> Result<Params> {
    let bytes = ctx.custom_options.ok_or_else(|| ctx.err("custom options (a FlexBuffer map) are missing"))?;
    let flex = |e: FlexError| ctx.err(format!("custom options: {e}"));
    let map = FlexRef::root(bytes).and_then(|r| r.as_map()).map_err(flex)?;
    let get = |key: &str| -> Result<Option<FlexRef<'_>>> { map_get(&map, key).map_err(flex) };
    let required =
        |key: &str| -> Result<FlexRef<'_>> { get(key)?.ok_or_else(|| ctx.err(format!("custom options lack {key:?}"))) };
    let int = |key: &str, r: FlexRef<'_>, min: i64| -> Result<usize> {
        let v = flex_int(r).map_err(flex)?;
        if v < min || v > i64::from(i32::MAX) {
            return Err(ctx.err(format!("option {key} = {v} is out of range (at least {min})")));
        }
        Ok(v as usize)
    };
    let float = |key: &str| -> Result<f32> { flex_float(required(key)?).map_err(flex) };
    let regular = match get("use_regular_nms")? {
        Some(r) => flex_int(r).map_err(flex)? != 0,
        None => false,
    };
    // Only regular NMS uses detections_per_class (TFLite ignores it otherwise).
    let detections_per_class = match get("detections_per_class")? {
        Some(r) if regular => int("detections_per_class", r, 1)?,
        _ => 100,
    };
    let p = Params {
        max_detections: int("max_detections", required("max_detections")?, 0)?,
        max_classes_per_detection: int("max_classes_per_detection", required("max_classes_per_detection")?, 1)?,
        detections_per_class,
        score_threshold: float("nms_score_threshold")?,
        iou_threshold: float("nms_iou_threshold")?,
        num_classes: int("num_classes", required("num_classes")?, 1)?,
        regular,
        scale: [float("y_scale")?, float("x_scale")?, float("h_scale")?, float("w_scale")?],
    };
    if p.regular && p.max_detections == 0 {
        return Err(ctx.err("regular NMS needs max_detections >= 1"));
    }
    if !(p.iou_threshold > 0.0 && p.iou_threshold <= 1.0) {
        return Err(ctx.err(format!("nms_iou_threshold {} must be in (0, 1]", p.iou_threshold)));
    }
    // TFLite only needs the product to fit an int; real models ask for tens to hundreds of rows.
    if p.max_detections.checked_mul(p.max_classes_per_detection).is_none_or(|n| n > MAX_ROWS) {
        return Err(ctx.err(format!("max_detections * max_classes_per_detection exceeds {MAX_ROWS} rows")));
    }
    Ok(p)
}

fn map_get<'a>(map: &FlexMap<'a>, key: &str) -> Result<Option<FlexRef<'a>>, FlexError> {
    // A null value counts as absent, as in TFLite (`IsNull()`).
    Ok(map.get(key)?.filter(|r| r.flex_type() != FlexType::Null))
}

/// An integer option (floats are truncated, like FlexBuffers' `AsInt64`).
pub(super) fn flex_int(r: FlexRef<'_>) -> Result<i64, FlexError> {
    match r.flex_type() {
        FlexType::Float | FlexType::IndirectFloat => Ok(r.as_f64()? as i64),
        _ => r.as_i64(),
    }
}

/// A float option (integers are converted, like FlexBuffers' `AsFloat`).
pub(super) fn flex_float(r: FlexRef<'_>) -> Result<f32, FlexError> {
    match r.flex_type() {
        FlexType::Float | FlexType::IndirectFloat => Ok(r.as_f64()? as f32),
        _ => Ok(r.as_i64()? as f32),
    }
}

/// Carves `n` elements of `T` off the front of `buf`.
pub(super) fn carve<'a, T: bytemuck::Pod>(buf: &mut &'a mut [u8], n: usize) -> Result<&'a mut [T]> {
    let bytes = n * std::mem::size_of::<T>();
    if buf.len() < bytes {
        return Err(Error::argument(format!("scratch memory too small: {} bytes left, {bytes} needed", buf.len())));
    }
    let (head, tail) = std::mem::take(buf).split_at_mut(bytes);
    *buf = tail;
    cast_mut(head)
}

/// Scratch of one single-class NMS pass.
struct Nms<'a> {
    keep_idx: &'a mut [u32],
    keep_scores: &'a mut [f32],
    sorted: &'a mut [u32],
    active: &'a mut [u8],
    selected: &'a mut [u32],
}

impl Detection {
    fn scratch_bytes(&self) -> Option<usize> {
        let (n, md) = (self.num_boxes, self.p.max_detections);
        let mut words = n.checked_mul(4)?; // decoded boxes
        if matches!(self.scores, Data::U8 { .. }) {
            words = words.checked_add(n.checked_mul(self.cols)?)?;
        }
        words = words.checked_add(n.checked_mul(5)?)?; // class/max scores, keep idx/scores, sorted, selected
        if self.p.regular {
            words = words.checked_add(md.checked_mul(8)?)?; // merge list and its copy
        } else {
            words = words.checked_add(self.p.num_classes)?;
        }
        words.checked_mul(4)?.checked_add(n) // + active flags
    }

    /// Decodes every box to (ymin, xmin, ymax, xmax) into `out`.
    fn decode(&self, enc: &[u8], anchors: &[u8], out: &mut [f32]) -> Result<()> {
        let [sy, sx, sh, sw] = self.p.scale.map(f64::from);
        let n = self.num_boxes;
        let mut one = |i: usize, e: [f32; 4], a: [f32; 4]| {
            let [y, x, h, w] = e.map(f64::from);
            let [ay, ax, ah, aw] = a.map(f64::from);
            let yc = (y / sy * ah + ay) as f32;
            let xc = (x / sx * aw + ax) as f32;
            let hh = (0.5 * (h / sh).exp() * ah) as f32;
            let hw = (0.5 * (w / sw).exp() * aw) as f32;
            out[i * 4..i * 4 + 4].copy_from_slice(&[yc - hh, xc - hw, yc + hh, xc + hw]);
        };
        match (self.boxes, self.anchors) {
            (Data::F32, _) => {
                let enc = cast::<f32>(enc)?;
                let anchors = cast::<f32>(anchors)?;
                check_len(enc.len(), n * self.box_len, "box encodings")?;
                check_len(anchors.len(), n * 4, "anchors")?;
                for i in 0..n {
                    let e = &enc[i * self.box_len..];
                    let a = &anchors[i * 4..];
                    one(i, [e[0], e[1], e[2], e[3]], [a[0], a[1], a[2], a[3]]);
                }
            }
            (Data::U8 { scale, zero_point }, anchor_data) => {
                check_len(enc.len(), n * self.box_len, "box encodings")?;
                check_len(anchors.len(), n * 4, "anchors")?;
                // Anchors have the box encodings' type (checked at build), each its own parameters.
                let (a_scale, a_zp) = match anchor_data {
                    Data::U8 { scale, zero_point } => (scale, zero_point),
                    Data::F32 => return Err(Error::argument("anchors must be uint8 like the box encodings")),
                };
                let dq = |q: u8| (f32::from(q) - zero_point as f32) * scale;
                let adq = |q: u8| (f32::from(q) - a_zp as f32) * a_scale;
                for i in 0..n {
                    let e = &enc[i * self.box_len..];
                    let a = &anchors[i * 4..];
                    one(i, [dq(e[0]), dq(e[1]), dq(e[2]), dq(e[3])], [adq(a[0]), adq(a[1]), adq(a[2]), adq(a[3])]);
                }
            }
        }
        Ok(())
    }
}

/// `optimized_ops::Dequantize` for uint8 as built for x86 (SSE4.1 turns on its NEON path through
/// NEON_2_SSE): blocks of 8 compute `float(q) * scale + float(-zp * double(scale))` with two
/// roundings, the remaining elements `float(double(scale) * (q - zp))`.
fn dequantize_scores(q: &[u8], scale: f32, zero_point: i32, out: &mut [f32]) {
    let zero_times_scale = (-f64::from(zero_point) * f64::from(scale)) as f32;
    let blocks = q.len() - q.len() % 8;
    for (d, &v) in out[..blocks].iter_mut().zip(&q[..blocks]) {
        *d = f32::from(v) * scale + zero_times_scale;
    }
    for (d, &v) in out[blocks..].iter_mut().zip(&q[blocks..]) {
        *d = (f64::from(scale) * (i64::from(v) - i64::from(zero_point)) as f64) as f32;
    }
}

fn check_len(got: usize, want: usize, what: &str) -> Result<()> {
    if got < want {
        return Err(Error::argument(format!("{what}: {got} elements, expected {want}")));
    }
    Ok(())
}

/// `std::max<float>(a, b)` (`a < b ? b : a`; keeps C++'s NaN behaviour).
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min<float>(a, b)` (`b < a ? b : a`).
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// TFLite's `ComputeIntersectionOverUnion` of decoded boxes `i` and `j`.
fn iou(boxes: &[f32], i: usize, j: usize) -> f32 {
    let (a, b) = (&boxes[i * 4..i * 4 + 4], &boxes[j * 4..j * 4 + 4]);
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    if area_a <= 0.0 || area_b <= 0.0 {
        return 0.0;
    }
    let ymin = cmax(a[0], b[0]);
    let xmin = cmax(a[1], b[1]);
    let ymax = cmin(a[2], b[2]);
    let xmax = cmin(a[3], b[3]);
    let inter = cmax(ymax - ymin, 0.0) * cmax(xmax - xmin, 0.0);
    inter / (area_a + area_b - inter)
}

// ---- libstdc++'s heap algorithms (`bits/stl_heap.h`, `__partial_sort` in `bits/stl_algo.h`).
// `less(a, b)` is the C++ comparator. Indices are isize as in C++ (ptrdiff_t division truncates).

fn push_heap<T: Copy>(h: &mut [T], mut hole: isize, top: isize, value: T, less: &impl Fn(&T, &T) -> bool) {
    let mut parent = (hole - 1) / 2;
    while hole > top && less(&h[parent as usize], &value) {
        h[hole as usize] = h[parent as usize];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    h[hole as usize] = value;
}

fn adjust_heap<T: Copy>(h: &mut [T], mut hole: isize, len: isize, value: T, less: &impl Fn(&T, &T) -> bool) {
    let top = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if less(&h[child as usize], &h[(child - 1) as usize]) {
            child -= 1;
        }
        h[hole as usize] = h[child as usize];
        hole = child;
    }
    if len & 1 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        h[hole as usize] = h[(child - 1) as usize];
        hole = child - 1;
    }
    push_heap(h, hole, top, value, less);
}

fn make_heap<T: Copy>(h: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = h.len() as isize;
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        adjust_heap(h, parent, len, h[parent as usize], less);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// `std::pop_heap` on `h[..len]`: moves the top to `h[len - 1]`.
pub(super) fn pop_heap<T: Copy>(h: &mut [T], len: usize, less: &impl Fn(&T, &T) -> bool) {
    if len > 1 {
        let last = len - 1;
        let v = h[last];
        h[last] = h[0];
        adjust_heap(h, 0, last as isize, v, less);
    }
}

/// `std::push_heap` on `h[..len]` after `h[len - 1]` was written.
pub(super) fn push_heap_back<T: Copy>(h: &mut [T], len: usize, less: &impl Fn(&T, &T) -> bool) {
    if len > 1 {
        push_heap(h, len as isize - 1, 0, h[len - 1], less);
    }
}

/// `std::partial_sort(v, v + middle, v + len, less)` as libstdc++ does it (heap select, then heap sort).
fn partial_sort<T: Copy>(v: &mut [T], middle: usize, less: &impl Fn(&T, &T) -> bool) {
    if middle == 0 {
        return;
    }
    make_heap(&mut v[..middle], less);
    for i in middle..v.len() {
        if less(&v[i], &v[0]) {
            let value = v[i];
            v[i] = v[0];
            adjust_heap(&mut v[..middle], 0, middle as isize, value, less);
        }
    }
    let mut last = middle;
    while last > 1 {
        last -= 1;
        let value = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last as isize, value, less);
    }
}

/// TFLite's `DecreasingPartialArgSort`: the first `k` entries of `idx` get the indices of the `k`
/// largest values, in decreasing order (argmax, first of equals, when `k` is 1).
fn decreasing_partial_arg_sort(values: &[f32], k: usize, idx: &mut [u32]) {
    if k == 1 {
        let mut best = 0;
        for i in 1..values.len() {
            if values[i] > values[best] {
                best = i;
            }
        }
        idx[0] = best as u32;
    } else {
        let idx = &mut idx[..values.len()];
        for (i, x) in idx.iter_mut().enumerate() {
            *x = i as u32;
        }
        partial_sort(idx, k, &|&a: &u32, &b: &u32| values[a as usize] > values[b as usize]);
    }
}

impl Detection {
    /// TFLite's `NonMaxSuppressionSingleClassHelper`: indices of the boxes kept, best first.
    fn nms_single(&self, boxes: &[f32], scores: &[f32], max_detections: usize, s: &mut Nms<'_>) -> usize {
        let mut kept = 0;
        for (i, &v) in scores.iter().enumerate() {
            if v >= self.p.score_threshold {
                s.keep_idx[kept] = i as u32;
                s.keep_scores[kept] = v;
                kept += 1;
            }
        }
        // std::stable_sort by decreasing score: the same as an unstable sort tied by position.
        // Kept scores are never NaN (they passed `>=`).
        let keep_scores = &s.keep_scores[..kept];
        let sorted = &mut s.sorted[..kept];
        for (i, x) in sorted.iter_mut().enumerate() {
            *x = i as u32;
        }
        sorted.sort_unstable_by(|&a, &b| {
            let (va, vb) = (keep_scores[a as usize], keep_scores[b as usize]);
            vb.partial_cmp(&va).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
        });
        let output_size = kept.min(max_detections);
        let active = &mut s.active[..kept];
        active.fill(1);
        let mut num_active = kept;
        let mut n = 0;
        for i in 0..kept {
            if num_active == 0 || n >= output_size {
                break;
            }
            if active[i] == 0 {
                continue;
            }
            let bi = s.keep_idx[sorted[i] as usize] as usize;
            s.selected[n] = bi as u32;
            n += 1;
            active[i] = 0;
            num_active -= 1;
            for j in i + 1..kept {
                if active[j] == 1 {
                    let bj = s.keep_idx[sorted[j] as usize] as usize;
                    if iou(boxes, bi, bj) > self.p.iou_threshold {
                        active[j] = 0;
                        num_active -= 1;
                    }
                }
            }
        }
        n
    }
}

impl Kernel for Detection {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (n, cols, off, nc) = (self.num_boxes, self.cols, self.label_offset, self.p.num_classes);
        let [ob, oc, os, on] = &mut *io.outs else {
            return Err(Error::argument("TFLite_Detection_PostProcess needs 4 outputs"));
        };
        let (out_boxes, out_classes) = (cast_mut::<f32>(ob)?, cast_mut::<f32>(oc)?);
        let (out_scores, out_num) = (cast_mut::<f32>(os)?, cast_mut::<f32>(on)?);
        let rows = self.out_rows;
        if out_boxes.len() != rows * 4 || out_classes.len() != rows || out_scores.len() != rows || out_num.len() != 1 {
            return Err(Error::argument("TFLite_Detection_PostProcess: output sizes differ from the built ones"));
        }
        // TFLite leaves rows it does not write untouched; zeros make the output deterministic.
        out_boxes.fill(0.0);
        out_classes.fill(0.0);
        out_scores.fill(0.0);
        let ins = io.ins;
        if ins.len() < 3 {
            return Err(Error::argument("TFLite_Detection_PostProcess needs 3 inputs"));
        }
        let mut buf: &mut [u8] = io.scratch;
        let decoded = carve::<f32>(&mut buf, n * 4)?;
        self.decode(ins[0], ins[2], decoded)?;
        for i in 0..n {
            let b = &decoded[i * 4..i * 4 + 4];
            if b[0] > b[2] || b[1] > b[3] {
                return Err(Error::argument(format!(
                    "TFLite_Detection_PostProcess: decoded box {i} {b:?} has ymin > ymax or xmin > xmax \
                     (negative anchor size?)"
                )));
            }
        }
        let scores: &[f32] = match self.scores {
            Data::F32 => {
                let s = cast::<f32>(ins[1])?;
                check_len(s.len(), n * cols, "class predictions")?;
                s
            }
            Data::U8 { scale, zero_point } => {
                check_len(ins[1].len(), n * cols, "class predictions")?;
                let s = carve::<f32>(&mut buf, n * cols)?;
                dequantize_scores(&ins[1][..n * cols], scale, zero_point, s);
                s
            }
        };
        let column = carve::<f32>(&mut buf, n)?;
        let mut s = Nms {
            keep_idx: carve(&mut buf, n)?,
            keep_scores: carve(&mut buf, n)?,
            sorted: carve(&mut buf, n)?,
            selected: carve(&mut buf, n)?,
            active: &mut [],
        };
        let md = self.p.max_detections;
        if self.p.regular {
            // Newer TFLite (the one the goldens come from) keeps each class's best
            // `min(detections_per_class, max_detections)` and merges them into the running list
            // with `std::inplace_merge` (stable: earlier classes win ties).
            let per_class = self.p.detections_per_class.min(md);
            let info_idx = carve::<u32>(&mut buf, 2 * md)?;
            let info_score = carve::<f32>(&mut buf, 2 * md)?;
            let tmp_idx = carve::<u32>(&mut buf, 2 * md)?;
            let tmp_score = carve::<f32>(&mut buf, 2 * md)?;
            s.active = carve::<u8>(&mut buf, n)?;
            let mut size = 0;
            for col in 0..nc {
                for (row, c) in column.iter_mut().enumerate() {
                    *c = scores[row * cols + col + off];
                }
                let selected = self.nms_single(decoded, column, per_class, &mut s);
                if selected == 0 {
                    continue;
                }
                for (i, &sel) in s.selected[..selected].iter().enumerate() {
                    info_idx[size + i] = sel * cols as u32 + (col + off) as u32;
                    info_score[size + i] = column[sel as usize];
                }
                let end = size + selected;
                let (mut a, mut b) = (0, size);
                for o in 0..end {
                    let take_b = b < end && (a >= size || info_score[b] > info_score[a]);
                    let from = if take_b { b } else { a };
                    tmp_idx[o] = info_idx[from];
                    tmp_score[o] = info_score[from];
                    if take_b {
                        b += 1;
                    } else {
                        a += 1;
                    }
                }
                info_idx[..end].copy_from_slice(&tmp_idx[..end]);
                info_score[..end].copy_from_slice(&tmp_score[..end]);
                size = end.min(md);
            }
            for i in 0..size {
                let flat = info_idx[i] as usize;
                let anchor = flat / cols;
                let class = flat - anchor * cols - off;
                out_boxes[i * 4..i * 4 + 4].copy_from_slice(&decoded[anchor * 4..anchor * 4 + 4]);
                out_classes[i] = class as f32;
                out_scores[i] = info_score[i];
            }
            out_num[0] = size as f32;
        } else {
            let tmp = carve::<u32>(&mut buf, nc)?;
            s.active = carve::<u8>(&mut buf, n)?;
            let per_anchor = self.p.max_classes_per_detection.min(nc);
            for (row, m) in column.iter_mut().enumerate() {
                let row_scores = &scores[row * cols + off..row * cols + off + nc];
                decreasing_partial_arg_sort(row_scores, per_anchor, tmp);
                *m = row_scores[tmp[0] as usize];
            }
            let selected = self.nms_single(decoded, column, md, &mut s);
            for (out, &sel) in s.selected[..selected].iter().enumerate() {
                let sel = sel as usize;
                let row_scores = &scores[sel * cols + off..sel * cols + off + nc];
                // The same deterministic ranking as above, recomputed for the kept anchors only.
                decreasing_partial_arg_sort(row_scores, per_anchor, tmp);
                for (col, &class) in tmp[..per_anchor].iter().enumerate() {
                    let r = self.p.max_classes_per_detection * out + col;
                    out_boxes[r * 4..r * 4 + 4].copy_from_slice(&decoded[sel * 4..sel * 4 + 4]);
                    out_classes[r] = class as f32;
                    out_scores[r] = row_scores[class as usize];
                }
            }
            out_num[0] = selected as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "detection_tests.rs"]
pub(super) mod tests;
