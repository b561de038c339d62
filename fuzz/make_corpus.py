#!/usr/bin/env python3
"""Writes the seed corpus of the load_decode fuzz target: tiny models made from scratch
(no upstream model bytes). Needs `pip install tflite flatbuffers`.

usage: python3 fuzz/make_corpus.py  (writes fuzz/corpus/load_decode/)
"""
import os
import flatbuffers
from flatbuffers import flexbuffers
import importlib

# The package re-exports the classes under the module names: fetch the modules themselves.
M, S, T, O, OC, B, Q = (importlib.import_module(f"tflite.{n}") for n in
                        ("Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "Buffer", "QuantizationParameters"))

OUT = os.path.join(os.path.dirname(__file__), "corpus", "load_decode")


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


if __name__ == "__main__":
    main()
