#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the project's own small inputs: tiny models
made from scratch, the per-op test models of runtime/tests/data/ops (made by
make_op_goldens.py), and images, protocol messages and logs written here. No upstream model
bytes. Needs `pip install tflite flatbuffers pillow`.

usage: python3 fuzz/make_corpus.py  (writes fuzz/corpus/<target>/)
"""
import io
import json
import os
import struct
import zlib
import flatbuffers
from flatbuffers import flexbuffers
import importlib

# The package re-exports the classes under the module names: fetch the modules themselves.
M, S, T, O, OC, B, Q = (importlib.import_module(f"tflite.{n}") for n in
                        ("Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "Buffer", "QuantizationParameters"))

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "load_decode")
OPS = os.path.join(HERE, "..", "runtime", "tests", "data", "ops")


def vec(b, start, items, kind="int32"):
    start(b, len(items))
    for x in reversed(items):
        {"int32": b.PrependInt32, "float": b.PrependFloat32, "int64": b.PrependInt64, "uoff": b.PrependUOffsetTRelative}[kind](x)
    return b.EndVector()


def model(custom_code=None, custom_options=None, n_tensors=2, op_inputs=(0,), const=False):
    b = flatbuffers.Builder(1024)
    names = [b.CreateString(f"t{i}") for i in range(n_tensors)]
    tensors = []
    for i in range(n_tensors):
        shape = vec(b, T.TensorStartShapeVector, [1, 4])
        sc = vec(b, Q.QuantizationParametersStartScaleVector, [0.5], "float")
        zp = vec(b, Q.QuantizationParametersStartZeroPointVector, [3], "int64")
        Q.QuantizationParametersStart(b)
        Q.QuantizationParametersAddScale(b, sc)
        Q.QuantizationParametersAddZeroPoint(b, zp)
        q = Q.QuantizationParametersEnd(b)
        T.TensorStart(b)
        T.TensorAddShape(b, shape)
        T.TensorAddType(b, 3)  # uint8
        T.TensorAddBuffer(b, 1 if (const and i == 0) else 0)
        T.TensorAddName(b, names[i])
        T.TensorAddQuantization(b, q)
        tensors.append(T.TensorEnd(b))
    tv = vec(b, S.SubGraphStartTensorsVector, tensors, "uoff")
    ins = vec(b, O.OperatorStartInputsVector, list(op_inputs))
    outs = vec(b, O.OperatorStartOutputsVector, [n_tensors - 1])
    co = None
    if custom_options is not None:
        O.OperatorStartCustomOptionsVector(b, len(custom_options))
        for x in reversed(custom_options):
            b.PrependUint8(x)
        co = b.EndVector()
    O.OperatorStart(b)
    O.OperatorAddOpcodeIndex(b, 0)
    O.OperatorAddInputs(b, ins)
    O.OperatorAddOutputs(b, outs)
    if co is not None:
        O.OperatorAddCustomOptions(b, co)
    op = O.OperatorEnd(b)
    ops = vec(b, S.SubGraphStartOperatorsVector, [op], "uoff")
    sgi = vec(b, S.SubGraphStartInputsVector, [0])
    sgo = vec(b, S.SubGraphStartOutputsVector, [n_tensors - 1])
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, tv)
    S.SubGraphAddInputs(b, sgi)
    S.SubGraphAddOutputs(b, sgo)
    S.SubGraphAddOperators(b, ops)
    sg = S.SubGraphEnd(b)
    cc = b.CreateString(custom_code) if custom_code else None
    OC.OperatorCodeStart(b)
    OC.OperatorCodeAddDeprecatedBuiltinCode(b, 32 if custom_code else 0)
    OC.OperatorCodeAddBuiltinCode(b, 32 if custom_code else 0)
    OC.OperatorCodeAddVersion(b, 1)
    if cc:
        OC.OperatorCodeAddCustomCode(b, cc)
    code = OC.OperatorCodeEnd(b)
    bufs = []
    B.BufferStart(b)
    bufs.append(B.BufferEnd(b))
    data = None
    if const:
        B.BufferStartDataVector(b, 4)
        for x in reversed([1, 2, 3, 4]):
            b.PrependUint8(x)
        data = b.EndVector()
    B.BufferStart(b)
    if data is not None:
        B.BufferAddData(b, data)
    bufs.append(B.BufferEnd(b))
    codes = vec(b, M.ModelStartOperatorCodesVector, [code], "uoff")
    sgs = vec(b, M.ModelStartSubgraphsVector, [sg], "uoff")
    bv = vec(b, M.ModelStartBuffersVector, bufs, "uoff")
    desc = b.CreateString("seed model for the load_decode fuzz target")
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes)
    M.ModelAddSubgraphs(b, sgs)
    M.ModelAddBuffers(b, bv)
    M.ModelAddDescription(b, desc)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def options(package):
    fb = flexbuffers.Builder()
    with fb.Map():
        fb.Key("1"); fb.Int(0)
        fb.Key("4"); fb.Blob(package)
        fb.Key("5"); fb.Int(-1)
        fb.Key("6"); fb.TypedVectorFromElements([18])
        fb.Key("7"); fb.VectorFromElements([])
    return bytes(fb.Finish())


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "add": model(),
        "const": model(const=True),
        "custom_no_options": model(custom_code="edgetpu-custom-op"),
        "custom_garbage_package": model("edgetpu-custom-op", options(b"\x10\x00\x00\x00DWN1" + bytes(24))),
        "custom_empty_map": model("edgetpu-custom-op", options(b"")),
        "bad_tensor_index": model(op_inputs=(7,)),
        "optional_input": model(op_inputs=(-1, 0), n_tensors=3),
    }
    seeds["truncated_add"] = seeds["add"][: len(seeds["add"]) // 2]
    # The root table's vtable offset set to i32::MIN: the flatbuffers 2.x verifier took abs() of it
    # and panicked with overflow checks on.
    add = bytearray(seeds["add"])
    root = int.from_bytes(add[0:4], "little")
    add[root : root + 4] = (0x8000_0000).to_bytes(4, "little")
    seeds["soffset_i32_min"] = bytes(add)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {OUT}")
    for target, make in [("interpreter", interpreter_seeds), ("flexbuffer", flexbuffer_seeds),
                         ("compiler_log", compiler_log_seeds), ("image_preprocess", image_seeds),
                         ("usb_packets", usb_seeds), ("pcie_status", pcie_seeds),
                         ("zmtp_frigate", zmtp_seeds), ("http_request", http_seeds),
                         ("native_wire", native_seeds)]:
        write(target, make(seeds))


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


def op_models():
    """(name, model bytes, concatenated input bytes) of every per-op test model."""
    for name in sorted(os.listdir(OPS)):
        d = os.path.join(OPS, name)
        if not os.path.isfile(os.path.join(d, "model.tflite")):
            continue
        model = open(os.path.join(d, "model.tflite"), "rb").read()
        inputs = b"".join(open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d)) if f.startswith("in"))
        yield name, model, inputs


def interpreter_seeds(load_seeds):
    # u32 LE model length, the model, the input bytes.
    out = {name: struct.pack("<I", len(m)) + m + inp for name, m, inp in op_models()}
    for name in ("add", "const", "optional_input"):
        m = load_seeds[name]
        out["tiny_" + name] = struct.pack("<I", len(m)) + m + bytes(range(8))
    return out


def flexbuffer_seeds(_):
    out = {"edgetpu_options": options(b"\x10\x00\x00\x00DWN1" + bytes(24)), "empty_package": options(b"")}
    fb = flexbuffers.Builder()
    with fb.Map():
        fb.Key("a"); fb.Int(-5)
        fb.Key("b"); fb.Float(1.5)
        fb.Key("s"); fb.String("text")
        fb.Key("v")
        with fb.Vector():
            fb.Int(1); fb.Bool(True); fb.String("x")
            with fb.Map():
                fb.Key("k"); fb.UInt(7)
        fb.Key("t"); fb.TypedVectorFromElements([1, 2, 3])
        fb.Key("f"); fb.TypedVectorFromElements([0.5, 0.25])
    out["mixed_map"] = bytes(fb.Finish())
    for name, value in [("int", 1 << 40), ("string", "edgetpu"), ("blob_only", None)]:
        fb = flexbuffers.Builder()
        if value is None:
            fb.Blob(bytes(range(32)))
        elif isinstance(value, str):
            fb.String(value)
        else:
            fb.Int(value)
        out[name] = bytes(fb.Finish())
    return out


def compiler_log_seeds(_):
    log = """Edge TPU Compiler version 16.0.384591198
Input: tiny.tflite
Output: tiny_edgetpu.tflite

Operator                       Count      Status

ADD                            1          Mapped to Edge TPU
QUANTIZE                       1          Operation is working on an unsupported data type
TANH                           2          More than one subgraph is not supported
"""
    stdout = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 12 ms.

Input model: tiny.tflite
Input size: 1.21KiB
Output model: tiny_edgetpu.tflite
Output size: 20.50KiB
On-chip memory used for caching model parameters: 3.25KiB
On-chip memory remaining for caching model parameters: 7.99MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 3
Operation log: tiny_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 2
Number of operations that will run on CPU: 1

Operator                       Count      Status

QUANTIZE                       1          Operation is working on an unsupported data type
All other operators were mapped successfully
Compilation child process completed within timeout period.
Compilation succeeded!
"""
    failed = "Edge TPU Compiler version 2.0.267685300\nInput model: x.tflite\nERROR: Didn't find op for builtin opcode 'FOO'\nCompilation failed!\r\n"
    return {"log": log.encode(), "stdout": stdout.encode(), "failed": failed.encode()}


def image_seeds(_):
    from PIL import Image
    out = {}
    img = Image.new("RGB", (7, 5))
    img.putdata([(x * 30, y * 50, (x + y) * 20) for y in range(5) for x in range(7)])
    for i, (fmt, mode, kw) in enumerate([("PNG", "RGB", {}), ("PNG", "L", {}), ("PNG", "RGBA", {}), ("PNG", "P", {}),
                                         ("JPEG", "RGB", {"quality": 50}), ("JPEG", "L", {}),
                                         ("JPEG", "RGB", {"progressive": True}), ("BMP", "RGB", {}),
                                         ("BMP", "P", {})]):
        b = io.BytesIO()
        img.convert(mode).save(b, fmt, **kw)
        # The first byte selects the filter, fit and tensor size.
        out[f"{fmt.lower()}_{mode.lower()}_{i}"] = bytes([i * 37 & 0xFF]) + b.getvalue()
    return out


def usb_seeds(_):
    event = struct.pack("<QIB3x", 0x1000, 64, 3)
    config = bytes([9, 2, 27, 0, 1, 1, 0, 0xC0, 0, 9, 4, 0, 0, 0, 0xFE, 0x01, 0x02, 0,
                    9, 0x21, 0x0B, 0xE8, 0x03, 0x00, 0x01, 0x01, 0x01])
    device_descriptor = bytes([18, 1, 0x10, 0x02, 0, 0, 0, 64, 0x6E, 0x1A, 0x9A, 0x08, 0, 1, 0, 0, 0, 1])
    status_ok_idle = bytes([0, 0, 0, 0, 5, 0])  # GETSTATUS: OK, dfuDNLOAD-IDLE
    status_ok_dfu_idle = bytes([0, 0, 0, 0, 2, 0])  # GETSTATUS: OK, dfuIDLE
    reply = lambda b: bytes([len(b)]) + b
    return {
        "event": bytes([0]) + event,
        "interrupt": bytes([0]) + struct.pack("<I", 0x11),
        "config": bytes([0]) + config,
        "read_ids": bytes([0]) + reply(device_descriptor),
        # selector 1 (mod 3): download 1 block of 5 bytes... then the zero-length block.
        "download": bytes([1 + 3 * 16]) + reply(status_ok_idle) * 3 + reply(status_ok_dfu_idle),
        "verify": bytes([2]) + reply(bytes(range(9))) * 2 + reply(b""),
    }


def pcie_seeds(_):
    return {
        "block_ok": struct.pack("<IIQ", 7, 0, 0),
        "block_fatal": struct.pack("<IIQ", 7, 0x80000001, 0),
        "proc_status": b"Name:\tx\nTgid:\t77\nUid:\t1000\t1001\t1000\t1000\nGid:\t50\t51\t50\t50\nGroups:\t4 24 27 \n",
        "pci_address": b"0000:03:00.0",
        "selector": b"pci:1",
    }


def zmtp_frame(body, more=False, command=False):
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def zmtp_message(frames):
    # A REQ peer: an empty delimiter frame, then the message's frames.
    out = zmtp_frame(b"", more=True)
    for i, f in enumerate(frames):
        out += zmtp_frame(f, more=i + 1 < len(frames))
    return out


def zmtp_seeds(_):
    greeting = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + bytes(32)
    prop = lambda k, v: bytes([len(k)]) + k + struct.pack(">I", len(v)) + v
    ready = zmtp_frame(b"\x05READY" + prop(b"Socket-Type", b"REQ") + prop(b"Identity", b""), command=True)
    hello = greeting + ready
    model = open(os.path.join(OPS, "depth_to_space_u8", "model.tflite"), "rb").read()
    tensor = open(os.path.join(OPS, "depth_to_space_u8", "in0.bin"), "rb").read()
    req = lambda h: json.dumps(h).encode()
    return {
        "handshake": hello + zmtp_message([req({"model_request": True, "model_name": "probe.tflite"})]),
        "infer": hello + zmtp_message([req({"model_request": True, "model_name": "probe.tflite"})])
        + zmtp_message([req({"shape": [1, 2, 3, 12], "dtype": "uint8", "model_type": "ssd"}), tensor]),
        "infer_yolo": hello + zmtp_message([req({"model_request": True, "model_name": "probe.tflite"})])
        + zmtp_message([req({"shape": [72], "dtype": "uint8", "model_type": "yologeneric"}), tensor]),
        "upload": hello + zmtp_message([req({"model_data": True, "model_name": "up.tflite"}), model]),
        "missing": hello + zmtp_message([req({"model_request": True, "model_name": "../x"})]) + zmtp_message([b"[1]"]),
    }


def http_seeds(_):
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ\r\n"
            b"Content-Disposition: form-data; name=\"min_confidence\"\r\n\r\n0.5\r\n--XyZ--\r\n")
    post = (b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return {
        "get_status": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "get_metrics": b"GET /metrics HTTP/1.0\r\nAuthorization: Bearer t\r\n\r\n",
        "post_detection": post,
        "chunked": b"POST /v1/vision/custom/m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    }


def native_seeds(_):
    def msg(h, payload=b""):
        hb = json.dumps(h).encode()
        return struct.pack("<II", 4 + len(hb) + len(payload), len(hb)) + hb + payload
    return {
        "open_name": msg({"op": "open", "model": "probe.tflite"}),
        "open_upload": msg({"op": "open"}, bytes(range(64))),
        "invoke": msg({"op": "invoke", "id": 3}),
        "close": msg({"op": "close", "id": 3}),
        "reply": msg({"ok": True, "id": 1, "size": 4096, "inputs": [{"name": "x", "shape": [1, 4], "dtype": "uint8",
                                                                   "scale": 0.5, "zero_point": 3, "offset": 0, "len": 4}],
                      "outputs": []}),
    }


if __name__ == "__main__":
    main()
