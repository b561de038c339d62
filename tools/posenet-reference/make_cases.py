#!/usr/bin/env python3
"""Reference cases for the runtime's `PosenetDecoderOp` with instance masks (BodyPix form), made by
Coral's own decoder: the `posenet_decoder.so` plugin that google-coral/project-bodypix ships
(`posenet_lib/x86_64/posenet_decoder.so`). Its C++ entry points `DecodeAllPoses` and
`DecodeInstanceMasks` take plain float arrays, so ctypes calls them directly; the plugin's TFLite
delegate interface is not used (it predates the current TFLite ABI).

Each case is a folder with `case.json` (op options, the four inputs' shapes and quantization), the
decoder inputs `in0..in3.bin.gz` (uint8) and the outputs `out0..out4.bin.gz` (float32 little-endian,
gzip'd), laid out as the op's outputs: keypoints [1,M,17,2], keypoint scores [1,M,17], pose scores [1,M],
count [1] and, for BodyPix, masks [1,M,33,33]. Rows the decoder does not write are zero.

usage: make_cases.py POSENET_DECODER_SO OUT_DIR [GOLDEN_DIR TAG MODEL]...
  GOLDEN_DIR/TAG.json + files: decoder inputs of a real PoseNet or BodyPix model, from
  `reference_outputs.py MODEL --cut-custom-ops` (the cut op's inputs become the golden's outputs);
  MODEL supplies the op's custom options. Goldens inside EDGETPU_TESTDATA are referenced by path
  instead of stored. The synthetic cases (seeded random maps with many poses; flat maps with no
  pose) are always made.
"""
import ctypes, gzip, json, os, sys
import numpy as np

KP, EDGES = 17, 16
CHANNELS = [KP, 2 * KP, 4 * EDGES, 2 * KP]


def decoder(so_path):
    lib = ctypes.CDLL(so_path)
    f = ctypes.POINTER(ctypes.c_float)
    poses = getattr(lib, "_ZN5coral18posenet_decoder_op14DecodeAllPosesEPKfS2_S2_iiififiPNS0_13PoseKeypointsEPNS0_18PoseKeypointScoresEPf")
    poses.restype = ctypes.c_int
    poses.argtypes = [f, f, f, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_int,
                      ctypes.c_float, ctypes.c_int, f, f, f]
    masks = getattr(lib, "_ZN5coral18posenet_decoder_op19DecodeInstanceMasksEPKfiiPNS0_13PoseKeypointsEmiiPf")
    masks.restype = None
    masks.argtypes = [f, ctypes.c_int, ctypes.c_int, f, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, f]
    return poses, masks


def ptr(a):
    assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def dequantize(q, scale, zp, extra):
    # posenet_decoder_op.cc DequantizeTensor: (q - float(zp)) * (scale * float(extra)), in float.
    return ((q.astype(np.float32) - np.float32(zp)) * (np.float32(scale) * np.float32(extra))).astype(np.float32)


def run(fns, opts, ins, quant):
    decode_poses, decode_masks = fns
    md, stride = opts["max_detections"], opts["stride"]
    _, h, w, _ = ins[0].shape
    inv = np.float32(1.0 / stride)  # C++: 1.0 / stride in double, passed as a float
    heat, short, mid, *long_ = (dequantize(x, s, z, e) for x, (s, z), e in zip(ins, quant, [1.0, inv, inv, inv]))
    kp = np.zeros((1, md, KP, 2), np.float32)
    ks = np.zeros((1, md, KP), np.float32)
    ps = np.zeros((1, md), np.float32)
    nms = np.float32(opts["nms_radius"]) / np.float32(stride)
    n = decode_poses(ptr(heat), ptr(short), ptr(mid), h, w, md, opts["score_threshold"], 5, float(nms), stride,
                     ptr(kp), ptr(ks), ptr(ps))
    count = np.array([n], np.float32)
    if not long_:
        return [kp, ks, ps, count]
    masks = np.zeros((1, md, 33, 33), np.float32)
    decode_masks(ptr(long_[0]), h, w, ptr(kp), int(count[0]), 2, stride, ptr(masks))
    return [kp, ks, ps, count, masks]


def save(path, data):
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
        g.write(data)


def write(out_dir, name, opts, ins, quant, outs, source, testdata_files=None):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    case = {"source": source, "options": opts,
            "inputs": [{"shape": list(x.shape), "scale": float(s), "zero_point": int(z), "file": f"in{i}.bin.gz"}
                       for i, (x, (s, z)) in enumerate(zip(ins, quant))],
            "outputs": [{"shape": list(o.shape), "file": f"out{j}.bin.gz"} for j, o in enumerate(outs)],
            "poses": int(outs[3][0])}
    for i, x in enumerate(ins):
        if testdata_files:
            # Inputs that the shared test data holds are read from there, not stored again.
            case["inputs"][i]["file"] = None
            case["inputs"][i]["testdata"] = testdata_files[i]
            continue
        save(os.path.join(d, f"in{i}.bin.gz"), x.astype(np.uint8).tobytes())
    for j, o in enumerate(outs):
        save(os.path.join(d, f"out{j}.bin.gz"), o.astype("<f4").tobytes())
    json.dump(case, open(os.path.join(d, "case.json"), "w"), indent=1)
    masks = f", {int(outs[4].sum())} mask cells set" if len(outs) > 4 else ""
    print(f"{name}: {case['poses']} poses{masks}")


def model_options(model_path):
    from ai_edge_litert import schema_py_generated as fb
    from flatbuffers import flexbuffers
    m = fb.ModelT.InitFromPackedBuf(open(model_path, "rb").read(), 0)
    for op in m.subgraphs[0].operators:
        if m.operatorCodes[op.opcodeIndex].customCode == b"PosenetDecoderOp":
            o = flexbuffers.Loads(bytes(op.customOptions))
            return {"max_detections": int(o["max_detections"]), "score_threshold": float(o["score_threshold"]),
                    "stride": int(o["stride"]), "nms_radius": float(o["nms_radius"])}, list(op.inputs)
    sys.exit(f"{model_path}: no PosenetDecoderOp")


def main():
    so, out_dir = sys.argv[1], sys.argv[2]
    fns = decoder(so)
    rng = np.random.default_rng(2026)
    # Seeded random maps: many local maxima, so many poses and a crowded mask assignment.
    opts = {"max_detections": 10, "score_threshold": 0.2, "stride": 16, "nms_radius": 10.0}
    h, w = 9, 11
    quant = [(0.1, 128), (0.5, 128), (1.0, 128), (0.9, 128)]
    ins = [rng.integers(0, 256, (1, h, w, c)).astype(np.uint8) for c in CHANNELS]
    write(out_dir, "random_9x11", opts, ins, quant, run(fns, opts, ins, quant), "numpy default_rng(2026)")
    # Flat low heatmaps: no pose. Coral's mask decoder then still marks cells of mask 0
    # (the arg-min over zero poses is index 0).
    h, w = 5, 6
    ins = [np.full((1, h, w, c), v, np.uint8) for c, v in zip(CHANNELS, [0, 128, 128, 140])]
    write(out_dir, "no_pose_5x6", opts, ins, quant, run(fns, opts, ins, quant), "constant maps")
    for golden, tag, model in zip(sys.argv[3::3], sys.argv[4::3], sys.argv[5::3]):
        opts, tensors = model_options(model)
        meta = json.load(open(os.path.join(golden, f"{tag}.json")))
        by_index = {o["index"]: o for o in meta["outputs"]}
        ins, quant = [], []
        for t in tensors:
            o = by_index[t]
            ins.append(np.frombuffer(open(os.path.join(golden, o["file"]), "rb").read(), np.uint8).reshape(o["shape"]))
            quant.append((o["quantization"]["scale"][0], o["quantization"]["zero_point"][0]))
        src = f"{os.path.basename(model)} on {meta['inputs'][0]['source']}; decoder inputs from {meta['interpreter']['package']} {meta['interpreter']['version']} reference kernels"
        # Goldens under EDGETPU_TESTDATA are referenced, not copied.
        testdata = os.environ.get("EDGETPU_TESTDATA")
        files = None
        if testdata and os.path.abspath(golden).startswith(os.path.abspath(testdata) + os.sep):
            rel = os.path.relpath(golden, testdata)
            files = [f"{rel}/{by_index[t]['file']}" for t in tensors]
        name = os.path.splitext(os.path.basename(model))[0].split("_")[0] + "_" + tag
        write(out_dir, name, opts, ins, quant, run(fns, opts, ins, quant), src, files)


if __name__ == "__main__":
    main()
