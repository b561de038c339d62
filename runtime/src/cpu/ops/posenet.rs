//! `PosenetDecoderOp`: Coral's multi-person PoseNet decoder (libcoral `coral/posenet/
//! posenet_decoder.cc` and `posenet_decoder_op.cc`), in both its forms: PoseNet's (3 inputs, 4
//! outputs) and BodyPix's, which adds long-range offsets and person instance masks.
//!
//! Inputs: keypoint heatmaps `[1, H, W, 17]` (logits), short-range offsets `[1, H, W, 34]`,
//! mid-range offsets `[1, H, W, 64]` and, for BodyPix, long-range offsets `[1, H, W, 34]` (pixels),
//! uint8 or float32. Outputs (float32): keypoints `[1, max_detections, 17, 2]` as (y, x) pixels,
//! keypoint scores `[1, max_detections, 17]`, pose scores `[1, max_detections]`, the number of
//! poses `[1]` and, for BodyPix, the masks `[1, max_detections, 33, 33]`. Rows past the number of
//! poses are zero. The arithmetic follows libcoral step by step in the same float types; its
//! priority queues are replayed with libstdc++'s heap algorithms so that equal scores pop in the
//! same order.
//!
//! The masks keep libcoral's layout, which is not the declared `[33, 33]` one: every grid cell
//! `(y, x)` goes to the pose whose keypoints lie nearest its long-range embedding, and sets element
//! `(pose * W + y) * H + x` of the output to 1 (the H x W grid of a pose starts at
//! `pose * H * W`, rows of H elements indexed by `y * H + x`). With no pose, libcoral's arg-min
//! over zero poses is 0, so the cells of mask 0 are still set; this kernel does the same. A grid
//! whose writes would fall outside the `max_detections` masks is refused when the model loads.

use super::detection::{carve, flex_float, flex_int, pop_heap, push_heap_back};
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::{Error, Result};
use crate::model::TensorType;
use crate::package::flexbuffer::{FlexError, FlexRef, FlexType};

const NUM_KEYPOINTS: usize = 17;
const NUM_EDGES: usize = 16;
const REFINEMENT_STEPS: usize = 5;
const LOCAL_MAXIMUM_RADIUS: usize = 1;
/// Upper bound of the queue of one pose's backtracking: the root plus one entry per edge.
const DECODE_QUEUE: usize = 1 + 2 * NUM_EDGES;
/// Refinement steps along the long-range offsets when the masks assign cells to poses.
const MASK_REFINEMENT_STEPS: usize = 2;
/// Side of the fixed mask output of the op.
const MASK_SIDE: usize = 33;

/// Parent and child keypoint of each edge: 16 forward edges, then the same 16 backward.
const EDGES: [(u8, u8); 2 * NUM_EDGES] = [
    (0, 1),
    (1, 3),
    (0, 2),
    (2, 4),
    (0, 5),
    (5, 7),
    (7, 9),
    (5, 11),
    (11, 13),
    (13, 15),
    (0, 6),
    (6, 8),
    (8, 10),
    (6, 12),
    (12, 14),
    (14, 16),
    (1, 0),
    (3, 1),
    (2, 0),
    (4, 2),
    (5, 0),
    (7, 5),
    (9, 7),
    (11, 5),
    (13, 11),
    (15, 13),
    (6, 0),
    (8, 6),
    (10, 8),
    (12, 6),
    (14, 12),
    (16, 14),
];

/// How an input's elements become floats.
#[derive(Debug, Clone, Copy)]
enum Data {
    F32,
    U8 { scale: f32, zero_point: i32 },
}

/// A queued keypoint: score, y, x, keypoint id (as f32, exact).
type Entry = [f32; 4];

fn entry_less(a: &Entry, b: &Entry) -> bool {
    a[0] < b[0]
}

struct Posenet {
    max_detections: usize,
    score_threshold: f32,
    stride: i32,
    nms_radius: f32,
    height: usize,
    width: usize,
    inputs: [Data; 4],
    /// BodyPix form: long-range offsets in, instance masks out.
    masks: bool,
}

/// Builds the kernel; sets the output shapes.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let masks = match (ctx.inputs.len(), ctx.outputs.len()) {
        (3, 4) => false,
        (4, 5) => true,
        (i, o) => {
            return Err(ctx.err(format!(
                "needs 3 inputs and 4 outputs (PoseNet) or 4 inputs and 5 outputs (BodyPix, with instance masks), has {i} and {o}"
            )))
        }
    };
    let bytes = ctx.custom_options.ok_or_else(|| ctx.err("custom options (a FlexBuffer map) are missing"))?;
    let flex = |e: FlexError| ctx.err(format!("custom options: {e}"));
    let map = FlexRef::root(bytes).and_then(|r| r.as_map()).map_err(flex)?;
    let get = |key: &str| -> Result<FlexRef<'_>> {
        match map.get(key).map_err(flex)? {
            Some(r) if r.flex_type() != FlexType::Null => Ok(r),
            _ => Err(ctx.err(format!("custom options lack {key:?}"))),
        }
    };
    let max_detections = flex_int(get("max_detections")?).map_err(flex)?;
    let stride = flex_int(get("stride")?).map_err(flex)?;
    let score_threshold = flex_float(get("score_threshold")?).map_err(flex)?;
    let nms_radius = flex_float(get("nms_radius")?).map_err(flex)?;
    if !(0..=1 << 16).contains(&max_detections) {
        return Err(ctx.err(format!("max_detections {max_detections} is out of range")));
    }
    if !(1..=i64::from(i32::MAX)).contains(&stride) {
        return Err(ctx.err(format!("stride {stride} must be positive")));
    }
    let channels = [NUM_KEYPOINTS, 2 * NUM_KEYPOINTS, 4 * NUM_EDGES, 2 * NUM_KEYPOINTS];
    let first = ctx.input(0)?.shape.clone();
    if first.len() != 4 || first[0] != 1 {
        return Err(ctx.err(format!("heatmaps have shape {first:?}, expected [1, height, width, 17]")));
    }
    let (height, width) = (first[1], first[2]);
    let mut inputs = [Data::F32; 4];
    for (i, &c) in channels.iter().enumerate().take(ctx.inputs.len()) {
        let t = ctx.input(i)?;
        if t.shape != [1, height, width, c] {
            return Err(ctx.err(format!("input {i} has shape {:?}, expected [1, {height}, {width}, {c}]", t.shape)));
        }
        inputs[i] = match t.dtype {
            TensorType::FLOAT32 => Data::F32,
            TensorType::UINT8 => {
                let (scale, zero_point) = t.qparams()?;
                Data::U8 { scale, zero_point }
            }
            other => return Err(ctx.err(format!("input {i} has type {}; expected uint8 or float32", other.name()))),
        };
    }
    if height == 0 || width == 0 || height.checked_mul(width).is_none_or(|n| n > 1 << 24) {
        return Err(ctx.err(format!("a {height} x {width} grid is not supported")));
    }
    let md = max_detections as usize;
    if masks {
        // libcoral writes element (pose * W + y) * H + x of the masks, for poses below the count
        // (and pose 0 when there is none), and clears the first count * H * W.
        let last = ((md.max(1) - 1) * width + height - 1) * height + width - 1;
        let size = md * MASK_SIDE * MASK_SIDE;
        if last >= size || height * width > MASK_SIDE * MASK_SIDE {
            return Err(ctx.err(format!(
                "instance masks of a {height} x {width} grid do not fit the op's {md} masks of {MASK_SIDE} x {MASK_SIDE} \
                 (Coral's decoder would write past its output); use a model whose grid has at most {} cells",
                MASK_SIDE * MASK_SIDE
            )));
        }
    }
    let mut shapes = vec![vec![1, md, NUM_KEYPOINTS, 2], vec![1, md, NUM_KEYPOINTS], vec![1, md], vec![1]];
    if masks {
        shapes.push(vec![1, md, MASK_SIDE, MASK_SIDE]);
    }
    for (out, shape) in ctx.outputs.iter_mut().zip(shapes) {
        out.shape = shape;
        out.dtype = TensorType::FLOAT32;
        out.quant = None;
    }
    let k = Posenet {
        max_detections: md,
        score_threshold,
        stride: stride as i32,
        nms_radius,
        height,
        width,
        inputs,
        masks,
    };
    let scratch = k.scratch_words() * 4;
    Built::with_scratch(k, scratch)
}

/// libcoral's `clamp` (`v < lo ? lo : hi < v ? hi : v`).
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    if v < lo {
        lo
    } else if hi < v {
        hi
    } else {
        v
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `-std::log(1.0f / (x + 1E-6) - 1.0f)`, in double as C++ promotes it.
fn logodds(x: f32) -> f32 {
    -(1.0 / (f64::from(x) + 1e-6) - 1.0).ln() as f32
}

fn squared_distance(a: (f32, f32), b: (f32, f32)) -> f32 {
    let dy = b.0 - a.0;
    let dx = b.1 - a.1;
    dy * dy + dx * dx
}

/// A `[height, width, channels]` float map.
#[derive(Clone, Copy)]
struct Map<'a> {
    data: &'a [f32],
    height: usize,
    width: usize,
    channels: usize,
}

impl Map<'_> {
    /// Bilinear samples of channels `c0` and `c1` at (y, x), as `SampleTensorAtMultipleChannels`.
    fn sample2(&self, y: f32, x: f32, c0: usize, c1: usize) -> (f32, f32) {
        let lin = |v: f32, n: usize| {
            let proj = clamp(v, 0.0, n as f32 - 1.0);
            // NaN casts to 0; everything else is within [0, n - 1] after the clamp.
            let (lo, hi) = (proj.floor() as usize, proj.ceil() as usize);
            (lo.min(n - 1), hi.min(n - 1), v - lo as f32)
        };
        let (y0, y1, yl) = lin(y, self.height);
        let (x0, x1, xl) = lin(x, self.width);
        let at = |yy: usize, xx: usize| (yy * self.width + xx) * self.channels;
        let (tl, tr, bl, br) = (at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1));
        let t = self.data;
        let one = |c: usize| {
            (1.0 - yl) * ((1.0 - xl) * t[tl + c] + xl * t[tr + c]) + yl * ((1.0 - xl) * t[bl + c] + xl * t[br + c])
        };
        (one(c0), one(c1))
    }
}

impl Posenet {
    fn scratch_words(&self) -> usize {
        let cells = self.height * self.width;
        let md = self.max_detections;
        cells * (NUM_KEYPOINTS + 2 * NUM_KEYPOINTS + 4 * NUM_EDGES)
            + cells * NUM_KEYPOINTS * 4
            + DECODE_QUEUE * 4
            + md * (3 * NUM_KEYPOINTS + 2)
            + if self.masks { cells * 2 * NUM_KEYPOINTS } else { 0 }
    }

    /// `DequantizeTensor`: `(q - zp) * (scale * extra)` in float, or `v * extra` for floats.
    fn dequantize(&self, i: usize, src: &[u8], extra: f32, dst: &mut [f32]) -> Result<()> {
        match self.inputs[i] {
            Data::F32 => {
                let src = cast::<f32>(src)?;
                check_len(src.len(), dst.len(), i)?;
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v * extra;
                }
            }
            Data::U8 { scale, zero_point } => {
                check_len(src.len(), dst.len(), i)?;
                let (zp, scale) = (zero_point as f32, scale * extra);
                for (d, &q) in dst.iter_mut().zip(src) {
                    *d = (f32::from(q) - zp) * scale;
                }
            }
        }
        Ok(())
    }

    /// `FindDisplacedPosition`: follow a mid-range offset, then refine by short-range offsets.
    fn displaced(&self, short: Map<'_>, mid: Map<'_>, from: (f32, f32), edge: usize, target: usize) -> (f32, f32) {
        let (hmax, wmax) = (self.height as f32 - 1.0, self.width as f32 - 1.0);
        let (dy, dx) = mid.sample2(from.0, from.1, edge, NUM_EDGES + edge);
        let mut y = clamp(from.0 + dy, 0.0, hmax);
        let mut x = clamp(from.1 + dx, 0.0, wmax);
        for _ in 0..REFINEMENT_STEPS {
            let (dy, dx) = short.sample2(y, x, target, NUM_KEYPOINTS + target);
            y = clamp(y + dy, 0.0, hmax);
            x = clamp(x + dx, 0.0, wmax);
        }
        (y, x)
    }

    /// `BacktrackDecodePose`: grows a pose from its root along the edges, best scores first.
    fn backtrack(&self, maps: [Map<'_>; 3], root: Entry, queue: &mut [Entry], points: &mut [f32], scores: &mut [f32]) {
        let [heat, short, mid] = maps;
        let root_id = root[3] as usize;
        let root_score = heat.sample2(root[1], root[2], root_id, root_id).0;
        queue[0] = [root_score, root[1], root[2], root[3]];
        let mut len = 1;
        let mut decoded = [false; NUM_KEYPOINTS];
        while len > 0 {
            pop_heap(queue, len, &entry_less);
            len -= 1;
            let [score, y, x, id] = queue[len];
            let id = id as usize;
            if decoded[id] {
                continue;
            }
            points[2 * id] = y;
            points[2 * id + 1] = x;
            scores[id] = score;
            decoded[id] = true;
            for (k, &(parent, child)) in EDGES.iter().enumerate() {
                let child = usize::from(child);
                if usize::from(parent) != id || decoded[child] {
                    continue;
                }
                // libcoral's mid-offset channel of a backward edge; `>` (not `>=`) as upstream,
                // so the first backward edge reads the forward block.
                let edge = if k > NUM_EDGES { k + NUM_EDGES } else { k };
                let (cy, cx) = self.displaced(short, mid, (y, x), edge, child);
                let child_score = heat.sample2(cy, cx, child, child).0;
                if len < queue.len() {
                    queue[len] = [child_score, cy, cx, child as f32];
                    len += 1;
                    push_heap_back(queue, len, &entry_less);
                }
            }
        }
    }
}

impl Posenet {
    /// `DecodeInstanceMasks`: each cell goes to the pose nearest its long-range embedding
    /// (`MatchEmbeddingToInstance`), in libcoral's element layout (see the module notes).
    fn decode_masks(&self, long: Map<'_>, poses: &[f32], count: usize, out: &mut [f32]) -> Result<()> {
        let (h, w) = (self.height, self.width);
        let stride = self.stride as f32;
        let (hmax, wmax) = (h as f32 - 1.0, w as f32 - 1.0);
        out.fill(0.0);
        for y in 0..h {
            for x in 0..w {
                // GetEmbedding for every keypoint: follow the long-range offsets 1 + 2 times.
                let mut embedding = [(0.0f32, 0.0f32); NUM_KEYPOINTS];
                for (k, e) in embedding.iter_mut().enumerate() {
                    let (mut ey, mut ex) = (y as f32, x as f32);
                    for _ in 0..=MASK_REFINEMENT_STEPS {
                        let (dy, dx) = long.sample2(ey, ex, k, NUM_KEYPOINTS + k);
                        ey = clamp(ey + dy, 0.0, hmax);
                        ex = clamp(ex + dx, 0.0, wmax);
                    }
                    *e = (ey * stride, ex * stride);
                }
                // The first pose with the smallest sum of squared distances (std::min_element);
                // 0 when there is no pose.
                let mut best = 0;
                let mut best_distance = 0.0f32;
                for p in 0..count {
                    let mut distance = 0.0f32;
                    for (k, &e) in embedding.iter().enumerate() {
                        let kp = &poses[(p * NUM_KEYPOINTS + k) * 2..];
                        distance += squared_distance(e, (kp[0], kp[1]));
                    }
                    if p == 0 || distance < best_distance {
                        best = p;
                        best_distance = distance;
                    }
                }
                let at = (best * w + y) * h + x;
                *out.get_mut(at).ok_or_else(|| Error::argument("PosenetDecoderOp: mask element out of range"))? = 1.0;
            }
        }
        Ok(())
    }
}

/// Sum of `scores` in decreasing order (`DecreasingArgSort` then a running sum), skipping
/// `skip[k]`, divided by 17.
fn mean_of_sorted(scores: &[f32], skip: &[bool; NUM_KEYPOINTS]) -> f32 {
    let mut order: [usize; NUM_KEYPOINTS] = std::array::from_fn(|k| k);
    order.sort_unstable_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    let mut total = 0.0f32;
    for &k in &order {
        if !skip[k] {
            total += scores[k];
        }
    }
    total / NUM_KEYPOINTS as f32
}

/// Indices `0..n` by decreasing `values` (ties by index).
fn decreasing_order(values: &[f32], idx: &mut [u32]) {
    for (i, x) in idx.iter_mut().enumerate() {
        *x = i as u32;
    }
    idx.sort_unstable_by(|&a, &b| {
        let (va, vb) = (values[a as usize], values[b as usize]);
        vb.partial_cmp(&va).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
    });
}

fn check_len(got: usize, want: usize, input: usize) -> Result<()> {
    if got < want {
        return Err(Error::argument(format!("PosenetDecoderOp input {input}: {got} elements, expected {want}")));
    }
    Ok(())
}

impl Kernel for Posenet {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (h, w, md) = (self.height, self.width, self.max_detections);
        let (o_points, o_kscores, o_scores, o_count, o_masks) = match &mut *io.outs {
            [a, b, c, d] if !self.masks => (a, b, c, d, None),
            [a, b, c, d, e] if self.masks => (a, b, c, d, Some(e)),
            _ => return Err(Error::argument("PosenetDecoderOp: the number of outputs differs from the built one")),
        };
        let (out_points, out_kscores) = (cast_mut::<f32>(o_points)?, cast_mut::<f32>(o_kscores)?);
        let (out_scores, out_count) = (cast_mut::<f32>(o_scores)?, cast_mut::<f32>(o_count)?);
        if out_points.len() != md * NUM_KEYPOINTS * 2
            || out_kscores.len() != md * NUM_KEYPOINTS
            || out_scores.len() != md
            || out_count.len() != 1
        {
            return Err(Error::argument("PosenetDecoderOp: output sizes differ from the built ones"));
        }
        out_points.fill(0.0);
        out_kscores.fill(0.0);
        out_scores.fill(0.0);
        if io.ins.len() < 3 + usize::from(self.masks) {
            return Err(Error::argument("PosenetDecoderOp: fewer inputs than built"));
        }
        let mut buf: &mut [u8] = io.scratch;
        let cells = h * w;
        let heat = carve::<f32>(&mut buf, cells * NUM_KEYPOINTS)?;
        let short = carve::<f32>(&mut buf, cells * 2 * NUM_KEYPOINTS)?;
        let mid = carve::<f32>(&mut buf, cells * 4 * NUM_EDGES)?;
        let queue = carve::<Entry>(&mut buf, cells * NUM_KEYPOINTS)?;
        let decode_queue = carve::<Entry>(&mut buf, DECODE_QUEUE)?;
        let poses = carve::<f32>(&mut buf, md * NUM_KEYPOINTS * 2)?;
        let kscores = carve::<f32>(&mut buf, md * NUM_KEYPOINTS)?;
        let instance = carve::<f32>(&mut buf, md)?;
        let order = carve::<u32>(&mut buf, md)?;
        let long = if self.masks { carve::<f32>(&mut buf, cells * 2 * NUM_KEYPOINTS)? } else { &mut [][..] };
        let inv_stride = (1.0 / f64::from(self.stride)) as f32;
        self.dequantize(0, io.ins[0], 1.0, heat)?;
        self.dequantize(1, io.ins[1], inv_stride, short)?;
        self.dequantize(2, io.ins[2], inv_stride, mid)?;
        let map = |data, channels| Map { data, height: h, width: w, channels };
        let maps = [map(&*heat, NUM_KEYPOINTS), map(&*short, 2 * NUM_KEYPOINTS), map(&*mid, 4 * NUM_EDGES)];
        let nms_radius = self.nms_radius / self.stride as f32;
        let squared_radius = nms_radius * nms_radius;

        // BuildKeypointWithScoreQueue: local maxima of the heatmaps above the threshold logit.
        let min_logit = logodds(self.score_threshold);
        let mut len = 0;
        let r = LOCAL_MAXIMUM_RADIUS;
        for y in 0..h {
            for x in 0..w {
                let cell = y * w + x;
                for j in 0..NUM_KEYPOINTS {
                    let score = heat[cell * NUM_KEYPOINTS + j];
                    // Only local maxima above the threshold (a NaN score is neither).
                    let local_max = score >= min_logit
                        && !(y.saturating_sub(r)..(y + r + 1).min(h)).any(|yy| {
                            (x.saturating_sub(r)..(x + r + 1).min(w))
                                .any(|xx| heat[(yy * w + xx) * NUM_KEYPOINTS + j] > score)
                        });
                    if local_max {
                        let dy = short[cell * 2 * NUM_KEYPOINTS + j];
                        let dx = short[cell * 2 * NUM_KEYPOINTS + NUM_KEYPOINTS + j];
                        let ry = clamp(y as f32 + dy, 0.0, h as f32 - 1.0);
                        let rx = clamp(x as f32 + dx, 0.0, w as f32 - 1.0);
                        queue[len] = [score, ry, rx, j as f32];
                        len += 1;
                        push_heap_back(queue, len, &entry_less);
                    }
                }
            }
        }

        // DecodeAllPoses: roots in decreasing score order, skipping those near a kept pose.
        let mut count = 0;
        while count < md && len > 0 {
            pop_heap(queue, len, &entry_less);
            len -= 1;
            let root = queue[len];
            let id = root[3] as usize;
            let near = (0..count).any(|p| {
                let kp = &poses[(p * NUM_KEYPOINTS + id) * 2..];
                squared_distance((root[1], root[2]), (kp[0], kp[1])) <= squared_radius
            });
            if near {
                continue;
            }
            let points = &mut poses[count * NUM_KEYPOINTS * 2..(count + 1) * NUM_KEYPOINTS * 2];
            let scores = &mut kscores[count * NUM_KEYPOINTS..(count + 1) * NUM_KEYPOINTS];
            points.fill(-1.0);
            scores.fill(-1e5);
            self.backtrack(maps, root, decode_queue, points, scores);
            for s in scores.iter_mut() {
                *s = sigmoid(*s);
            }
            let score = mean_of_sorted(scores, &[false; NUM_KEYPOINTS]);
            if score >= self.score_threshold {
                instance[count] = score;
                count += 1;
            }
        }

        // PerformSoftKeypointNMS: rescore each pose without the keypoints that better poses claim.
        let order = &mut order[..count];
        decreasing_order(&instance[..count], order);
        for i in 0..count {
            let cur = order[i] as usize;
            let mut occluded = [false; NUM_KEYPOINTS];
            for &prev in &order[..i] {
                let prev = prev as usize;
                for (k, o) in occluded.iter_mut().enumerate() {
                    let a = &poses[(cur * NUM_KEYPOINTS + k) * 2..];
                    let b = &poses[(prev * NUM_KEYPOINTS + k) * 2..];
                    if squared_distance((a[0], a[1]), (b[0], b[1])) <= squared_radius {
                        *o = true;
                    }
                }
            }
            instance[cur] = mean_of_sorted(&kscores[cur * NUM_KEYPOINTS..(cur + 1) * NUM_KEYPOINTS], &occluded);
        }
        decreasing_order(&instance[..count], order);
        let stride = self.stride as f32;
        let mut n = 0;
        for &p in order.iter() {
            let p = p as usize;
            if instance[p] < self.score_threshold {
                break;
            }
            let src = &poses[p * NUM_KEYPOINTS * 2..(p + 1) * NUM_KEYPOINTS * 2];
            for (d, &s) in out_points[n * NUM_KEYPOINTS * 2..(n + 1) * NUM_KEYPOINTS * 2].iter_mut().zip(src) {
                *d = s * stride;
            }
            out_kscores[n * NUM_KEYPOINTS..(n + 1) * NUM_KEYPOINTS]
                .copy_from_slice(&kscores[p * NUM_KEYPOINTS..(p + 1) * NUM_KEYPOINTS]);
            out_scores[n] = instance[p];
            n += 1;
        }
        out_count[0] = n as f32;
        if let Some(o_masks) = o_masks {
            let out_masks = cast_mut::<f32>(o_masks)?;
            if out_masks.len() != md * MASK_SIDE * MASK_SIDE {
                return Err(Error::argument("PosenetDecoderOp: mask output size differs from the built one"));
            }
            self.dequantize(3, io.ins[3], inv_stride, long)?;
            self.decode_masks(map(&*long, 2 * NUM_KEYPOINTS), out_points, n, out_masks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::detection::tests::{build_op, run_op, tensor};
    use crate::model::Model;

    use crate::test_data::testdata;

    fn options(max_detections: i64, stride: i64) -> Vec<u8> {
        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", max_detections);
        m.push("nms_radius", 10.0f32);
        m.push("score_threshold", 0.2f32);
        m.push("stride", stride);
        m.end_map();
        b.view().to_vec()
    }

    fn grid_inputs(h: usize, w: usize) -> Vec<crate::cpu::TensorInfo> {
        [NUM_KEYPOINTS, 2 * NUM_KEYPOINTS, 4 * NUM_EDGES]
            .iter()
            .enumerate()
            .map(|(i, &c)| tensor(i, &[1, h, w, c], TensorType::UINT8, Some((0.5, 128))))
            .collect()
    }

    /// Decodes the golden decoder inputs of `tag` with the model's own node and options.
    fn decode_golden(tag: &str) -> Vec<Vec<f32>> {
        let root = testdata();
        let model = Model::open(root.join("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite")).unwrap();
        let sg = &model.subgraphs()[0];
        let op = sg.operators.iter().find(|op| model.op_name(op) == "PosenetDecoderOp").unwrap();
        let inputs: Vec<_> = op
            .inputs
            .iter()
            .map(|t| {
                let t = &sg.tensors[t.unwrap()];
                let q = t.quantization.as_ref().map(|q| (q.scale[0], q.zero_point[0] as i32));
                let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                tensor(t.index, &shape, t.dtype, q)
            })
            .collect();
        let indices: Vec<usize> = inputs.iter().map(|t| t.index).collect();
        let (built, outs) = build_op("PosenetDecoderOp", model.custom_options(op), inputs, 4, build).unwrap();
        // The golden's outputs are tensors 98, 100, 96 (heatmaps, short, mid offsets) as out0..2.
        let dir = root.join("golden/posenet_mobilenet_v1_075_353_481_16_quant_decoder");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{tag}.json"))).unwrap()).unwrap();
        let data: Vec<Vec<u8>> = indices
            .iter()
            .map(|&t| {
                let o = json["outputs"].as_array().unwrap().iter().find(|o| o["index"] == t).unwrap();
                std::fs::read(dir.join(o["file"].as_str().unwrap())).unwrap()
            })
            .collect();
        let ins: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        assert_eq!(outs[0].shape, [1, 20, NUM_KEYPOINTS, 2]);
        run_op(&built, &outs, &ins).unwrap()
    }

    #[test]
    fn golden_inputs_match_upstream_reference_poses() {
        let out = decode_golden("test_image");
        let csv = std::fs::read_to_string(
            testdata().join("posenet/posenet_mobilenet_v1_075_353_481_16_quant_decoder_reference.csv"),
        )
        .unwrap();
        // pose_id, pose_score, keypoint_id, keypoint_score, keypoint_x, keypoint_y (x, y / image size).
        let rows: Vec<Vec<f32>> =
            csv.lines().skip(1).map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect()).collect();
        let poses = rows.iter().map(|r| r[0] as usize).max().unwrap() + 1;
        assert_eq!(out[3], [poses as f32], "number of poses");
        for r in &rows {
            let (p, k) = (r[0] as usize, r[2] as usize);
            let score = out[1][p * NUM_KEYPOINTS + k];
            let (y, x) = (out[0][(p * NUM_KEYPOINTS + k) * 2], out[0][(p * NUM_KEYPOINTS + k) * 2 + 1]);
            assert!((out[2][p] - r[1]).abs() < 0.05, "pose {p} score {} vs {}", out[2][p], r[1]);
            if r[3] > 0.5 {
                assert!((score - r[3]).abs() < 0.1, "pose {p} keypoint {k} score {score} vs {}", r[3]);
                assert!((y - r[5] * 353.0).abs() < 4.0, "pose {p} keypoint {k} y {y} vs {}", r[5] * 353.0);
                assert!((x - r[4] * 481.0).abs() < 4.0, "pose {p} keypoint {k} x {x} vs {}", r[4] * 481.0);
            }
        }
        // Rows past the poses stay zero.
        assert!(out[2][poses..].iter().chain(&out[0][poses * NUM_KEYPOINTS * 2..]).all(|&v| v == 0.0));
    }

    #[test]
    fn squat_golden_decodes() {
        let out = decode_golden("squat");
        let n = out[3][0] as usize;
        assert!(n >= 1, "no pose found");
        assert!(out[2][..n].windows(2).all(|w| w[0] >= w[1]), "pose scores not sorted: {:?}", &out[2][..n]);
        assert!(out[2][..n].iter().all(|&s| (0.2..=1.0).contains(&s)));
        for (i, &v) in out[0][..n * NUM_KEYPOINTS * 2].iter().enumerate() {
            let limit = if i % 2 == 0 { 352.0 } else { 480.0 };
            assert!((0.0..=limit).contains(&v), "coordinate {i} = {v}");
        }
    }

    /// Runs a case of `runtime/tests/data/posenet_decoder` (outputs made by Coral's own decoder,
    /// see `tools/posenet-reference/make_cases.py`) and compares every output bit for bit.
    fn decoder_case(name: &str) -> Vec<Vec<f32>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/posenet_decoder").join(name);
        let case: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
        let read = |t: &serde_json::Value| {
            // A file of the case, or one of the shared test data's goldens.
            let path = match t["file"].as_str() {
                Some(f) => dir.join(f),
                None => testdata().join(t["testdata"].as_str().unwrap()),
            };
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if path.extension().is_some_and(|e| e == "gz") {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out).unwrap();
                out
            } else {
                bytes
            }
        };
        let o = &case["options"];
        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", o["max_detections"].as_i64().unwrap());
        m.push("nms_radius", o["nms_radius"].as_f64().unwrap() as f32);
        m.push("score_threshold", o["score_threshold"].as_f64().unwrap() as f32);
        m.push("stride", o["stride"].as_i64().unwrap());
        m.end_map();
        let ins = case["inputs"].as_array().unwrap();
        let infos = ins
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let shape: Vec<usize> =
                    t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let q = (t["scale"].as_f64().unwrap() as f32, t["zero_point"].as_i64().unwrap() as i32);
                tensor(i, &shape, TensorType::UINT8, Some(q))
            })
            .collect();
        let outputs = case["outputs"].as_array().unwrap();
        let (built, outs) = build_op("PosenetDecoderOp", Some(b.view()), infos, outputs.len(), build).unwrap();
        let data: Vec<Vec<u8>> = ins.iter().map(read).collect();
        let views: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        let got = run_op(&built, &outs, &views).unwrap();
        for (j, want) in outputs.iter().enumerate() {
            let want: Vec<f32> = bytemuck::pod_collect_to_vec(&read(want));
            assert_eq!(got[j].len(), want.len(), "{name}: output {j} size");
            let diff = got[j].iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
            assert!(
                diff.is_none(),
                "{name}: output {j} differs at {diff:?}: {:?} vs {:?}",
                got[j][diff.unwrap()],
                want[diff.unwrap()]
            );
        }
        assert_eq!(got[3][0] as u64, case["poses"].as_u64().unwrap());
        got
    }

    #[test]
    fn bodypix_masks_equal_coral_decoder_on_a_real_model() {
        let out = decoder_case("bodypix_grace_hopper");
        assert!(out[3][0] >= 1.0, "Grace Hopper gives a pose");
        assert!(out[4].iter().filter(|&&v| v == 1.0).count() > 100, "mask cells set");
    }

    #[test]
    fn bodypix_masks_equal_coral_decoder_on_random_maps() {
        let out = decoder_case("random_9x11");
        assert_eq!(out[3][0], 10.0, "the random maps fill every detection");
    }

    #[test]
    fn bodypix_masks_without_poses_mark_mask_zero_as_coral_does() {
        let out = decoder_case("no_pose_5x6");
        assert_eq!(out[3][0], 0.0);
        // The 5 x 6 grid's 30 cells land on 26 distinct elements of libcoral's layout.
        assert_eq!(out[4].iter().filter(|&&v| v == 1.0).count(), 26);
    }

    #[test]
    fn posenet_poses_equal_coral_decoder_bit_for_bit() {
        for tag in ["posenet_test_image", "posenet_squat"] {
            let out = decoder_case(tag);
            assert!(out[3][0] >= 1.0, "{tag}: no pose");
        }
    }

    #[test]
    fn bodypix_grid_too_large_for_the_masks_is_refused() {
        let mut ins = grid_inputs(46, 81);
        ins.push(tensor(3, &[1, 46, 81, 34], TensorType::UINT8, Some((0.5, 128))));
        let err = build_op("PosenetDecoderOp", Some(&options(20, 16)), ins, 5, build).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("46 x 81 grid"), "{err}");
        // Three inputs with five outputs is neither form.
        let err =
            build_op("PosenetDecoderOp", Some(&options(20, 16)), grid_inputs(4, 5), 5, build).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("4 inputs and 5 outputs"), "{err}");
    }

    #[test]
    fn flat_heatmaps_give_no_pose() {
        let (built, outs) = build_op("PosenetDecoderOp", Some(&options(5, 16)), grid_inputs(4, 5), 4, build).unwrap();
        // Heatmap logits (0 - 128) * 0.5 = -64: far below the threshold.
        let (heat, short, mid) = (vec![0u8; 4 * 5 * 17], vec![128u8; 4 * 5 * 34], vec![128u8; 4 * 5 * 64]);
        let out = run_op(&built, &outs, &[&heat, &short, &mid]).unwrap();
        assert_eq!(out[3], [0.0]);
        assert!(out[..3].iter().flatten().all(|&v| v == 0.0));
    }

    #[test]
    fn one_peak_gives_one_pose() {
        let (built, outs) = build_op("PosenetDecoderOp", Some(&options(5, 16)), grid_inputs(4, 5), 4, build).unwrap();
        // Every keypoint peaks at cell (2, 3) with logit (255 - 128) * 0.5 = 63.5; no offsets.
        let mut heat = vec![100u8; 4 * 5 * 17];
        heat[(2 * 5 + 3) * 17..(2 * 5 + 4) * 17].fill(255);
        let (short, mid) = (vec![128u8; 4 * 5 * 34], vec![128u8; 4 * 5 * 64]);
        let out = run_op(&built, &outs, &[&heat, &short, &mid]).unwrap();
        assert_eq!(out[3], [1.0]);
        assert!(out[2][0] > 0.99);
        assert!(out[0][..34].chunks(2).all(|p| p == [32.0, 48.0]), "{:?}", &out[0][..34]);
        assert!(out[2][1..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn invalid_options_and_shapes_are_errors() {
        let try_build = |opts: Option<&[u8]>, ins| {
            build_op("PosenetDecoderOp", opts, ins, 4, build).map(|_| ()).unwrap_err().to_string()
        };
        assert!(try_build(None, grid_inputs(4, 5)).contains("custom options"));
        assert!(try_build(Some(&[7, 7, 7]), grid_inputs(4, 5)).contains("custom options"));
        assert!(try_build(Some(&options(5, 0)), grid_inputs(4, 5)).contains("stride"));
        assert!(try_build(Some(&options(-1, 16)), grid_inputs(4, 5)).contains("max_detections"));
        let mut b = flexbuffers::Builder::default();
        let mut m = b.start_map();
        m.push("max_detections", 3i64);
        m.end_map();
        assert!(try_build(Some(b.view()), grid_inputs(4, 5)).contains("lack"));
        let mut wrong = grid_inputs(4, 5);
        wrong[2] = tensor(2, &[1, 4, 5, 32], TensorType::UINT8, Some((0.5, 128)));
        assert!(try_build(Some(&options(5, 16)), wrong).contains("shape"));
        let mut wrong = grid_inputs(4, 5);
        wrong[1] = tensor(1, &[1, 4, 5, 34], TensorType::INT8, Some((0.5, 0)));
        assert!(try_build(Some(&options(5, 16)), wrong).contains("type"));
    }
}
