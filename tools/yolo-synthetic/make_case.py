#!/usr/bin/env python3
"""A synthetic YOLOv8-layout model and the detections Frigate's edgetpu detector computes from it,
for serve/tests/yolo.rs. The shared test data has no YOLO model, so this one is built here.

The model maps its int8 input [1, 32, 32, 3] (scale 0.1, zero point 0) onto the two outputs of
a YOLOv8 Edge TPU export: DFL boxes [1, 21, 64] and class logits [1, 21, 80] (21 anchors: 4x4 at
stride 8, 2x2 at 16, 1x1 at 32), by RESHAPE and SLICE only, so the test chooses every output
value through the input. The frame Frigate would send is that input as uint8 (XOR 128).

The expected rows come from `frigate_yolo_rows` below, which performs the steps of Frigate's
`frigate/detectors/plugins/edgetpu_tfl.py` (`detect_raw`, model_type yologeneric) with numpy and
OpenCV's `cv2.dnn.NMSBoxes`, on the outputs that ai-edge-litert's interpreter computes.

usage: make_case.py OUT_DIR      (writes model.tflite, frame.bin, expected.bin)
"""
import math, os, sys
import cv2
import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb
from ai_edge_litert.interpreter import Interpreter, OpResolverType

H = W = 32
CLASSES, ANCHORS, SCALE, ZP = 80, 21, 0.1, 0


def build_model():
    tensors, buffers = [], [fb.BufferT()]

    def tensor(name, shape, dtype=fb.TensorType.INT8, data=None, quant=True):
        t = fb.TensorT(); t.name = name.encode(); t.shape = list(shape); t.type = dtype; t.buffer = 0
        if quant:
            q = fb.QuantizationParametersT(); q.scale = [SCALE]; q.zeroPoint = [ZP]; t.quantization = q
        if data is not None:
            b = fb.BufferT(); b.data = np.asarray(data, np.int32).tobytes(); buffers.append(b); t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    x = tensor("images", [1, H, W, 3])
    flat = tensor("flat", [1, H * W * 3])
    used = tensor("used", [1, ANCHORS * (64 + CLASSES)])
    rows = tensor("rows", [1, ANCHORS, 64 + CLASSES])
    boxes = tensor("boxes", [1, ANCHORS, 64])
    scores = tensor("scores", [1, ANCHORS, CLASSES])
    i32 = fb.TensorType.INT32
    s1 = tensor("shape1", [2], i32, [1, H * W * 3], False)
    b0 = tensor("begin0", [2], i32, [0, 0], False)
    z0 = tensor("size0", [2], i32, [1, ANCHORS * (64 + CLASSES)], False)
    s2 = tensor("shape2", [3], i32, [1, ANCHORS, 64 + CLASSES], False)
    bb = tensor("begin_boxes", [3], i32, [0, 0, 0], False)
    zb = tensor("size_boxes", [3], i32, [1, ANCHORS, 64], False)
    bs = tensor("begin_scores", [3], i32, [0, 0, 64], False)
    zs = tensor("size_scores", [3], i32, [1, ANCHORS, CLASSES], False)
    codes = []
    for code in (fb.BuiltinOperator.RESHAPE, fb.BuiltinOperator.SLICE):
        c = fb.OperatorCodeT(); c.builtinCode = c.deprecatedBuiltinCode = code; c.version = 1; codes.append(c)

    def op(code, ins, outs):
        o = fb.OperatorT(); o.opcodeIndex = code; o.inputs = ins; o.outputs = outs; return o

    sg = fb.SubGraphT(); sg.tensors = tensors; sg.inputs = [x]; sg.outputs = [boxes, scores]; sg.name = b"main"
    sg.operators = [op(0, [x, s1], [flat]), op(1, [flat, b0, z0], [used]), op(0, [used, s2], [rows]),
                    op(1, [rows, bb, zb], [boxes]), op(1, [rows, bs, zs], [scores])]
    m = fb.ModelT(); m.version = 3; m.operatorCodes = codes; m.subgraphs = [sg]; m.buffers = buffers
    m.description = b"tools/yolo-synthetic/make_case.py"
    b = flatbuffers.Builder(1024); b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def input_values(rng):
    """int8 input: per anchor 64 box bins, then 80 class logits (all low except some)."""
    rows = np.full((ANCHORS, 64 + CLASSES), -100, np.int8)
    rows[:, :64] = rng.integers(-30, 31, (ANCHORS, 64))
    # Candidates with varied logits, some of them ties, several classes; neighbours at stride 8
    # with similar boxes so that the NMS has overlaps to remove.
    for a in rng.choice(ANCHORS, 14, replace=False):
        rows[a, 64 + rng.integers(0, CLASSES)] = rng.integers(-8, 60)
    rows[5, 64 + 3] = rows[6, 64 + 3] = 40
    rows[6, :64] = rows[5, :64]
    rows[9, 64 + 17] = -4  # exactly at the quantized threshold
    rows[10, 64 + 17] = -5  # just below
    x = np.zeros(H * W * 3, np.int8)
    x[: rows.size] = rows.ravel()
    return x.reshape(1, H, W, 3)


def frigate_yolo_rows(boxes_q, scores_q, box_qp, score_qp, height, width, min_score=0.4, max_det=20):
    """Frigate's yologeneric post-processing on quantized outputs (see the module notes)."""
    reg_max = 16
    min_logit = np.log(min_score / (1 - min_score))
    s_scale, s_zp = score_qp
    b_scale, b_zp = box_qp
    min_q = int((min_logit / s_scale) + s_zp)
    shift = max(0, math.ceil((128 + s_zp) * s_scale)) + 1
    anchors, strides = [], []
    for stride in (8, 16, 32):
        fh, fw = height // stride, width // stride
        gy, gx = np.meshgrid(np.arange(fh, dtype=np.float32), np.arange(fw, dtype=np.float32), indexing="ij")
        anchors.append(np.stack((gx.flatten(), gy.flatten()), axis=1) + 0.5)
        strides.append(np.full((fh * fw, 1), stride, dtype=np.float32))
    anchors, strides = np.concatenate(anchors), np.concatenate(strides)
    out = np.zeros((max_det, 6), np.float32)
    best = np.max(scores_q, axis=1)
    keep = best >= min_q
    if not np.any(keep):
        return out
    shifted = ((best[keep] - s_zp) * s_scale) + shift
    logits_kept = scores_q[keep]
    b = (boxes_q[keep].astype(np.float32) - b_zp) * b_scale
    dfl = b.reshape(-1, 4, reg_max)
    e = np.exp(dfl - np.max(dfl, axis=2, keepdims=True))
    probs = e / np.sum(e, axis=2, keepdims=True)
    dist = np.einsum("pcr,r->pc", probs, np.arange(reg_max, dtype=np.float32))
    a, s = anchors[keep], strides[keep]
    corners = np.concatenate(((a - dist[:, [0, 1]]) * s, (a + dist[:, [2, 3]]) * s), axis=-1)
    idx = cv2.dnn.NMSBoxes(bboxes=corners, scores=shifted, score_threshold=(min_logit + shift), nms_threshold=0.4)
    n = len(idx)
    if n == 0:
        return out
    idx = np.array(idx, dtype=np.int32).ravel()[:max_det]
    n = len(idx)
    out[:n, 0] = np.argmax(logits_kept[idx], axis=1)
    out[:n, 1] = 1.0 / (1.0 + np.exp(-(shifted[idx] - shift)))
    out[:n, 2] = corners[idx, 1] / height
    out[:n, 3] = corners[idx, 0] / width
    out[:n, 4] = corners[idx, 3] / height
    out[:n, 5] = corners[idx, 2] / width
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    model = build_model()
    x = input_values(np.random.default_rng(2026))
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    det = {d["name"]: d for d in it.get_output_details()}
    boxes, scores = it.get_tensor(det["boxes"]["index"])[0], it.get_tensor(det["scores"]["index"])[0]
    rows = frigate_yolo_rows(boxes, scores, det["boxes"]["quantization"], det["scores"]["quantization"], H, W)
    open(os.path.join(out_dir, "model.tflite"), "wb").write(model)
    open(os.path.join(out_dir, "frame.bin"), "wb").write((x.view(np.uint8) ^ 0x80).tobytes())
    open(os.path.join(out_dir, "expected.bin"), "wb").write(rows.astype("<f4").tobytes())
    print(f"{int((rows[:, 1] > 0).sum())} detections:\n{rows[rows[:, 1] > 0]}")


if __name__ == "__main__":
    main()
