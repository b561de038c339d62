//! Unit tests of `TFLite_Detection_PostProcess`, and helpers that build and run a kernel by hand
//! (shared with the PosenetDecoderOp tests).

use super::*;
use crate::cpu::kernel::{BuildCtx, Built};
use crate::cpu::par::Par;
use crate::cpu::{QuantParams, TensorInfo};
use crate::model::OpOptions;

pub(in crate::cpu::ops) fn tensor(
    index: usize,
    shape: &[usize],
    dtype: TensorType,
    q: Option<(f32, i32)>,
) -> TensorInfo {
    TensorInfo {
        index,
        name: format!("t{index}"),
        shape: shape.to_vec(),
        dtype,
        quant: q.map(|(s, z)| QuantParams { scale: vec![s], zero_point: vec![z], axis: 0 }),
    }
}

/// Builds a kernel of `op` on the given inputs; returns it with the resolved outputs.
pub(in crate::cpu::ops) fn build_op(
    op: &str,
    options: Option<&[u8]>,
    inputs: Vec<TensorInfo>,
    num_outputs: usize,
    f: fn(&mut BuildCtx<'_>) -> Result<Built>,
) -> Result<(Built, Vec<TensorInfo>)> {
    let op_options = OpOptions::default();
    let n = inputs.len();
    let mut ctx = BuildCtx {
        op_name: op,
        version: 1,
        node: 0,
        options: &op_options,
        custom_options: options,
        inputs: inputs.into_iter().map(Some).collect(),
        constants: vec![None; n],
        outputs: (0..num_outputs).map(|k| tensor(100 + k, &[], TensorType::FLOAT32, None)).collect(),
        intermediates: Vec::new(),
        reference: true,
        vnni: false,
        threads: 1,
    };
    let built = f(&mut ctx)?;
    Ok((built, ctx.outputs))
}

/// Runs a built kernel on `ins` (copied to 8-byte aligned buffers); returns the float outputs
/// (pre-filled with NaN: the kernel must write every element).
pub(in crate::cpu::ops) fn run_op(built: &Built, outputs: &[TensorInfo], ins: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
    let lens: Vec<usize> = outputs.iter().map(|t| t.num_elements() * 4).collect();
    let nan = f32::NAN.to_le_bytes();
    let outs = super::super::test_util::run_kernel(built, ins, &lens, &Par::new(1)?, |_, i| nan[i % 4])?;
    Ok(outs.iter().map(|o| bytemuck::pod_collect_to_vec(o)).collect())
}

fn options(regular: bool, max_detections: i64, extra: &[(&str, f64)]) -> Vec<u8> {
    let ints = [
        ("max_detections", max_detections as f64),
        ("max_classes_per_detection", 1.0),
        ("detections_per_class", 5.0),
        ("num_classes", 2.0),
    ];
    let floats = [
        ("nms_score_threshold", 0.5),
        ("nms_iou_threshold", 0.5),
        ("y_scale", 10.0),
        ("x_scale", 10.0),
        ("h_scale", 5.0),
        ("w_scale", 5.0),
    ];
    let pick = |k: &str, v: f64| extra.iter().find(|e| e.0 == k).map_or(v, |e| e.1);
    let mut b = flexbuffers::Builder::default();
    let mut m = b.start_map();
    m.push("use_regular_nms", regular);
    for (k, v) in ints {
        m.push(k, pick(k, v) as i64);
    }
    for (k, v) in floats {
        m.push(k, pick(k, v) as f32);
    }
    m.end_map();
    b.view().to_vec()
}

/// 4 anchors in a row, zero encodings (boxes = anchors), float scores [bg, class0, class1].
fn run_float(opts: &[u8], scores: &[f32]) -> Result<Vec<Vec<f32>>> {
    let n = scores.len() / 3;
    let inputs = vec![
        tensor(0, &[1, n, 4], TensorType::FLOAT32, None),
        tensor(1, &[1, n, 3], TensorType::FLOAT32, None),
        tensor(2, &[n, 4], TensorType::FLOAT32, None),
    ];
    let (built, outs) = build_op("TFLite_Detection_PostProcess", Some(opts), inputs, 4, build)?;
    let boxes = vec![0f32; n * 4];
    let anchors: Vec<f32> = (0..n).flat_map(|i| [0.5, 0.1 + 0.2 * i as f32, 0.2, 0.1]).collect();
    run_op(&built, &outs, &[bytemuck::cast_slice(&boxes), bytemuck::cast_slice(scores), bytemuck::cast_slice(&anchors)])
}

#[test]
fn nothing_above_threshold_gives_zero_detections() {
    let scores = [0.9, 0.49, 0.1, 0.9, 0.2, 0.3, 0.9, 0.0, 0.4999, 0.9, 0.1, 0.1];
    for regular in [true, false] {
        let out = run_float(&options(regular, 3, &[]), &scores).unwrap();
        assert_eq!(out[3], [0.0]);
        assert!(out[..3].iter().flatten().all(|&v| v == 0.0), "{out:?}");
    }
}

#[test]
fn max_detections_larger_than_candidates() {
    // Anchors 0, 2, 3 pass in class 1, anchor 1 in class 0; boxes do not overlap.
    let scores = [0.0, 0.1, 0.7, 0.0, 0.8, 0.2, 0.0, 0.3, 0.9, 0.0, 0.1, 0.6];
    for regular in [true, false] {
        let out = run_float(&options(regular, 10, &[]), &scores).unwrap();
        assert_eq!(out[3], [4.0]);
        assert_eq!(out[1][..4], [1.0, 0.0, 1.0, 1.0]);
        assert_eq!(out[2][..4], [0.9, 0.8, 0.7, 0.6]);
        assert!(out[1][4..].iter().chain(&out[2][4..]).chain(&out[0][16..]).all(|&v| v == 0.0));
        // Anchor 2 (best) decodes to its own box: center (0.5, 0.5), size (0.2, 0.1).
        assert_eq!(out[0][..4], [0.4, 0.45, 0.6, 0.55]);
    }
}

#[test]
fn overlapping_boxes_are_suppressed() {
    // Anchors 2 and 3 overlapping: same anchor box for both.
    let n = 2;
    let inputs = vec![
        tensor(0, &[1, n, 4], TensorType::FLOAT32, None),
        tensor(1, &[1, n, 3], TensorType::FLOAT32, None),
        tensor(2, &[n, 4], TensorType::FLOAT32, None),
    ];
    let opts = options(true, 5, &[]);
    let (built, outs) = build_op("TFLite_Detection_PostProcess", Some(&opts), inputs, 4, build).unwrap();
    let boxes = [0f32; 8];
    let anchors = [0.5f32, 0.5, 0.2, 0.2, 0.5, 0.51, 0.2, 0.2];
    let scores = [0f32, 0.6, 0.0, 0.0, 0.7, 0.0];
    let out = run_op(
        &built,
        &outs,
        &[bytemuck::cast_slice(&boxes), bytemuck::cast_slice(&scores), bytemuck::cast_slice(&anchors)],
    )
    .unwrap();
    assert_eq!(out[3], [1.0]);
    assert_eq!(out[2][0], 0.7);
}

#[test]
fn invalid_options_are_errors() {
    let inputs = || {
        vec![
            tensor(0, &[1, 4, 4], TensorType::FLOAT32, None),
            tensor(1, &[1, 4, 3], TensorType::FLOAT32, None),
            tensor(2, &[4, 4], TensorType::FLOAT32, None),
        ]
    };
    let try_build = |opts: Option<&[u8]>, ins: Vec<TensorInfo>| {
        build_op("TFLite_Detection_PostProcess", opts, ins, 4, build).map(|_| ()).unwrap_err().to_string()
    };
    assert!(try_build(None, inputs()).contains("custom options"));
    assert!(try_build(Some(&[1, 2, 3, 4, 5]), inputs()).contains("custom options"));
    assert!(try_build(Some(&[]), inputs()).contains("custom options"));
    let mut b = flexbuffers::Builder::default();
    let mut m = b.start_map();
    m.push("max_detections", 3i64);
    m.end_map();
    assert!(try_build(Some(b.view()), inputs()).contains("lack"));
    let bad = [
        options(true, -1, &[]),
        options(true, 0, &[]),
        options(true, 3, &[("nms_iou_threshold", 0.0)]),
        options(true, 3, &[("nms_iou_threshold", 1.5)]),
        options(true, 3, &[("num_classes", 4.0)]),
        options(true, 3, &[("num_classes", 0.0)]),
        options(false, 3, &[("max_classes_per_detection", 0.0)]),
        options(true, 3, &[("detections_per_class", 0.0)]),
        options(true, 1 << 40, &[]),
    ];
    for opts in &bad {
        let e = try_build(Some(opts), inputs());
        assert!(e.contains("TFLite_Detection_PostProcess"), "{e}");
    }
    let good = options(true, 3, &[]);
    let mut wrong_anchors = inputs();
    wrong_anchors[2] = tensor(2, &[3, 4], TensorType::FLOAT32, None);
    assert!(try_build(Some(&good), wrong_anchors).contains("anchors"));
    let mut mixed = inputs();
    mixed[2] = tensor(2, &[4, 4], TensorType::UINT8, Some((0.1, 0)));
    assert!(try_build(Some(&good), mixed).contains("anchors"));
    let mut no_quant = inputs();
    no_quant[1] = tensor(1, &[1, 4, 3], TensorType::UINT8, None);
    assert!(try_build(Some(&good), no_quant).contains("quantization"));
}

#[test]
fn negative_anchor_size_is_an_error_at_run_time() {
    let mut scores = [0f32; 12];
    scores[2] = 0.9;
    let n = 4;
    let inputs = vec![
        tensor(0, &[1, n, 4], TensorType::FLOAT32, None),
        tensor(1, &[1, n, 3], TensorType::FLOAT32, None),
        tensor(2, &[n, 4], TensorType::FLOAT32, None),
    ];
    let opts = options(false, 3, &[]);
    let (built, outs) = build_op("TFLite_Detection_PostProcess", Some(&opts), inputs, 4, build).unwrap();
    let anchors = [0.5f32, 0.5, -0.2, 0.2].repeat(4);
    let r = run_op(
        &built,
        &outs,
        &[bytemuck::cast_slice(&[0f32; 16]), bytemuck::cast_slice(&scores), bytemuck::cast_slice(&anchors)],
    );
    assert!(r.unwrap_err().to_string().contains("ymin > ymax"));
}

#[test]
fn partial_sort_matches_libstdcxx() {
    // (values, k, what g++ 12's std::partial_sort with `values[i] > values[j]` gives).
    let cases: [(&[f32], usize, &[u32]); 6] = [
        (&[0.0; 5], 4, &[1, 3, 0, 2]),
        (&[0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0], 5, &[1, 3, 2, 0, 4]),
        (&[0.0, 1.0, 1.0, 1.0, 2.0, 0.0, 1.0], 4, &[4, 1, 3, 2]),
        (&[1.0, 0.0, 2.0, 1.0, 3.0, 0.0, 0.0, 2.0, 1.0, 3.0, 0.0, 2.0], 6, &[9, 4, 11, 7, 2, 3]),
        (&[0.0, 1.0, 1.0, 0.0, 0.0], 4, &[2, 1, 0, 3]),
        (&[2.0, 0.0], 2, &[0, 1]),
    ];
    for (values, k, want) in cases {
        let mut idx = vec![0u32; values.len()];
        decreasing_partial_arg_sort(values, k, &mut idx);
        assert_eq!(&idx[..k], want, "{values:?} k={k}");
    }
    // std::priority_queue (push_heap / pop_heap) pop order, ties included.
    let less = |a: &(f32, u32), b: &(f32, u32)| a.0 < b.0;
    for (values, want) in [(&[0.0f32, 0.0, 2.0, 2.0][..], [2u32, 3, 1, 0]), (&[1.0, 1.0, 0.0, 1.0], [0, 1, 3, 2])] {
        let mut h = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            h.push((v, i as u32));
            push_heap_back(&mut h, i + 1, &less);
        }
        let mut got = Vec::new();
        while !h.is_empty() {
            let len = h.len();
            pop_heap(&mut h, len, &less);
            got.push(h.pop().unwrap().1);
        }
        assert_eq!(got, want);
    }
}

#[test]
fn uint8_scores_dequantize_like_tflite() {
    // 8-element blocks: float(q) * s + float(-zp * s); the rest through a double.
    let q: Vec<u8> = (0..11).map(|i| 180 + i).collect();
    let mut out = [0f32; 11];
    dequantize_scores(&q, 0.0041, 3, &mut out);
    assert_eq!(out[5].to_bits(), 0x3f3f06f6); // q = 185: not 0x3f3f06f7 = float(0.0041 * 182.0)
    assert_eq!(out[8], (0.0041f32 as f64 * 185.0) as f32);
}
