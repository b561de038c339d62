#!/usr/bin/env python3
"""Randomized differential testing of the CPU interpreter against TFLite's reference kernels.

For every op the interpreter runs (the names in the `match` of runtime/src/cpu/ops/mod.rs), and for each tensor
type its kernel supports, this builds random one-op models (shapes, quantization, options, constant operands), runs
each with ai-edge-litert's reference kernels (OpResolverType.BUILTIN_REF) and with `edgetpu run --device cpu`, and
compares every output byte for byte. Models the reference refuses are counted as skipped, never compared.

It prints a table per op and type: generated, skipped (refused by the reference), compared, differing, failed (the
reference ran the model, `edgetpu run` did not). It exits non-zero when any model differs or fails, when an op/type
pair ends with no compared model, or when the op list of runtime/src/cpu/ops/mod.rs and this tool's disagree.

Each model has its own seed (printed with any difference), so `--seed S --ops OP --types T --count N` replays a run
and `--keep DIR` stores every differing or failing case as DIR/<op>_<type>_<seed>/{model.tflite, in<i>.bin,
out<j>.bin} (the reference's outputs), the layout of runtime/tests/data/ops/.

usage: op_fuzz.py --edgetpu BINARY [--count N] [--seed S] [--ops A,B] [--types uint8,int8] [--keep DIR]
       op_fuzz.py --list          (the fuzzed ops and types, and the ops exempt with their reason)
Needs ai-edge-litert, numpy and flatbuffers.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers
from ai_edge_litert import schema_py_generated as fb
from ai_edge_litert.interpreter import Interpreter, OpResolverType

B = fb.BuiltinOperator
O = fb.BuiltinOptions
TT = {"uint8": fb.TensorType.UINT8, "int8": fb.TensorType.INT8, "int16": fb.TensorType.INT16,
      "int32": fb.TensorType.INT32, "int64": fb.TensorType.INT64, "float32": fb.TensorType.FLOAT32,
      "bool": fb.TensorType.BOOL}
NP = {"uint8": np.uint8, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
      "float32": np.float32, "bool": np.bool_}
ACT = [fb.ActivationFunctionType.NONE, fb.ActivationFunctionType.RELU, fb.ActivationFunctionType.RELU6,
       fb.ActivationFunctionType.RELU_N1_TO_1]
QUANT = ("uint8", "int8")
LAYOUT = ("uint8", "int8", "int16", "int32", "int64", "float32")  # ops that move elements without arithmetic
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../runtime/src/cpu/ops/mod.rs")

# Ops the interpreter runs that cannot be compared with TFLite's reference kernels, and why.
EXEMPT = {
    "PosenetDecoderOp": "Coral's custom op has no TFLite reference kernel; runtime/tests/golden.rs checks it "
                        "against libcoral's decoder",
    "edgetpu-custom-op": "an Edge TPU step, not run by the CPU interpreter (it refuses it by design)",
}


class Case:
    """One single-op model under construction; `r` is its own random generator."""

    def __init__(self, rng):
        self.r = rng
        self.tensors, self.buffers = [], [fb.BufferT()]
        self.feeds = {}  # tensor index -> array to feed instead of random values
        # TFLite's kernels to compare with: the reference ones, except where they are wrong
        # (int8 SUM, see `reduce_sum`).
        self.resolver = OpResolverType.BUILTIN_REF

    # --- random helpers
    def int(self, lo, hi):  # inclusive
        return int(self.r.integers(lo, hi + 1))

    def coin(self, p=0.5):
        return bool(self.r.random() < p)

    def pick(self, xs):
        return xs[int(self.r.integers(0, len(xs)))]

    def shape(self, rank, lo=1, hi=8):
        return [self.int(lo, hi) for _ in range(rank)]

    def q(self, dtype, lo=0.002, hi=0.5):
        """Random (scale, zero point) for a quantized type, None otherwise."""
        s = float(np.exp(self.r.uniform(np.log(lo), np.log(hi))))
        if dtype == "uint8":
            return s, self.int(0, 255)
        if dtype == "int8":
            return s, self.int(-128, 127)
        if dtype == "int16":
            return s, 0
        return None

    def values(self, dtype, shape, lo=None, hi=None):
        """Random values over the type's range (or [lo, hi])."""
        if dtype == "float32":
            return self.r.uniform(-4 if lo is None else lo, 4 if hi is None else hi, size=shape).astype(np.float32)
        if dtype == "bool":
            return self.r.integers(0, 2, size=shape).astype(np.bool_)
        info = np.iinfo(NP[dtype])
        lo = info.min if lo is None else lo
        hi = info.max if hi is None else hi
        if dtype in ("int32", "int64") and lo == info.min:
            lo, hi = -1000, 1000
        return self.r.integers(lo, hi, size=shape, endpoint=True).astype(NP[dtype])

    # --- model construction
    def t(self, shape, dtype, q=None, data=None, qdim=0, var=False):
        x = fb.TensorT()
        x.shape, x.type, x.name, x.buffer = [int(v) for v in shape], TT[dtype], f"t{len(self.tensors)}".encode(), 0
        x.isVariable = var
        if data is not None:
            b = fb.BufferT()
            b.data = np.ascontiguousarray(np.asarray(data, dtype=NP[dtype])).tobytes()
            self.buffers.append(b)
            x.buffer = len(self.buffers) - 1
        if q is not None:
            x.quantization = fb.QuantizationParametersT()
            x.quantization.scale = [float(v) for v in np.atleast_1d(q[0])]
            x.quantization.zeroPoint = [int(v) for v in np.atleast_1d(q[1])]
            x.quantization.quantizedDimension = qdim
        self.tensors.append(x)
        return len(self.tensors) - 1

    def const(self, values, dtype="int32"):
        a = np.asarray(values, dtype=NP[dtype])
        return self.t(a.shape, dtype, data=a)

    def feed(self, tensor, data):
        self.feeds[tensor] = np.asarray(data)
        return tensor

    def op(self, code, ins, outs, opt_type=0, opt=None, custom=None, custom_options=None, intermediates=None):
        self.code, self.custom, self.ins, self.outs = code, custom, list(ins), list(outs)
        self.opt_type, self.opt, self.custom_options, self.intermediates = opt_type, opt, custom_options, intermediates
        return self

    def inputs(self):
        """The graph inputs: operands without data that are not variables."""
        seen = []
        for i in self.ins:
            t = self.tensors[i] if i >= 0 else None
            if t is not None and t.buffer == 0 and not t.isVariable and i not in seen:
                seen.append(i)
        return seen

    def blob(self):
        oc = fb.OperatorCodeT()
        oc.version = 1
        if self.custom is not None:
            oc.builtinCode = oc.deprecatedBuiltinCode = B.CUSTOM
            oc.customCode = self.custom.encode()
        else:
            oc.builtinCode, oc.deprecatedBuiltinCode = self.code, min(self.code, 127)
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, self.ins, self.outs
        if self.opt is not None:
            op.builtinOptionsType, op.builtinOptions = self.opt_type, self.opt
        if self.custom_options is not None:
            op.customOptions = list(self.custom_options)
            op.customOptionsFormat = fb.CustomOptionsFormat.FLEXBUFFERS
        if self.intermediates is not None:
            op.intermediates = self.intermediates
        sg = fb.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs = self.tensors, [op], self.inputs(), self.outs
        m = fb.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [oc], [sg], self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def options(cls, **fields):
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


# ----------------------------------------------------------------------------------------------------------------
# Generators: gen(case, dtype) -> case with its op set, or None to draw again. Output shapes that the op computes
# may be left rough: the reference's shapes after allocate_tensors() are written into the model before comparing.

def conv_like(kind):
    def gen(c, dt):
        h, w, cin = c.int(1, 12), c.int(1, 12), c.int(1, 9)
        kh, kw = c.int(1, 5), c.int(1, 5)
        sh, sw = c.int(1, 3), c.int(1, 3)
        dh, dw = (c.int(1, 3), c.int(1, 3)) if kind != "fc" else (1, 1)
        same = c.coin()
        act = c.pick(ACT)
        qi, qo = c.q(dt), c.q(dt)
        batch = c.int(1, 3) if c.coin(0.3) else 1
        if kind == "conv":
            cout = c.int(1, 12)
            wshape, nch, qdim = [cout, kh, kw, cin], cout, 0
        elif kind == "dw":
            mult = c.pick([1, 1, 2, 3])
            if c.coin(0.25):
                # The width of real depthwise layers, where the vector kernels take whole rows of
                # pixels (16 or more channels, depth multiplier 1).
                cin, mult = c.int(16, 72), 1
            cout = cin * mult
            wshape, nch, qdim = [1, kh, kw, cout], cout, 3
        else:
            cout, depth = c.int(1, 20), c.int(1, 64)
            wshape, nch, qdim = [cout, depth], cout, 0
        per_channel = dt == "int8" and c.coin(0.8)
        if dt == "uint8":
            ws = np.full(nch, float(np.exp(c.r.uniform(np.log(0.002), np.log(0.1)))))
            wt = c.t(wshape, "uint8", (ws[0], c.int(0, 255)), c.values("uint8", wshape))
        else:
            ws = np.exp(c.r.uniform(np.log(0.002), np.log(0.1), size=nch if per_channel else 1))
            wt = c.t(wshape, "int8", (ws, np.zeros(len(ws), int)), c.values("int8", wshape, -127, 127), qdim=qdim)
            ws = np.broadcast_to(ws, nch)
        bias = -1
        if kind != "fc" or c.coin(0.8):
            bs = (np.float32(qi[0]) * ws.astype(np.float32)).astype(np.float64)
            if not per_channel:
                bs = bs[:1]
            bias = c.t([nch], "int32", (bs, np.zeros(len(bs), int)), c.values("int32", [nch], -5000, 5000), qdim=0)
        if kind == "fc":
            if c.coin(0.3):
                x = c.t([batch, depth], dt, qi)
            else:
                rows = c.int(1, 4)
                x = c.t([rows, depth] if c.coin() else [1, rows, 1, depth], dt, qi)
                batch = rows
            y = c.t([batch, cout], dt, qo)
            opt = options(fb.FullyConnectedOptionsT, fusedActivationFunction=act)
            return c.op(B.FULLY_CONNECTED, [x, wt, bias], [y], O.FullyConnectedOptions, opt)
        x = c.t([batch, h, w, cin], dt, qi)
        ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        oh = -(-h // sh) if same else (h - ekh) // sh + 1
        ow = -(-w // sw) if same else (w - ekw) // sw + 1
        if oh < 1 or ow < 1:
            return None
        y = c.t([batch, oh, ow, cout], dt, qo)
        if kind == "conv":
            opt, t, code = fb.Conv2DOptionsT(), O.Conv2DOptions, B.CONV_2D
        else:
            opt, t, code = fb.DepthwiseConv2DOptionsT(), O.DepthwiseConv2DOptions, B.DEPTHWISE_CONV_2D
            opt.depthMultiplier = cout // cin
        opt.padding = fb.Padding.SAME if same else fb.Padding.VALID
        opt.strideH, opt.strideW, opt.dilationHFactor, opt.dilationWFactor = sh, sw, dh, dw
        opt.fusedActivationFunction = act
        return c.op(code, [x, wt, bias], [y], t, opt)
    return gen


def broadcast_pair(c, rank):
    shape = c.shape(rank, 1, 7)
    a, b = list(shape), list(shape)
    if c.coin(0.5):
        b = [1 if c.coin() else v for v in shape]
        if c.coin(0.3):
            b = b[c.int(0, rank):]  # lower rank
        if c.coin(0.5):
            a, b = b, a
    return a, b, shape


def arith(code):
    def gen(c, dt):
        a_s, b_s, o_s = broadcast_pair(c, c.int(1, 5))
        a = c.t(a_s, dt, c.q(dt))
        if c.coin(0.2):
            b = c.t(b_s, dt, c.q(dt), c.values(dt, b_s))
        else:
            b = c.t(b_s, dt, c.q(dt))
        y = c.t(o_s, dt, c.q(dt))
        act = c.pick(ACT[:3])
        if code in (B.DIV, B.FLOOR_DIV):
            # no division by zero (undefined for int32 in TFLite)
            if dt == "int32":
                v = c.values("int32", b_s, 1, 50) * np.where(c.r.random(b_s) < 0.5, -1, 1).astype(np.int32)
            else:
                v = (c.r.uniform(0.1, 4, size=b_s) * np.where(c.r.random(b_s) < 0.5, -1, 1)).astype(np.float32)
            if c.tensors[b].buffer:
                c.buffers[c.tensors[b].buffer].data = v.tobytes()
            else:
                c.feed(b, v)
        table = {B.ADD: (fb.AddOptionsT, O.AddOptions), B.SUB: (fb.SubOptionsT, O.SubOptions),
                 B.MUL: (fb.MulOptionsT, O.MulOptions), B.DIV: (fb.DivOptionsT, O.DivOptions),
                 B.FLOOR_DIV: (fb.FloorDivOptionsT, O.FloorDivOptions)}
        cls, t = table[code]
        opt = cls()
        if code != B.FLOOR_DIV:
            opt.fusedActivationFunction = act
        return c.op(code, [a, b], [y], t, opt)
    return gen


def sqrt(c, dt):
    s = c.shape(c.int(1, 4))
    x = c.feed(c.t(s, dt), c.r.uniform(0, 100, size=s).astype(np.float32) ** c.pick([1, 3]))
    return c.op(B.SQRT, [x], [c.t(s, dt)])


CAST_TYPES = ("float32", "int32", "uint8", "int8", "int64", "int16", "bool")


def cast(c, dt):
    to = c.pick([t for t in CAST_TYPES if t != dt])
    s = c.shape(c.int(1, 4))
    x = c.t(s, dt)
    if dt == "float32" and to != "bool":
        # float to integer conversion is only defined in the target's range
        lo, hi = (-1000, 1000) if to in ("int32", "int64", "int16") else (np.iinfo(NP[to]).min, np.iinfo(NP[to]).max)
        c.feed(x, np.trunc(c.r.uniform(lo, hi, size=s)).astype(np.float32) + c.r.uniform(-0.99, 0.99, size=s).astype(
            np.float32) * (c.r.random(s) < 0.5))
    elif dt != "bool":
        c.feed(x, c.values(dt, s, *((-300, 300) if dt in ("int32", "int64", "int16") else (None, None))))
    return c.op(B.CAST, [x], [c.t(s, to)], O.CastOptions, options(fb.CastOptionsT, inDataType=TT[dt], outDataType=TT[to]))


def quantize(c, dt):
    to = c.pick(QUANT)
    s = c.shape(c.int(1, 4))
    return c.op(B.QUANTIZE, [c.t(s, dt, c.q(dt))], [c.t(s, to, c.q(to))])


def dequantize(c, dt):
    s = c.shape(c.int(1, 4))
    return c.op(B.DEQUANTIZE, [c.t(s, dt, c.q(dt))], [c.t(s, "float32")])


def unary(code):
    def gen(c, dt):
        s = c.shape(c.int(1, 4))
        qi = c.q(dt, 0.002, 0.2 if code in (B.LOGISTIC, B.TANH, B.SOFTMAX) else 0.5)
        x = c.t(s, dt, qi)
        qo = c.q(dt)
        if code in (B.LOGISTIC, B.SOFTMAX) and dt in QUANT:
            qo = (1 / 256, 0 if dt == "uint8" else -128)
        elif code == B.TANH and dt in QUANT:
            qo = (1 / 128, 128 if dt == "uint8" else 0)
        elif code in (B.RELU, B.RELU6, B.RELU_N1_TO_1, B.HARD_SWISH) and c.coin(0.3):
            qo = qi
        y = c.t(s, dt, qo)
        if code == B.SOFTMAX:
            return c.op(code, [x], [y], O.SoftmaxOptions, options(fb.SoftmaxOptionsT, beta=float(c.pick([1.0, 0.5, 2.0, 0.1]))))
        if code == B.LEAKY_RELU:
            alpha = float(c.pick([c.r.uniform(0.01, 0.5), c.r.uniform(0.5, 3.0), c.r.uniform(-1.0, 0.0)]))
            return c.op(code, [x], [y], O.LeakyReluOptions, options(fb.LeakyReluOptionsT, alpha=alpha))
        return c.op(code, [x], [y])
    return gen


def l2norm(c, dt):
    s = c.shape(c.int(1, 4))
    qo = {"uint8": (1 / 128, 128), "int8": (1 / 128, 0)}.get(dt)
    return c.op(B.L2_NORMALIZATION, [c.t(s, dt, c.q(dt))], [c.t(s, dt, qo)], O.L2NormOptions, fb.L2NormOptionsT())


def prelu(c, dt):
    s = c.shape(4)
    ash = c.pick([[1, 1, s[3]], s[1:], [1, s[2], 1], [s[3]]])
    a = c.t(ash, dt, c.q(dt), c.values(dt, ash))
    return c.op(B.PRELU, [c.t(s, dt, c.q(dt)), a], [c.t(s, dt, c.q(dt))])


def maxmin(code):
    def gen(c, dt):
        a_s, b_s, o_s = broadcast_pair(c, c.int(1, 5))
        q = c.q(dt)
        a = c.t(a_s, dt, q)
        b = c.t(b_s, dt, q, c.values(dt, b_s) if c.coin(0.2) else None)
        return c.op(code, [a, b], [c.t(o_s, dt, q)])
    return gen


def pool(code):
    def gen(c, dt):
        h, w, ch = c.int(1, 12), c.int(1, 12), c.int(1, 9)
        fh, fw, sh, sw = c.int(1, 4), c.int(1, 4), c.int(1, 3), c.int(1, 3)
        same = c.coin()
        oh = -(-h // sh) if same else (h - fh) // sh + 1
        ow = -(-w // sw) if same else (w - fw) // sw + 1
        if oh < 1 or ow < 1:
            return None
        q = c.q(dt)
        n = c.int(1, 2)
        opt = options(fb.Pool2DOptionsT, padding=fb.Padding.SAME if same else fb.Padding.VALID, strideH=sh, strideW=sw,
                      filterHeight=fh, filterWidth=fw, fusedActivationFunction=c.pick(ACT[:3]))
        return c.op(code, [c.t([n, h, w, ch], dt, q)], [c.t([n, oh, ow, ch], dt, q)], O.Pool2DOptions, opt)
    return gen


def resize(code):
    def gen(c, dt):
        n, h, w, ch = c.int(1, 2), c.int(1, 10), c.int(1, 10), c.int(1, 5)
        oh, ow = c.int(1, 20), c.int(1, 20)
        q = c.q(dt)
        x = c.t([n, h, w, ch], dt, q)
        size = c.const([oh, ow])
        ac = c.coin(0.3)
        hp = not ac and c.coin()
        if code == B.RESIZE_BILINEAR:
            opt, t = fb.ResizeBilinearOptionsT(), O.ResizeBilinearOptions
        else:
            opt, t = fb.ResizeNearestNeighborOptionsT(), O.ResizeNearestNeighborOptions
        opt.alignCorners, opt.halfPixelCenters = ac, hp
        return c.op(code, [x, size], [c.t([n, oh, ow, ch], dt, q)], t, opt)
    return gen


def concat(c, dt):
    rank = c.int(1, 5)
    base = c.shape(rank, 1, 5)
    axis = c.int(-rank, rank - 1)
    ins = []
    same_q = dt != "uint8" or c.coin(0.4)  # the reference requantizes uint8 inputs only
    q = c.q(dt)
    for _ in range(c.int(1, 4)):
        s = list(base)
        s[axis] = c.int(1, 5)
        ins.append(c.t(s, dt, q if same_q else c.q(dt)))
    out = list(base)
    out[axis] = sum(c.tensors[i].shape[axis] for i in ins)
    return c.op(B.CONCATENATION, ins, [c.t(out, dt, q if same_q else c.q(dt))], O.ConcatenationOptions,
                options(fb.ConcatenationOptionsT, axis=axis))


def reshape(c, dt):
    s = c.shape(c.int(1, 5), 1, 5)
    n = int(np.prod(s))
    # factor n into a random new shape
    dims, rest = [], n
    for _ in range(c.int(0, 4)):
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        d = c.pick(divs)
        dims.append(d)
        rest //= d
    dims.append(rest)
    c.r.shuffle(dims)
    q = c.q(dt)
    x = c.t(s, dt, q)
    y = c.t(dims, dt, q)
    spec = list(dims)
    if c.coin(0.3):
        spec[c.int(0, len(spec) - 1)] = -1
    how = c.int(0, 2)
    if how == 0:
        return c.op(B.RESHAPE, [x, c.const(spec)], [y])
    if how == 1:
        return c.op(B.RESHAPE, [x, c.const(spec)], [y], O.ReshapeOptions, options(fb.ReshapeOptionsT, newShape=spec))
    return c.op(B.RESHAPE, [x], [y], O.ReshapeOptions, options(fb.ReshapeOptionsT, newShape=spec))


def squeeze(c, dt):
    s = c.shape(c.int(1, 5), 1, 5)
    for _ in range(c.int(1, 2)):
        s.insert(c.int(0, len(s)), 1)
    ones = [i for i, v in enumerate(s) if v == 1]
    dims = [] if c.coin(0.3) else sorted(set(int(v) for v in c.r.choice(ones, size=c.int(1, len(ones)))))
    if dims and c.coin(0.3):
        dims = [d - len(s) for d in dims]
    out = [v for i, v in enumerate(s) if (v != 1 if not dims else i not in [d % len(s) for d in dims])]
    q = c.q(dt)
    return c.op(B.SQUEEZE, [c.t(s, dt, q)], [c.t(out, dt, q)], O.SqueezeOptions, options(fb.SqueezeOptionsT, squeezeDims=dims))


def split(c, dt):
    rank = c.int(1, 5)
    s = c.shape(rank, 1, 4)
    axis = c.int(-rank, rank - 1)
    parts = c.int(1, 4)
    s[axis] *= parts
    q = c.q(dt)
    x = c.t(s, dt, q)
    o = list(s)
    o[axis] //= parts
    outs = [c.t(o, dt, q) for _ in range(parts)]
    return c.op(B.SPLIT, [c.const([axis]) if c.coin() else c.const(axis), x], outs, O.SplitOptions,
                options(fb.SplitOptionsT, numSplits=parts))


def pack(c, dt):
    s = c.shape(c.int(0, 4), 1, 5)
    n = c.int(1, 4)
    axis = c.int(-(len(s) + 1), len(s))
    q = c.q(dt)
    ins = [c.t(s, dt, q) for _ in range(n)]
    out = list(s)
    out.insert(axis % (len(s) + 1), n)
    return c.op(B.PACK, ins, [c.t(out, dt, q)], O.PackOptions, options(fb.PackOptionsT, valuesCount=n, axis=axis))


def unpack(c, dt):
    s = c.shape(c.int(1, 5), 1, 5)
    axis = c.int(-len(s), len(s) - 1)
    q = c.q(dt)
    out = list(s)
    n = out.pop(axis % len(s))
    return c.op(B.UNPACK, [c.t(s, dt, q)], [c.t(out, dt, q) for _ in range(n)], O.UnpackOptions,
                options(fb.UnpackOptionsT, num=n, axis=axis))


def pad(code):
    def gen(c, dt):
        rank = c.int(1, 5)
        s = c.shape(rank, 1, 6)
        p = c.r.integers(0, 4, size=(rank, 2))
        q = c.q(dt)
        x = c.t(s, dt, q)
        pt = c.const(p, c.pick(["int32", "int64"]))
        out = [int(v + a + b) for v, (a, b) in zip(s, p)]
        ins = [x, pt]
        if code == B.PADV2:
            ins.append(c.t([1] if c.coin() else [], dt, q, c.values(dt, [1])))
        return c.op(code, ins, [c.t(out, dt, q)])
    return gen


def gather_nd(c, dt):
    ps = c.shape(c.int(1, 5), 1, 6)
    depth = c.int(1, len(ps))
    lead = c.shape(c.int(1, 3), 1, 4)
    idx = np.stack([c.r.integers(0, ps[k], size=lead) for k in range(depth)], axis=-1).astype(np.int32)
    q = c.q(dt)
    x = c.t(ps, dt, q)
    it = c.const(idx) if c.coin() else c.feed(c.t(idx.shape, "int32"), idx)
    return c.op(B.GATHER_ND, [x, it], [c.t(lead + ps[depth:], dt, q)])


def reduced(c, hi):
    """Input shape, axes, keep_dims and output shape of a reducer."""
    rank = c.int(1, 5)
    s = c.shape(rank, 1, hi)
    axes = sorted(set(int(a) for a in c.r.integers(-rank, rank, size=c.int(1, rank))))
    keep = c.coin()
    red = {a % rank for a in axes}
    out = [1 if i in red else v for i, v in enumerate(s)] if keep else [v for i, v in enumerate(s) if i not in red]
    return s, axes, keep, out


def mean(c, dt):
    s, axes, keep, out = reduced(c, 8)
    same = c.coin(0.3)
    q = c.q(dt)
    return c.op(B.MEAN, [c.t(s, dt, q), c.const(axes)], [c.t(out, dt, q if same else c.q(dt))], O.ReducerOptions,
                options(fb.ReducerOptionsT, keepDims=keep))


def reduce_sum(c, dt):
    # As MEAN, with SUM. TFLite's reference SUM reads and writes int8 tensors as uint8 (reduce.cc,
    # the kReference branch of QuantizedMeanOrSum), so int8 is compared with its default kernel,
    # which the runtime follows.
    if dt == "int8":
        c.resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    s, axes, keep, out = reduced(c, 6)
    q = c.q(dt)
    qo = q if c.coin(0.3) else c.q(dt, 0.01, 4.0)
    return c.op(B.SUM, [c.t(s, dt, q), c.const(axes)], [c.t(out, dt, qo)], O.ReducerOptions,
                options(fb.ReducerOptionsT, keepDims=keep))


def gather(c, dt):
    ps = c.shape(c.int(1, 4), 1, 6)
    rank = len(ps)
    axis = c.int(0, rank - 1)
    bd = c.int(0, axis) if c.coin(0.3) else 0
    lead = ps[:bd] + c.shape(c.int(0, 2), 1, 4)
    idx = c.r.integers(0, ps[axis], size=lead).astype(np.int64 if c.coin(0.3) else np.int32)
    q = c.q(dt)
    x = c.t(ps, dt, q)
    ity = "int64" if idx.dtype == np.int64 else "int32"
    it = c.const(idx, ity) if c.coin() else c.feed(c.t(list(idx.shape), ity), idx)
    out = ps[:axis] + list(idx.shape[bd:]) + ps[axis + 1:]
    ax = axis - rank if c.coin(0.3) else axis
    return c.op(B.GATHER, [x, it], [c.t(out, dt, q)], O.GatherOptions,
                options(fb.GatherOptionsT, axis=ax, batchDims=bd))


def argminmax(code):
    def gen(c, dt):
        rank = c.int(1, 5)
        s = c.shape(rank, 1, 7)
        axis = c.int(-rank, rank - 1)
        x = c.t(s, dt, c.q(dt))
        if dt in ("int32",):
            c.feed(x, c.values(dt, s, -5, 5))  # ties
        elif dt == "float32" and c.coin(0.3):
            c.feed(x, c.r.integers(-3, 3, size=s).astype(np.float32))
        out_t = c.pick(["int32", "int64"])
        out = [v for i, v in enumerate(s) if i != axis % rank]
        ax = c.const([axis], c.pick(["int32", "int64"]))
        if code == B.ARG_MAX:
            return c.op(code, [x, ax], [c.t(out, out_t)], O.ArgMaxOptions, options(fb.ArgMaxOptionsT, outputType=TT[out_t]))
        return c.op(code, [x, ax], [c.t(out, out_t)], O.ArgMinOptions, options(fb.ArgMinOptionsT, outputType=TT[out_t]))
    return gen


def transpose(c, dt):
    rank = c.int(1, 6)
    s = c.shape(rank, 1, 5)
    perm = [int(v) for v in c.r.permutation(rank)]
    q = c.q(dt)
    return c.op(B.TRANSPOSE, [c.t(s, dt, q), c.const(perm)], [c.t([s[i] for i in perm], dt, q)])


def tile(c, dt):
    rank = c.int(1, 5)
    s = c.shape(rank, 1, 4)
    m = [c.int(1, 3) for _ in range(rank)]
    q = c.q(dt)
    mt = c.pick(["int32", "int64"])
    x = c.t(s, dt, q)
    mi = c.const(m, mt) if c.coin(0.7) else c.feed(c.t([rank], mt), np.array(m, NP[mt]))
    return c.op(B.TILE, [x, mi], [c.t([a * b for a, b in zip(s, m)], dt, q)])


def space_depth(code):
    def gen(c, dt):
        bs = c.int(2, 4)
        q = c.q(dt)
        n = c.int(1, 2)
        if code == B.SPACE_TO_DEPTH:
            h, w, ch = bs * c.int(1, 3), bs * c.int(1, 3), c.int(1, 5)
            x, y = c.t([n, h, w, ch], dt, q), c.t([n, h // bs, w // bs, ch * bs * bs], dt, q)
            return c.op(code, [x], [y], O.SpaceToDepthOptions, options(fb.SpaceToDepthOptionsT, blockSize=bs))
        h, w, ch = c.int(1, 4), c.int(1, 4), bs * bs * c.int(1, 3)
        x, y = c.t([n, h, w, ch], dt, q), c.t([n, h * bs, w * bs, ch // (bs * bs)], dt, q)
        return c.op(code, [x], [y], O.DepthToSpaceOptions, options(fb.DepthToSpaceOptionsT, blockSize=bs))
    return gen


def space_batch(code):
    def gen(c, dt):
        m = c.pick([1, 2, 2])  # spatial dimensions: 3-D or 4-D input
        block = [c.int(1, 3) for _ in range(m)]
        q = c.q(dt)
        ch = c.int(1, 4)
        if code == B.SPACE_TO_BATCH_ND:
            n = c.int(1, 2)
            pads = [[c.int(0, 2), c.int(0, 2)] for _ in range(m)]
            sp = []
            for k in range(m):
                tot = block[k] * c.int(1, 4)
                v = tot - pads[k][0] - pads[k][1]
                if v < 1:
                    return None
                sp.append(v)
            out = [n * int(np.prod(block))] + [(sp[k] + sum(pads[k])) // block[k] for k in range(m)] + [ch]
            x = c.t([n] + sp + [ch], dt, q)
            return c.op(code, [x, c.const(block), c.const(pads)], [c.t(out, dt, q)], O.SpaceToBatchNDOptions,
                        fb.SpaceToBatchNDOptionsT())
        n = int(np.prod(block)) * c.int(1, 2)
        sp = [c.int(1, 4) for _ in range(m)]
        crops = []
        for k in range(m):
            full = sp[k] * block[k]
            a = c.int(0, min(2, full - 1))
            b = c.int(0, min(2, full - 1 - a))
            crops.append([a, b])
        out = [n // int(np.prod(block))] + [sp[k] * block[k] - sum(crops[k]) for k in range(m)] + [ch]
        x = c.t([n] + sp + [ch], dt, q)
        return c.op(code, [x, c.const(block), c.const(crops)], [c.t(out, dt, q)], O.BatchToSpaceNDOptions,
                    fb.BatchToSpaceNDOptionsT())
    return gen


def slice_op(c, dt):
    rank = c.int(1, 5)
    s = c.shape(rank, 1, 7)
    begin = [c.int(0, v - 1) for v in s]
    size = [c.pick([-1, c.int(1, v - b)]) if c.coin(0.3) else c.int(1, v - b) for v, b in zip(s, begin)]
    out = [v - b if z == -1 else z for v, b, z in zip(s, begin, size)]
    it = c.pick(["int32", "int64"])
    q = c.q(dt)
    x = c.t(s, dt, q)
    return c.op(B.SLICE, [x, c.const(begin, it), c.const(size, it)], [c.t(out, dt, q)])


def strided_slice(c, dt):
    rank = c.int(1, 5)
    s = c.shape(rank, 1, 8)
    n = rank if c.coin(0.8) else c.int(1, rank)  # fewer begin/end values than dimensions
    begin, end, strides = [], [], []
    for k in range(n):
        st = c.pick([1, 1, 2, 3, -1, -2])
        begin.append(c.int(-s[k] - 1, s[k] + 1))
        end.append(c.int(-s[k] - 1, s[k] + 1))
        strides.append(st)
    bits = lambda p: sum(1 << k for k in range(n) if c.coin(p))
    shrink = bits(0.15) if c.coin(0.3) else 0
    # A shrunk axis must select one element (a negative stride or a begin outside the dimension selects none in
    # TFLite, which then leaves the output unwritten).
    for k in range(n):
        if shrink >> k & 1:
            strides[k] = abs(strides[k])
            begin[k] = c.int(-s[k], s[k] - 1)
    opt = options(fb.StridedSliceOptionsT, beginMask=bits(0.2), endMask=bits(0.2), shrinkAxisMask=shrink,
                  ellipsisMask=0, newAxisMask=0, offset=False)
    q = c.q(dt)
    x = c.t(s, dt, q)
    ins = [x, c.const(begin), c.const(end), c.const(strides)]
    return c.op(B.STRIDED_SLICE, ins, [c.t(s, dt, q)], O.StridedSliceOptions, opt)


def transpose_conv(c, dt):
    n, h, w, cin, cout = c.int(1, 2), c.int(1, 8), c.int(1, 8), c.int(1, 8), c.int(1, 8)
    kh, kw, sh, sw = c.int(1, 5), c.int(1, 5), c.int(1, 3), c.int(1, 3)
    same = c.coin()
    oh = h * sh if same else (h - 1) * sh + kh
    ow = w * sw if same else (w - 1) * sw + kw
    qi, qo = c.q(dt), c.q(dt)
    wshape = [cout, kh, kw, cin]
    if dt == "uint8":
        ws = np.full(cout, float(np.exp(c.r.uniform(np.log(0.002), np.log(0.1)))))
        wt = c.t(wshape, "uint8", (ws[0], c.int(0, 255)), c.values("uint8", wshape))
    elif dt == "int8":
        ws = np.exp(c.r.uniform(np.log(0.002), np.log(0.1), size=cout if c.coin(0.8) else 1))
        wt = c.t(wshape, "int8", (ws, np.zeros(len(ws), int)), c.values("int8", wshape, -127, 127))
        ws = np.broadcast_to(ws, cout)
    else:
        wt = c.t(wshape, dt, None, c.values(dt, wshape, -1, 1))
    bias = -1
    if c.coin():
        if dt == "float32":
            bias = c.t([cout], dt, None, c.values(dt, [cout]))
        else:
            bs = (np.float32(qi[0]) * ws.astype(np.float32)).astype(np.float64)
            if dt == "uint8":
                bs = bs[:1]
            bias = c.t([cout], "int32", (bs, np.zeros(len(bs), int)), c.values("int32", [cout], -5000, 5000))
    x = c.t([n, h, w, cin], dt, qi)
    opt = options(fb.TransposeConvOptionsT, padding=fb.Padding.SAME if same else fb.Padding.VALID, strideH=sh, strideW=sw,
                  fusedActivationFunction=c.pick(ACT[:3]))
    return c.op(B.TRANSPOSE_CONV, [c.const([n, oh, ow, cout]), wt, x, bias], [c.t([n, oh, ow, cout], dt, qo)],
                O.TransposeConvOptions, opt)


def lstm(c, dt):
    """A fully integer UNIDIRECTIONAL_SEQUENCE_LSTM with random variant (CIFG, peephole, projection, layer norm),
    sizes and scales; intermediates carry the gate and hidden scales, as TFLite's quantizer writes them."""
    n_batch, n_time, n_input, n_cell = c.int(1, 3), c.int(1, 5), c.int(1, 8), c.int(1, 12)
    cifg, peephole, projection, layer_norm = c.coin(0.3), c.coin(0.3), c.coin(0.4), c.coin(0.4)
    n_output = c.int(1, 10) if projection else n_cell
    # TFLite applies the peephole weights (n_cell values) over n_output elements: more would read out of bounds.
    peephole = peephole and n_output <= n_cell
    time_major = c.coin(0.3)
    in_q = (float(np.exp(c.r.uniform(np.log(0.005), np.log(0.1)))), c.int(-20, 20))
    os_q = (float(np.exp(c.r.uniform(np.log(1 / 256), np.log(1 / 32)))), c.int(-10, 10))
    hid_q = os_q if not projection else (float(np.exp(c.r.uniform(np.log(1 / 256), np.log(1 / 32)))), c.int(-10, 10))
    cell_log2 = c.int(-15, -9)
    shape_in = [n_time, n_batch, n_input] if time_major else [n_batch, n_time, n_input]
    ins = [c.t(shape_in, "int8", in_q)]
    gates = ["input", "forget", "cell", "output"]
    wsc = {g: float(np.exp(c.r.uniform(np.log(0.003), np.log(0.05)))) for g in gates}
    rsc = {g: float(np.exp(c.r.uniform(np.log(0.003), np.log(0.05)))) for g in gates}

    def w(rows, cols, scale):
        return c.t([rows, cols], "int8", (scale, 0), c.values("int8", [rows, cols], -127, 127))
    for g in gates:
        ins.append(-1 if cifg and g == "input" else w(n_cell, n_input, wsc[g]))
    for g in gates:
        ins.append(-1 if cifg and g == "input" else w(n_cell, n_output, rsc[g]))
    for g in ("input", "forget", "output"):
        if peephole and not (cifg and g == "input"):
            ins.append(c.t([n_cell], "int16", (float(np.exp(c.r.uniform(np.log(1e-5), np.log(1e-3)))), 0),
                           c.values("int16", [n_cell], -3000, 3000)))
        else:
            ins.append(-1)
    for g in gates:
        if cifg and g == "input":
            ins.append(-1)
        else:
            bs = in_q[0] * wsc[g] if not layer_norm else 2.0 ** -20
            ins.append(c.t([n_cell], "int32", (bs, 0), c.values("int32", [n_cell], -3000, 3000)))
    if projection:
        ps = float(np.exp(c.r.uniform(np.log(0.005), np.log(0.05))))
        ins.append(w(n_output, n_cell, ps))
        ins.append(c.t([n_output], "int32", (hid_q[0] * ps, 0), c.values("int32", [n_output], -500, 500))
                   if c.coin() else -1)
    else:
        ins += [-1, -1]
    ins.append(c.t([n_batch, n_output], "int8", os_q, var=True))
    ins.append(c.t([n_batch, n_cell], "int16", (2.0 ** cell_log2, 0), var=True))
    for g in gates:
        if layer_norm and not (cifg and g == "input"):
            ins.append(c.t([n_cell], "int16", (1 / 1024, 0), c.values("int16", [n_cell], 400, 1600)))
        else:
            ins.append(-1)
    out = c.t([n_time, n_batch, n_output] if time_major else [n_batch, n_time, n_output], "int8", os_q)
    inter = []
    for _ in gates:
        if layer_norm:
            inter.append(c.t([0], "int16", (float(np.exp(c.r.uniform(np.log(2e-4), np.log(2e-3)))), 0)))
        else:
            inter.append(c.t([0], "float32"))
    inter.append(c.t([0], "int8", hid_q))
    opt = options(fb.UnidirectionalSequenceLSTMOptionsT, fusedActivationFunction=fb.ActivationFunctionType.TANH,
                  cellClip=float(c.pick([0.0, c.r.uniform(0.5, 4)])),
                  projClip=float(c.pick([0.0, c.r.uniform(0.2, 2)])) if projection else 0.0, timeMajor=time_major)
    return c.op(B.UNIDIRECTIONAL_SEQUENCE_LSTM, ins, [out], O.UnidirectionalSequenceLSTMOptions, opt,
                intermediates=inter)


def detection(c, dt):
    """TFLite_Detection_PostProcess: random boxes, scores and anchors (uint8 or float32), regular or fast NMS."""
    nb, classes = c.int(1, 40), c.int(1, 6)
    background = c.coin(0.7)
    cols = classes + (1 if background else 0)
    box_len = c.pick([4, 4, 4, 6])
    if dt == "uint8":
        bq, sq, aq = (c.q("uint8", 0.02, 0.2), (float(c.r.uniform(0.002, 0.005)), c.int(0, 60)),
                      (float(c.r.uniform(0.002, 0.005)), c.int(0, 20)))
        anchors = c.t([nb, 4], "uint8", aq, np.concatenate(
            [c.values("uint8", [nb, 2], 0, 255), c.values("uint8", [nb, 2], 20, 120)], axis=1))
    else:
        bq = sq = None
        a = np.concatenate([c.r.uniform(0, 1, size=(nb, 2)), c.r.uniform(0.05, 0.5, size=(nb, 2))], axis=1)
        anchors = c.t([nb, 4], "float32", None, a.astype(np.float32))
    boxes = c.t([1, nb, box_len], dt, bq)
    scores = c.t([1, nb, cols], dt, sq)
    if dt == "float32":
        c.feed(boxes, c.r.normal(0, 1.5, size=(1, nb, box_len)).astype(np.float32))
        sc = c.r.uniform(0, 1, size=(1, nb, cols))
        if c.coin(0.3):
            sc = np.round(sc * 8) / 8  # ties
        c.feed(scores, sc.astype(np.float32))
    regular = c.coin()
    max_det, max_cls = c.int(1, 12), c.int(1, min(3, classes))
    opts = {"max_detections": max_det, "max_classes_per_detection": max_cls, "num_classes": classes,
            "nms_score_threshold": float(c.pick([0.0, c.r.uniform(0, 0.6), -1e9 if c.coin(0.1) else 0.3])),
            "nms_iou_threshold": float(c.r.uniform(0.1, 1.0)), "y_scale": float(c.pick([10.0, 1.0, 5.0])),
            "x_scale": float(c.pick([10.0, 1.0, 5.0])), "h_scale": float(c.pick([5.0, 1.0, 2.0])),
            "w_scale": float(c.pick([5.0, 1.0, 2.0])), "use_regular_nms": regular}
    if regular:
        opts["detections_per_class"] = c.int(1, 10)
    rows = max_det * max_cls
    outs = [c.t([1, rows, 4], "float32"), c.t([1, rows], "float32"), c.t([1, rows], "float32"), c.t([1], "float32")]
    return c.op(None, [boxes, scores, anchors], outs, custom="TFLite_Detection_PostProcess",
                custom_options=flexbuffers.Dumps(opts))


# Op name -> (types, generator). The names are those of runtime/src/cpu/ops/mod.rs.
GEN = {
    "CONV_2D": (QUANT, conv_like("conv")),
    "DEPTHWISE_CONV_2D": (QUANT, conv_like("dw")),
    "FULLY_CONNECTED": (QUANT, conv_like("fc")),
    "AVERAGE_POOL_2D": (QUANT + ("float32",), pool(B.AVERAGE_POOL_2D)),
    "MAX_POOL_2D": (QUANT + ("float32",), pool(B.MAX_POOL_2D)),
    "ADD": (QUANT + ("int32", "float32"), arith(B.ADD)),
    "SUB": (QUANT + ("int32", "float32"), arith(B.SUB)),
    "MUL": (QUANT + ("int32", "float32"), arith(B.MUL)),
    "DIV": (("int32", "float32"), arith(B.DIV)),
    "FLOOR_DIV": (("int32", "float32"), arith(B.FLOOR_DIV)),
    "SQRT": (("float32",), sqrt),
    "CAST": (CAST_TYPES, cast),
    "QUANTIZE": (QUANT + ("float32",), quantize),
    "DEQUANTIZE": (QUANT + ("int16",), dequantize),
    "RELU": (QUANT + ("float32",), unary(B.RELU)),
    "RELU6": (QUANT + ("float32",), unary(B.RELU6)),
    "RELU_N1_TO_1": (QUANT + ("float32",), unary(B.RELU_N1_TO_1)),
    "SOFTMAX": (QUANT + ("float32",), unary(B.SOFTMAX)),
    "LOGISTIC": (QUANT + ("float32",), unary(B.LOGISTIC)),
    "RESHAPE": (LAYOUT, reshape),
    "SQUEEZE": (LAYOUT, squeeze),
    "CONCATENATION": (LAYOUT, concat),
    "SPLIT": (LAYOUT, split),
    "PACK": (LAYOUT, pack),
    "UNPACK": (tuple(t for t in LAYOUT if t != "int64"), unpack),
    "PAD": (LAYOUT, pad(B.PAD)),
    "PADV2": (LAYOUT, pad(B.PADV2)),
    "GATHER_ND": (LAYOUT, gather_nd),
    "MEAN": (QUANT + ("float32",), mean),
    "SUM": (QUANT + ("float32",), reduce_sum),
    "GATHER": (LAYOUT, gather),
    "ARG_MAX": (QUANT + ("int32", "float32"), argminmax(B.ARG_MAX)),
    "ARG_MIN": (QUANT + ("int32", "float32"), argminmax(B.ARG_MIN)),
    "RESIZE_BILINEAR": (QUANT + ("float32",), resize(B.RESIZE_BILINEAR)),
    "RESIZE_NEAREST_NEIGHBOR": (QUANT + ("float32",), resize(B.RESIZE_NEAREST_NEIGHBOR)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (("int8",), lstm),
    "TFLite_Detection_PostProcess": (("uint8", "float32"), detection),
    "HARD_SWISH": (QUANT + ("float32",), unary(B.HARD_SWISH)),
    "TANH": (QUANT + ("float32",), unary(B.TANH)),
    "LEAKY_RELU": (QUANT + ("float32",), unary(B.LEAKY_RELU)),
    "PRELU": (QUANT + ("float32",), prelu),
    "MAXIMUM": (QUANT + ("int16", "int32", "int64", "float32"), maxmin(B.MAXIMUM)),
    "MINIMUM": (QUANT + ("int16", "int32", "int64", "float32"), maxmin(B.MINIMUM)),
    "L2_NORMALIZATION": (QUANT + ("float32",), l2norm),
    "STRIDED_SLICE": (LAYOUT, strided_slice),
    "SLICE": (LAYOUT, slice_op),
    "TRANSPOSE": (LAYOUT, transpose),
    "TILE": (LAYOUT + ("bool",), tile),
    "BATCH_TO_SPACE_ND": (LAYOUT, space_batch(B.BATCH_TO_SPACE_ND)),
    "SPACE_TO_BATCH_ND": (LAYOUT, space_batch(B.SPACE_TO_BATCH_ND)),
    "SPACE_TO_DEPTH": (tuple(t for t in LAYOUT if t != "int16"), space_depth(B.SPACE_TO_DEPTH)),
    "DEPTH_TO_SPACE": (tuple(t for t in LAYOUT if t != "int16"), space_depth(B.DEPTH_TO_SPACE)),
    "TRANSPOSE_CONV": (QUANT + ("float32",), transpose_conv),
}


def interpreter_ops():
    """The op names of the CPU interpreter's registry: the string patterns of `match ctx.op_name`."""
    src = open(SOURCE).read()
    body = src[src.index("match ctx.op_name {"):]
    body = body[:body.index("_ =>")]
    names = set()
    for line in body.splitlines():
        if "=>" in line:
            names.update(re.findall(r'"([^"]+)"', line.split("=>")[0]))
    if not names:
        raise SystemExit(f"no op names found in {SOURCE}")
    return names


def reference(blob, resolver=OpResolverType.BUILTIN_REF):
    it = Interpreter(model_content=blob, experimental_op_resolver_type=resolver, num_threads=1)
    it.allocate_tensors()
    return it


def one(edgetpu, work, case, threads):
    """Runs one case; returns (status, detail, blob, feeds, want) with status skip|same|differ|failed."""
    blob = case.blob()
    try:
        ref = reference(blob, case.resolver)
        # Output shapes the op computes: take the reference's, then rebuild.
        changed = False
        for t, d in zip(case.outs, ref.get_output_details()):
            if list(case.tensors[t].shape) != [int(v) for v in d["shape"]]:
                case.tensors[t].shape = [int(v) for v in d["shape"]]
                changed = True
        if changed:
            blob = case.blob()
            ref = reference(blob, case.resolver)
        feeds = []
        for t, d in zip(case.inputs(), ref.get_input_details()):
            x = case.feeds.get(t)
            if x is None:
                x = case.values(np.dtype(d["dtype"]).name, [int(v) for v in d["shape"]])
            x = np.asarray(x, dtype=d["dtype"]).reshape(d["shape"])
            ref.set_tensor(d["index"], x)
            feeds.append(x)
        ref.invoke()
        want = [ref.get_tensor(d["index"]).tobytes() for d in ref.get_output_details()]
    except Exception as e:  # the reference refuses this model
        return "skip", str(e).splitlines()[0][:200] if str(e) else type(e).__name__, blob, None, None
    mpath = os.path.join(work, "model.tflite")
    open(mpath, "wb").write(blob)
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    args = [edgetpu, "run", "--model", mpath, "--device", "cpu", "--threads", str(threads), "--output-dir", out]
    for i, x in enumerate(feeds):
        p = os.path.join(work, f"in{i}.bin")
        x.tofile(p)
        args += ["--input", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode:
        lines = [x for x in r.stderr.strip().splitlines() if not x.startswith("hint:")]
        msg = (lines or [f"exit code {r.returncode}"])[0]
        return "failed", msg[:300], blob, feeds, want
    bad = []
    got_all = []
    for j in range(len(want)):
        p = os.path.join(out, f"out{j}.bin")
        got_all.append(open(p, "rb").read() if os.path.exists(p) else b"")
    valid = VALID_ROWS.get(case.custom or case.code)
    for j, (got, w) in enumerate(zip(got_all, want)):
        if valid is not None:
            got, w = valid(j, got, want), valid(j, w, want)
        if got != w:
            if len(got) != len(w):
                bad.append(f"output {j}: {len(got)} bytes, the reference {len(w)}")
            else:
                n = sum(a != b for a, b in zip(got, w))
                bad.append(f"output {j}: {n} of {len(w)} bytes differ")
    if os.path.exists(os.path.join(out, f"out{len(want)}.bin")):
        bad.append(f"edgetpu wrote more than the {len(want)} outputs")
    return ("differ", "; ".join(bad), blob, feeds, want) if bad else ("same", "", blob, feeds, want)


def detection_rows(j, data, want):
    """TFLite_Detection_PostProcess writes only the first num_detections rows of outputs 0-2 (TFLite leaves the
    rest uninitialized, this runtime zeroes it): compare those rows and the count."""
    if j == 3:
        return data
    n = int(np.frombuffer(want[3], np.float32)[0])
    return data[:n * (16 if j == 0 else 4)]  # boxes: 4 floats a row; classes and scores: 1


# Op -> f(output index, output bytes, all reference outputs): the bytes that must agree.
VALID_ROWS = {"TFLite_Detection_PostProcess": detection_rows}


def keep_case(keep, name, blob, feeds, want):
    d = os.path.join(keep, name)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "model.tflite"), "wb").write(blob)
    for i, x in enumerate(feeds):
        x.tofile(os.path.join(d, f"in{i}.bin"))
    for j, w in enumerate(want):
        open(os.path.join(d, f"out{j}.bin"), "wb").write(w)
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edgetpu", help="the edgetpu CLI binary")
    ap.add_argument("--count", type=int, default=5, help="compared models per op and type (default 5)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    ap.add_argument("--types", default="", help="comma-separated types (default: all the op supports)")
    ap.add_argument("--keep", help="directory for differing and failing cases")
    ap.add_argument("--why", action="store_true", help="print the reference's most frequent reasons to refuse")
    ap.add_argument("--list", action="store_true", help="print the fuzzed ops and types and the exempt ops")
    a = ap.parse_args()

    registry = interpreter_ops()
    problems = []
    missing = registry - set(GEN) - set(EXEMPT)
    extra = (set(GEN) | set(EXEMPT)) - registry
    if missing:
        problems.append(f"ops the interpreter runs but this tool does not fuzz: {', '.join(sorted(missing))}")
    if extra:
        problems.append(f"ops this tool knows but the interpreter does not run: {', '.join(sorted(extra))}")
    if a.list:
        for name, (types, _) in GEN.items():
            print(f"{name}: {' '.join(types)}")
        for name, why in EXEMPT.items():
            print(f"{name}: exempt ({why})")
        for p in problems:
            print("error:", p, file=sys.stderr)
        return 1 if problems else 0
    if not a.edgetpu:
        ap.error("--edgetpu is required")
    only_ops = [o for o in a.ops.split(",") if o]
    only_types = [t for t in a.types.split(",") if t]
    for o in only_ops:
        if o not in GEN:
            ap.error(f"unknown op {o}" + (f" (exempt: {EXEMPT[o]})" if o in EXEMPT else ""))

    work = tempfile.mkdtemp(prefix="edgetpu-opfuzz-")
    rows, diffs = [], []
    start = time.time()
    for name, (types, gen) in GEN.items():
        if only_ops and name not in only_ops:
            continue
        for dt in types:
            if only_types and dt not in only_types:
                continue
            st = dict(generated=0, skip=0, same=0, differ=0, failed=0)
            reasons = {}
            k = 0
            while st["same"] + st["differ"] + st["failed"] < a.count and k < a.count * 20:
                seed = [a.seed, zlib.crc32(name.encode()), zlib.crc32(dt.encode()), k]
                k += 1
                case = Case(np.random.default_rng(seed))
                if gen(case, dt) is None:
                    continue
                st["generated"] += 1
                status, detail, blob, feeds, want = one(a.edgetpu, work, case, 1 + (k % 2))
                st[status] += 1
                if status == "skip":
                    reasons[detail] = reasons.get(detail, 0) + 1
                elif status in ("differ", "failed"):
                    where = ""
                    if a.keep:
                        where = " -> " + keep_case(a.keep, f"{name}_{dt}_{a.seed}_{k - 1}", blob, feeds, want)
                    diffs.append(((name, dt), f"{name} {dt} (--seed {a.seed}, model {k - 1}): {status}: {detail}{where}"))
            compared = st["same"] + st["differ"] + st["failed"]
            rows.append((name, dt, st["generated"], st["skip"], compared, st["differ"], st["failed"]))
            if a.why and reasons:
                for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]:
                    print(f"skipped {name} {dt}: {n} x {r}")
            if compared == 0:
                top = max(reasons, key=reasons.get) if reasons else "no model generated"
                problems.append(f"{name} {dt}: no model compared (the reference refused {st['skip']}; e.g. {top})")
    shutil.rmtree(work, ignore_errors=True)

    print(f"{'op':<30} {'type':<8} {'generated':>9} {'skipped':>8} {'compared':>8} {'differ':>6} {'failed':>6}")
    for r in rows:
        print(f"{r[0]:<30} {r[1]:<8} {r[2]:>9} {r[3]:>8} {r[4]:>8} {r[5]:>6} {r[6]:>6}")
    tot = [sum(r[i] for r in rows) for i in range(2, 7)]
    print(f"{'total':<39} {tot[0]:>9} {tot[1]:>8} {tot[2]:>8} {tot[3]:>6} {tot[4]:>6}")
    print(f"{len(rows)} op/type pairs over {len({r[0] for r in rows})} ops in {time.time() - start:.0f} s; "
          f"exempt: {', '.join(sorted(EXEMPT))}")
    shown = {}
    for key, d in diffs:
        shown[key] = shown.get(key, 0) + 1
        if shown[key] <= 3:
            print("DIFFERENCE", d)
        elif shown[key] == 4:
            print(f"DIFFERENCE {key[0]} {key[1]}: more, not shown")
    for p in problems:
        print("ERROR", p)
    return 1 if diffs or problems else 0


if __name__ == "__main__":
    sys.exit(main())
