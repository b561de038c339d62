#!/usr/bin/env python3
"""Make the one-op golden cases of runtime/tests/ops.rs.

Every case is a tiny .tflite model (one operator, sometimes with constant inputs) assembled with the TFLite schema's
generated object API (ai_edge_litert.schema_py_generated + the `flatbuffers` package), run by TFLite's reference
kernels (ai_edge_litert Interpreter, OpResolverType.BUILTIN_REF, 1 thread) on seeded random inputs. Written per case:

    <case>/model.tflite      the model
    <case>/in<i>.bin         raw bytes of subgraph input i (row-major, little-endian, the tensor's dtype)
    <case>/out<j>.bin        raw bytes of subgraph output j, as the reference kernels computed them

usage: make_op_goldens.py [--out DIR] [--only SUBSTRING]     (DIR defaults to this script's directory)
Re-running rewrites every case; the output is deterministic for a given ai-edge-litert version.
"""
import argparse
import os
import shutil
import sys
import zlib

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb
from ai_edge_litert.interpreter import Interpreter, OpResolverType

TT = fb.TensorType
OP = fb.BuiltinOperator
OPT = fb.BuiltinOptions
NP = {TT.FLOAT32: np.float32, TT.UINT8: np.uint8, TT.INT8: np.int8, TT.INT16: np.int16, TT.INT32: np.int32,
      TT.INT64: np.int64, TT.BOOL: np.bool_}
U8, I8, I16, F32, I32, I64, BOOL = TT.UINT8, TT.INT8, TT.INT16, TT.FLOAT32, TT.INT32, TT.INT64, TT.BOOL


class Graph:
    """One subgraph under construction."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors, self.buffers, self.ops, self.codes = [], [fb.BufferT()], [], []
        self.inputs, self.outputs, self.feeds = [], [], []

    def tensor(self, name, shape, dtype, q=None, data=None):
        """q: (scale, zero_point) or (scales, zero_points, axis)."""
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), dtype, 0
        if q is not None:
            qp = fb.QuantizationParametersT()
            qp.scale = [float(s) for s in np.atleast_1d(q[0])]
            qp.zeroPoint = [int(z) for z in np.atleast_1d(q[1])]
            qp.quantizedDimension = q[2] if len(q) > 2 else 0
            t.quantization = qp
        if data is not None:
            arr = np.asarray(data, dtype=NP[dtype])
            assert arr.size == int(np.prod(shape)), (name, arr.shape, shape)
            buf = fb.BufferT()
            buf.data = arr.tobytes()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name, values, dtype=I32, shape=None, q=None):
        arr = np.asarray(values, dtype=NP[dtype])
        return self.tensor(name, arr.shape if shape is None else shape, dtype, q, arr)

    def input(self, name, shape, dtype, q=None, data=None):
        """A graph input fed with `data`, or seeded random values covering the dtype's range."""
        t = self.tensor(name, shape, dtype, q)
        if data is None:
            if dtype == F32:
                data = self.rng.uniform(-4, 4, size=shape)
            elif dtype == BOOL:
                data = self.rng.integers(0, 1, size=shape, endpoint=True)
            else:
                info = np.iinfo(NP[dtype])
                data = self.rng.integers(info.min, info.max, size=shape, endpoint=True)
        self.inputs.append(t)
        self.feeds.append(np.asarray(data, dtype=NP[dtype]).reshape(shape))
        return t

    def output(self, name, shape, dtype, q=None):
        t = self.tensor(name, shape, dtype, q)
        self.outputs.append(t)
        return t

    def op(self, code, inputs, outputs, opt_type=None, opt=None, version=1):
        oc = next((i for i, c in enumerate(self.codes) if c.builtinCode == code and c.version == version), None)
        if oc is None:
            c = fb.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
            self.codes.append(c)
            oc = len(self.codes) - 1
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = oc, list(inputs), list(outputs)
        if opt_type is not None:
            o.builtinOptionsType, o.builtinOptions = opt_type, opt
        self.ops.append(o)

    def model(self):
        sg = fb.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = self.tensors, self.inputs, self.outputs, self.ops, b"main"
        m = fb.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, self.codes, [sg], self.buffers
        m.description = b"runtime/tests/data/ops/make_op_goldens.py"
        fb.BufferStartDataVector = lambda b, n: b.StartVector(1, n, 16)  # constant data 16-byte aligned
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def options(cls, **fields):
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def run(model, g):
    resolver = getattr(g, "resolver", OpResolverType.BUILTIN_REF)
    it = Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    for t, feed in zip(g.inputs, g.feeds):
        it.set_tensor(t, feed)
    it.invoke()
    outs = []
    for t in g.outputs:
        out = it.get_tensor(t)
        declared = tuple(g.tensors[t].shape)
        assert out.shape == declared, f"output {t}: the reference computed shape {out.shape}, the model says {declared}"
        outs.append(np.ascontiguousarray(out))
    return outs


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def qrange(dtype):
    return (0, 255) if dtype == U8 else (-128, 127)


# ---------------------------------------------------------------- elementwise activations


def all_values(g, dtype, shape):
    """Every 8-bit value once (shuffled), then random ones: exhaustive for table-driven kernels."""
    lo, hi = qrange(dtype)
    n = int(np.prod(shape))
    assert n >= 256, shape
    return np.concatenate([g.rng.permutation(np.arange(lo, hi + 1)), g.rng.integers(lo, hi, n - 256, endpoint=True)])


def unary(g, code, dtype, shape, qin, qout, opt_type=None, opt=None):
    data = all_values(g, dtype, shape) if dtype != F32 else None
    x = g.input("x", shape, dtype, qin if dtype != F32 else None, data)
    y = g.output("y", shape, dtype, qout if dtype != F32 else None)
    g.op(code, [x], [y], opt_type, opt)


@case
def hard_swish_u8(g):
    unary(g, OP.HARD_SWISH, U8, [1, 8, 8, 4], (0.04, 120), (0.025, 30), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_i8(g):
    unary(g, OP.HARD_SWISH, I8, [2, 4, 33], (0.05, -10), (0.03, -100), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_i8_wide(g):
    # A large input scale: the "reluish" multiplier needs a left shift.
    unary(g, OP.HARD_SWISH, I8, [4, 65], (0.3, 7), (0.2, -60), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_u8_narrow(g):
    unary(g, OP.HARD_SWISH, U8, [7, 40], (0.004, 200), (0.003, 180), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_i8_tiny_scale(g):
    # A tiny input scale: the "reluish" multiplier shifts right by several bits.
    unary(g, OP.HARD_SWISH, I8, [2, 130], (0.0005, -3), (0.0002, -128), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_u8_huge_scale(g):
    unary(g, OP.HARD_SWISH, U8, [2, 130], (2.0, 100), (1.5, 20), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def hard_swish_i8_equal_scales(g):
    unary(g, OP.HARD_SWISH, I8, [2, 130], (0.05, 0), (0.05, 0), OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def tanh_u8_odd_scales(g):
    unary(g, OP.TANH, U8, [260], (0.011, 77), (0.009, 140))


@case
def leaky_relu_u8_alpha_small(g):
    unary(g, OP.LEAKY_RELU, U8, [3, 90], (0.3, 200), (0.01, 30), OPT.LeakyReluOptions,
          options(fb.LeakyReluOptionsT, alpha=0.01))


@case
def hard_swish_f32(g):
    unary(g, OP.HARD_SWISH, F32, [3, 17], None, None, OPT.HardSwishOptions, fb.HardSwishOptionsT())


@case
def tanh_u8(g):
    unary(g, OP.TANH, U8, [2, 19, 7], (0.03, 128), (1 / 128, 128))


@case
def tanh_i8(g):
    unary(g, OP.TANH, I8, [1, 4, 4, 16], (0.05, 5), (1 / 128, 0))


@case
def tanh_f32(g):
    unary(g, OP.TANH, F32, [5, 13], None, None)


@case
def leaky_relu_u8(g):
    unary(g, OP.LEAKY_RELU, U8, [1, 6, 11, 4], (0.05, 100), (0.04, 80), OPT.LeakyReluOptions,
          options(fb.LeakyReluOptionsT, alpha=0.2))


@case
def leaky_relu_i8(g):
    unary(g, OP.LEAKY_RELU, I8, [7, 37], (0.02, -3), (0.03, -40), OPT.LeakyReluOptions,
          options(fb.LeakyReluOptionsT, alpha=0.3))


@case
def leaky_relu_i8_alpha_gt1(g):
    unary(g, OP.LEAKY_RELU, I8, [6, 50], (0.02, 10), (0.05, 60), OPT.LeakyReluOptions,
          options(fb.LeakyReluOptionsT, alpha=1.7))


@case
def leaky_relu_f32(g):
    unary(g, OP.LEAKY_RELU, F32, [4, 9], None, None, OPT.LeakyReluOptions, options(fb.LeakyReluOptionsT, alpha=0.1))


@case
def leaky_relu_f32_alpha_gt1(g):
    unary(g, OP.LEAKY_RELU, F32, [4, 9], None, None, OPT.LeakyReluOptions, options(fb.LeakyReluOptionsT, alpha=1.7))


@case
def leaky_relu_f32_alpha_negative(g):
    unary(g, OP.LEAKY_RELU, F32, [4, 9], None, None, OPT.LeakyReluOptions, options(fb.LeakyReluOptionsT, alpha=-0.5))


@case
def l2_norm_u8(g):
    shape = [2, 3, 10]
    data = g.rng.integers(0, 255, size=shape, endpoint=True)
    data[1, 2, :] = 131  # zero point: a zero vector
    data[0, 1, :] = 130  # nearly zero: sum of squares 10
    x = g.input("x", shape, U8, (0.05, 131), data)
    y = g.output("y", shape, U8, (1 / 128, 128))
    g.op(OP.L2_NORMALIZATION, [x], [y], OPT.L2NormOptions, fb.L2NormOptionsT())


@case
def l2_norm_i8(g):
    shape = [5, 17]
    data = g.rng.integers(-128, 127, size=shape, endpoint=True)
    data[3, :] = -7
    data[4, 0] = 127  # one big element
    data[4, 1:] = -7
    x = g.input("x", shape, I8, (0.1, -7), data)
    y = g.output("y", shape, I8, (1 / 128, 0))
    g.op(OP.L2_NORMALIZATION, [x], [y], OPT.L2NormOptions, fb.L2NormOptionsT())


@case
def l2_norm_u8_deep(g):
    # Sums of squares above 2^29: the inverse square root divides its input by 4 first.
    shape = [2, 9000]
    data = np.where(g.rng.random(shape) < 0.05, 0, 255)
    data[1, :] = 255
    assert (data.astype(np.int64) ** 2).sum(axis=1).min() >= 1 << 29
    x = g.input("x", shape, U8, (0.05, 0), data)
    y = g.output("y", shape, U8, (1 / 128, 128))
    g.op(OP.L2_NORMALIZATION, [x], [y], OPT.L2NormOptions, fb.L2NormOptionsT())


@case
def l2_norm_f32(g):
    x = g.input("x", [3, 8], F32)
    y = g.output("y", [3, 8], F32)
    g.op(OP.L2_NORMALIZATION, [x], [y], OPT.L2NormOptions, fb.L2NormOptionsT())


def prelu(g, dtype, shape, alpha_shape, qin, qalpha, qout):
    x = g.input("x", shape, dtype, qin)
    if dtype == F32:
        alpha = g.rng.uniform(-1, 1, size=alpha_shape)
    else:
        lo, hi = qrange(dtype)
        alpha = g.rng.integers(lo, hi, size=alpha_shape, endpoint=True)
    a = g.const("alpha", alpha, dtype, alpha_shape, qalpha)
    y = g.output("y", shape, dtype, qout)
    g.op(OP.PRELU, [x, a], [y])


@case
def prelu_u8_channel(g):
    prelu(g, U8, [1, 4, 5, 3], [1, 1, 3], (0.05, 120), (0.01, 50), (0.04, 100))


@case
def prelu_i8_channel(g):
    prelu(g, I8, [2, 3, 3, 7], [1, 1, 1, 7], (0.03, -20), (0.004, 10), (0.02, 5))


@case
def prelu_i8_same_shape(g):
    prelu(g, I8, [2, 3, 4], [2, 3, 4], (0.03, 3), (0.01, -100), (0.05, -20))


@case
def prelu_u8_broadcast_hw(g):
    prelu(g, U8, [2, 3, 4, 2], [3, 1, 2], (0.02, 128), (0.01, 128), (0.02, 90))


@case
def prelu_f32(g):
    prelu(g, F32, [2, 5, 3], [3], None, None, None)


def max_min(g, code, dtype, s1, s2, sout, q=None, const2=False):
    a = g.input("a", s1, dtype, q)
    if const2:
        if dtype == F32:
            v = g.rng.uniform(-2, 2, size=s2)
        else:
            lo, hi = qrange(dtype) if dtype in (U8, I8) else (-1000, 1000)
            v = g.rng.integers(lo, hi, size=s2, endpoint=True)
        b = g.const("b", v, dtype, s2, q)
    else:
        b = g.input("b", s2, dtype, q)
    y = g.output("y", sout, dtype, q)
    g.op(code, [a, b], [y], OPT.MaximumMinimumOptions, fb.MaximumMinimumOptionsT())


@case
def maximum_u8_broadcast(g):
    max_min(g, OP.MAXIMUM, U8, [2, 1, 4, 3], [1, 5, 1, 3], [2, 5, 4, 3], (0.1, 128))


@case
def minimum_u8_broadcast(g):
    max_min(g, OP.MINIMUM, U8, [3, 1, 5], [4, 1], [3, 4, 5], (0.1, 128))


@case
def maximum_i8_same(g):
    max_min(g, OP.MAXIMUM, I8, [3, 7], [3, 7], [3, 7], (0.05, -4))


@case
def minimum_i8_scalar_const(g):
    max_min(g, OP.MINIMUM, I8, [2, 3, 4, 5], [], [2, 3, 4, 5], (0.05, -4), const2=True)


@case
def maximum_i8_5d(g):
    max_min(g, OP.MAXIMUM, I8, [2, 1, 3, 1, 2], [1, 2, 1, 4, 1], [2, 2, 3, 4, 2], (0.05, 0))


@case
def maximum_f32_const(g):
    max_min(g, OP.MAXIMUM, F32, [4, 6], [6], [4, 6], const2=True)


@case
def minimum_i32(g):
    max_min(g, OP.MINIMUM, I32, [3, 4], [3, 1], [3, 4])


# ---------------------------------------------------------------- shape ops (byte moves)


def strided_slice(g, dtype, shape, begin, end, strides, out_shape, q=(0.1, 3), **masks):
    x = g.input("x", shape, dtype, q if dtype in (U8, I8) else None)
    b, e, s = g.const("begin", begin), g.const("end", end), g.const("strides", strides)
    y = g.output("y", out_shape, dtype, q if dtype in (U8, I8) else None)
    g.op(OP.STRIDED_SLICE, [x, b, e, s], [y], OPT.StridedSliceOptions, options(fb.StridedSliceOptionsT, **masks))


@case
def strided_slice_u8_basic(g):
    strided_slice(g, U8, [2, 5, 6, 3], [0, 1, -1, 0], [2, 5, 0, 3], [1, 2, -2, 1], [2, 2, 3, 3])


@case
def strided_slice_i8_masks(g):
    # begin_mask on axes 0 and 2, end_mask on axes 1 and 3, shrink axis 0; a negative stride on axis 3.
    strided_slice(g, I8, [3, 4, 5, 6], [1, 1, 3, 4], [2, 3, 5, 0], [1, 1, 2, -2], [3, 3, 3],
                  beginMask=0b0101, endMask=0b1010, shrinkAxisMask=0b0001)


@case
def strided_slice_f32_ellipsis(g):
    # x[..., 1:4, ::-1] on a 4-D input.
    strided_slice(g, F32, [2, 3, 5, 4], [0, 1, -1], [0, 4, 0], [1, 1, -1], [2, 3, 3, 4],
                  ellipsisMask=0b001, endMask=0b100, beginMask=0b100)


@case
def strided_slice_u8_new_axis(g):
    # x[tf.newaxis, :, 1:5:2, :] on a 3-D input.
    strided_slice(g, U8, [4, 6, 5], [0, 0, 1, 0], [0, 4, 5, 5], [1, 1, 2, 1], [1, 4, 2, 5], newAxisMask=0b0001)


@case
def strided_slice_i8_shrink(g):
    strided_slice(g, I8, [5, 7], [1, -2], [4, 0], [1, 1], [3], shrinkAxisMask=0b10)


@case
def strided_slice_i8_5d(g):
    strided_slice(g, I8, [2, 3, 4, 3, 5], [1, 0, -1, 0, 4], [2, 3, 0, 3, 0], [1, 2, -1, 1, -2], [1, 2, 3, 3, 2])


@case
def strided_slice_u8_clamped(g):
    # Out-of-range begin/end are clamped; a reversed range with a positive stride is empty on no axis here.
    strided_slice(g, U8, [6, 7], [-100, 2], [100, 100], [2, 3], [3, 2])


@case
def strided_slice_i32_reverse_all(g):
    strided_slice(g, I32, [4, 3], [0, 0], [0, 0], [-1, -1], [4, 3], beginMask=0b11, endMask=0b11)


@case
def strided_slice_u8_offset(g):
    # offset=True: end holds sizes relative to begin.
    strided_slice(g, U8, [5, 6, 4], [1, 2, 0], [3, 3, 4], [1, 1, 2], [3, 3, 2], offset=True)


@case
def strided_slice_u8_partial_spec(g):
    # Fewer begin/end values than dimensions: the rest are taken whole.
    strided_slice(g, U8, [3, 4, 5, 2], [1, -1], [3, 0], [1, -2], [2, 2, 5, 2])


@case
def strided_slice_i8_ellipsis_new_axis(g):
    # x[tf.newaxis, ..., ::-2] on a 3-D input.
    strided_slice(g, I8, [3, 4, 5], [0, 0, -1], [0, 0, 0], [1, 1, -2], [1, 3, 4, 3],
                  newAxisMask=0b001, ellipsisMask=0b010, endMask=0b100)


@case
def strided_slice_f32_shrink_negative(g):
    strided_slice(g, F32, [4, 6, 3], [-1, 5, -2], [0, 0, 0], [1, -2, 1], [3],
                  shrinkAxisMask=0b101)


def slice_op(g, dtype, shape, begin, size, out_shape, idx=I32):
    q = (0.2, -5) if dtype == I8 else (0.2, 17) if dtype == U8 else None
    x = g.input("x", shape, dtype, q)
    b, s = g.const("begin", begin, idx), g.const("size", size, idx)
    y = g.output("y", out_shape, dtype, q)
    g.op(OP.SLICE, [x, b, s], [y], OPT.SliceOptions, fb.SliceOptionsT())


@case
def slice_u8_4d(g):
    slice_op(g, U8, [3, 4, 5, 2], [1, 0, 2, 0], [2, -1, 3, 2], [2, 4, 3, 2])


@case
def slice_i8_3d(g):
    slice_op(g, I8, [4, 7, 3], [2, 3, 1], [1, 4, -1], [1, 4, 2])


@case
def slice_f32_5d_i64(g):
    slice_op(g, F32, [2, 3, 2, 4, 3], [1, 1, 0, 1, 0], [1, 2, 2, -1, 2], [1, 2, 2, 3, 2], idx=I64)


def transpose(g, dtype, shape, perm):
    q = (0.2, -5) if dtype == I8 else (0.2, 17) if dtype == U8 else None
    x = g.input("x", shape, dtype, q)
    p = g.const("perm", perm)
    y = g.output("y", [shape[i] for i in perm], dtype, q)
    g.op(OP.TRANSPOSE, [x, p], [y], OPT.TransposeOptions, fb.TransposeOptionsT())


@case
def transpose_u8_nchw(g):
    transpose(g, U8, [2, 3, 5, 4], [0, 3, 1, 2])


@case
def transpose_i8_3d(g):
    transpose(g, I8, [3, 5, 7], [2, 0, 1])


@case
def transpose_f32_5d(g):
    transpose(g, F32, [2, 3, 2, 4, 3], [4, 2, 0, 3, 1])


@case
def transpose_i8_6d(g):
    transpose(g, I8, [2, 1, 3, 2, 2, 3], [5, 0, 3, 1, 4, 2])


@case
def transpose_u8_2d(g):
    transpose(g, U8, [13, 9], [1, 0])


def batch_to_space(g, dtype, shape, block, crops, out_shape):
    q = (0.1, -9) if dtype == I8 else (0.1, 140) if dtype == U8 else None
    x = g.input("x", shape, dtype, q)
    b, c = g.const("block", block), g.const("crops", crops)
    y = g.output("y", out_shape, dtype, q)
    g.op(OP.BATCH_TO_SPACE_ND, [x, b, c], [y], OPT.BatchToSpaceNDOptions, fb.BatchToSpaceNDOptionsT())


@case
def batch_to_space_u8_crops(g):
    batch_to_space(g, U8, [8, 2, 3, 2], [2, 2], [[0, 1], [1, 0]], [2, 3, 5, 2])


@case
def batch_to_space_i8_3d(g):
    batch_to_space(g, I8, [6, 4, 3], [3], [[1, 2]], [2, 9, 3])


@case
def batch_to_space_f32(g):
    batch_to_space(g, F32, [4, 2, 2, 3], [2, 2], [[0, 0], [0, 0]], [1, 4, 4, 3])


def space_to_batch(g, dtype, shape, block, pads, out_shape, zp):
    q = (0.1, zp) if dtype in (U8, I8) else None
    x = g.input("x", shape, dtype, q)
    b, p = g.const("block", block), g.const("paddings", pads)
    y = g.output("y", out_shape, dtype, q)
    g.op(OP.SPACE_TO_BATCH_ND, [x, b, p], [y], OPT.SpaceToBatchNDOptions, fb.SpaceToBatchNDOptionsT())


@case
def space_to_batch_u8_pad(g):
    space_to_batch(g, U8, [2, 5, 3, 2], [2, 3], [[1, 0], [0, 3]], [12, 3, 2, 2], 77)


@case
def space_to_batch_i8_3d(g):
    space_to_batch(g, I8, [2, 5, 3], [2], [[1, 2]], [4, 4, 3], -33)


@case
def space_to_batch_f32(g):
    space_to_batch(g, F32, [1, 4, 4, 2], [2, 2], [[0, 0], [2, 0]], [4, 2, 3, 2], 0)


def depth_space(g, code, dtype, shape, bs, out_shape):
    q = (0.1, -9) if dtype == I8 else (0.1, 140) if dtype == U8 else None
    x = g.input("x", shape, dtype, q)
    y = g.output("y", out_shape, dtype, q)
    if code == OP.SPACE_TO_DEPTH:
        g.op(code, [x], [y], OPT.SpaceToDepthOptions, options(fb.SpaceToDepthOptionsT, blockSize=bs))
    else:
        g.op(code, [x], [y], OPT.DepthToSpaceOptions, options(fb.DepthToSpaceOptionsT, blockSize=bs))


@case
def space_to_depth_u8(g):
    depth_space(g, OP.SPACE_TO_DEPTH, U8, [1, 6, 4, 3], 2, [1, 3, 2, 12])


@case
def space_to_depth_i8_bs3(g):
    depth_space(g, OP.SPACE_TO_DEPTH, I8, [2, 6, 9, 2], 3, [2, 2, 3, 18])


@case
def space_to_depth_f32(g):
    depth_space(g, OP.SPACE_TO_DEPTH, F32, [1, 4, 4, 1], 2, [1, 2, 2, 4])


@case
def depth_to_space_u8(g):
    depth_space(g, OP.DEPTH_TO_SPACE, U8, [1, 3, 2, 12], 2, [1, 6, 4, 3])


@case
def depth_to_space_i8_bs3(g):
    depth_space(g, OP.DEPTH_TO_SPACE, I8, [2, 2, 3, 18], 3, [2, 6, 9, 2])


@case
def depth_to_space_f32(g):
    depth_space(g, OP.DEPTH_TO_SPACE, F32, [1, 2, 2, 8], 2, [1, 4, 4, 2])


# ---------------------------------------------------------------- TRANSPOSE_CONV


def transpose_conv(g, dtype, in_shape, w_shape, out_shape, stride, padding, bias, per_channel=False, omit_bias=False,
                   act=fb.ActivationFunctionType.NONE):
    """in [N,H,W,Cin], weights [Cout,KH,KW,Cin] (OHWI), output shape [N,OH,OW,Cout] given as constant input 0."""
    cout, kh, kw, cin = w_shape
    sh, sw = stride
    pad = fb.Padding.SAME if padding == "same" else fb.Padding.VALID
    shape_t = g.const("output_shape", out_shape)
    if dtype == F32:
        w = g.const("weights", g.rng.uniform(-1, 1, size=w_shape), F32)
        x = g.input("x", in_shape, F32)
        b = g.const("bias", g.rng.uniform(-1, 1, size=[cout]), F32) if bias else None
        y = g.output("y", out_shape, F32)
    else:
        lo, hi = qrange(dtype)
        in_s, in_zp = (0.02, 128) if dtype == U8 else (0.03, -5)
        if per_channel:
            w_s = g.rng.uniform(0.002, 0.02, size=cout)
            w_zp = np.zeros(cout, dtype=np.int64)
            wq = (w_s, w_zp, 0)
            wdata = g.rng.integers(-127, 127, size=w_shape, endpoint=True)
        else:
            w_s, w_zp = np.array([0.01]), np.array([120 if dtype == U8 else 0])
            wq = (w_s, w_zp)
            wdata = g.rng.integers(lo, hi, size=w_shape, endpoint=True)
        w = g.const("weights", wdata, dtype, w_shape, wq)
        x = g.input("x", in_shape, dtype, (in_s, in_zp))
        # Output scale: about 3 standard deviations of the accumulator over the output range.
        contrib = cin * -(-kh // sh) * -(-kw // sw)
        std_acc = np.sqrt(contrib) * 74.0 * 74.0  # uniform 8-bit values: standard deviation ~74
        out_s = float(in_s * np.mean(w_s) * std_acc * 3 / 128)
        out_zp = 100 if dtype == U8 else 7
        b = None
        if bias:
            b_s = in_s * w_s
            bq = (b_s, np.zeros(len(b_s), dtype=np.int64), 0)
            b = g.const("bias", g.rng.integers(-20000, 20000, size=[cout]), I32, [cout], bq)
        y = g.output("y", out_shape, dtype, (out_s, out_zp))
    ins = [shape_t, w, x]
    if b is not None:
        ins.append(b)
    elif omit_bias:
        ins.append(-1)
    g.op(OP.TRANSPOSE_CONV, ins, [y], OPT.TransposeConvOptions,
         options(fb.TransposeConvOptionsT, padding=pad, strideH=sh, strideW=sw, fusedActivationFunction=act),
         version=3 if bias else 1)


@case
def transpose_conv_u8_same_s2_bias(g):
    transpose_conv(g, U8, [1, 4, 5, 3], [4, 3, 3, 3], [1, 8, 10, 4], (2, 2), "same", bias=True)


@case
def transpose_conv_u8_valid_s2(g):
    transpose_conv(g, U8, [2, 3, 3, 2], [3, 3, 3, 2], [2, 7, 7, 3], (2, 2), "valid", bias=False)


@case
def transpose_conv_i8_same_s2_odd(g):
    transpose_conv(g, I8, [1, 5, 4, 6], [5, 3, 2, 6], [1, 9, 7, 5], (2, 2), "same", bias=True, per_channel=True)


@case
def transpose_conv_i8_valid_s1(g):
    transpose_conv(g, I8, [1, 4, 4, 3], [2, 3, 3, 3], [1, 6, 6, 2], (1, 1), "valid", bias=False, per_channel=True,
                   omit_bias=True)


@case
def transpose_conv_i8_same_s21(g):
    transpose_conv(g, I8, [2, 3, 4, 4], [3, 4, 3, 4], [2, 6, 4, 3], (2, 1), "same", bias=True, per_channel=True)


@case
def transpose_conv_i8_per_tensor(g):
    transpose_conv(g, I8, [1, 3, 3, 5], [4, 2, 2, 5], [1, 6, 6, 4], (2, 2), "same", bias=True)


@case
def transpose_conv_u8_relu6_s3(g):
    transpose_conv(g, U8, [1, 3, 3, 4], [3, 4, 4, 4], [1, 9, 8, 3], (3, 3), "same", bias=True,
                   act=fb.ActivationFunctionType.RELU6)


@case
def transpose_conv_i8_relu_big(g):
    transpose_conv(g, I8, [1, 8, 8, 16], [12, 3, 3, 16], [1, 16, 16, 12], (2, 2), "same", bias=True,
                   per_channel=True, act=fb.ActivationFunctionType.RELU)


@case
def transpose_conv_f32_same_s2(g):
    transpose_conv(g, F32, [1, 3, 4, 3], [2, 3, 3, 3], [1, 6, 8, 2], (2, 2), "same", bias=True)


# ---------------------------------------------------------------- TILE


def tile(g, dtype, shape, multiples, mtype=I32, runtime=False):
    """TILE of a random input; `runtime` makes the multiples a graph input (the output shape then stays in the
    file, where the runtime plans with it, while TFLite resizes the output on each run)."""
    q = (0.05, 3) if dtype in (U8, I8) else None
    x = g.input("x", shape, dtype, q)
    m = g.input("multiples", [len(multiples)], mtype, data=multiples) if runtime else g.const("multiples", multiples,
                                                                                                   mtype)
    y = g.output("y", [d * k for d, k in zip(shape, multiples)], dtype, q)
    g.op(OP.TILE, [x, m], [y], OPT.TileOptions, options(fb.TileOptionsT))


@case
def tile_u8_4d(g):
    tile(g, U8, [1, 2, 3, 2], [2, 1, 2, 3])


@case
def tile_i8_4d(g):
    tile(g, I8, [2, 3, 1, 4], [1, 2, 3, 1])


@case
def tile_f32_2d(g):
    tile(g, F32, [3, 4], [2, 3])


@case
def tile_i32_1d(g):
    tile(g, I32, [5], [3])


@case
def tile_i8_3d_i64_multiples(g):
    tile(g, I8, [2, 3, 4], [2, 1, 2], mtype=I64)


@case
def tile_i16_3d_ones(g):
    # Multiples of 1 on the outer and inner axes.
    tile(g, I16, [2, 3, 5], [1, 4, 1])


@case
def tile_i64_2d(g):
    tile(g, I64, [2, 3], [3, 2])


@case
def tile_bool_2d(g):
    tile(g, BOOL, [3, 2], [2, 4])


@case
def tile_u8_6d(g):
    tile(g, U8, [2, 1, 3, 1, 2, 2], [1, 3, 1, 2, 2, 1])


@case
def tile_f32_all_ones(g):
    tile(g, F32, [2, 3, 4], [1, 1, 1])


@case
def tile_u8_runtime_multiples(g):
    tile(g, U8, [2, 2, 3], [3, 1, 2], runtime=True)


@case
def tile_f32_runtime_i64_multiples(g):
    tile(g, F32, [1, 3, 2], [2, 2, 1], mtype=I64, runtime=True)


# ---------------------------------------------------------------- FULLY_CONNECTED


def fixed_point_requant(acc, real):
    """MultiplyByQuantizedMultiplier(acc, QuantizeMultiplier(real)): what CONV_2D does, rounding twice."""
    import math
    q, e = math.frexp(real)
    m = round(q * (1 << 31))
    if m == 1 << 31:
        m, e = m // 2, e + 1
    left, right = max(e, 0), max(-e, 0)
    ab = (int(acc) << left) * m
    v = (ab + (1 << 30)) >> 31 if ab >= 0 else -((-ab + (1 << 30) - 1) >> 31)  # nudge and truncate
    mask = (1 << right) - 1
    return (v >> right) + (1 if (v & mask) > (mask >> 1) + (1 if v < 0 else 0) else 0)


def fully_connected(g, dtype, batches, depth, units, per_channel, act=fb.ActivationFunctionType.NONE):
    """A FULLY_CONNECTED whose weights are drawn until some unclamped output rounds differently with the
    fixed-point requantization than with TFLite's reference (double precision, rounded once)."""
    lo, hi = qrange(dtype)
    in_s, in_zp = 0.02, (lo + hi + 1) // 2 - 3
    out_s, out_zp = 0.05, (lo + hi + 1) // 2 + 5
    out_lo = max(lo, out_zp) if act == fb.ActivationFunctionType.RELU else lo  # what the activation keeps
    if dtype == U8:
        w_zp = np.array([131])
    else:
        w_zp = np.zeros(units if per_channel else 1, dtype=np.int64)
    xdata = g.rng.integers(lo, hi, size=[batches, depth], endpoint=True)
    for _ in range(10000):
        w_s = g.rng.uniform(0.002, 0.02, size=units if per_channel else 1).astype(np.float32)
        wdata = g.rng.integers(lo if dtype == U8 else -127, hi, size=[units, depth], endpoint=True)
        bdata = g.rng.integers(-3000, 3000, size=[units], endpoint=True)
        acc = (wdata - w_zp.reshape(-1, 1)) @ (xdata - in_zp).T + bdata.reshape(-1, 1)  # [units, batches]
        ties = 0
        for u in range(units):
            real = float(np.float32(in_s)) * float(w_s[u if per_channel else 0]) / float(np.float32(out_s))
            for b in range(batches):
                a = int(acc[u, b])
                exact = a * real
                once = int(np.floor(abs(exact) + 0.5)) * (1 if exact >= 0 else -1)
                if fixed_point_requant(a, real) != once and out_lo <= once + out_zp <= hi:
                    ties += 1
        if ties:
            break
    else:
        raise RuntimeError("no double-rounding case found")
    x = g.input("x", [batches, depth], dtype, (in_s, in_zp), data=xdata)
    axis = 0
    w = g.const("weights", wdata, dtype, [units, depth], (w_s, w_zp, axis))
    b = g.const("bias", bdata, I32, [units], (in_s * w_s, np.zeros(len(w_s), dtype=np.int64), axis))
    y = g.output("y", [batches, units], dtype, (out_s, out_zp))
    g.op(OP.FULLY_CONNECTED, [x, w, b], [y], OPT.FullyConnectedOptions,
         options(fb.FullyConnectedOptionsT, fusedActivationFunction=act))


@case
def fully_connected_i8_per_channel_ties(g):
    fully_connected(g, I8, 4, 48, 12, per_channel=True)


@case
def fully_connected_i8_per_tensor_ties(g):
    fully_connected(g, I8, 3, 40, 10, per_channel=False, act=fb.ActivationFunctionType.RELU)


@case
def fully_connected_u8_ties(g):
    fully_connected(g, U8, 3, 40, 10, per_channel=False)


@case
def fully_connected_i8_per_channel_zero_points(g):
    """Per-channel weights with nonzero zero points, which TFLite's per-channel kernel ignores (symmetric by spec)."""
    units, depth = 5, 24
    x = g.input("x", [2, depth], I8, (0.02, -3))
    w_s = g.rng.uniform(0.002, 0.02, size=units).astype(np.float32)
    wdata = g.rng.integers(-127, 127, size=[units, depth], endpoint=True)
    w = g.const("weights", wdata, I8, [units, depth], (w_s, np.array([5, -7, 9, 0, 3]), 0))
    bq = (0.02 * w_s, np.zeros(units, dtype=np.int64), 0)
    b = g.const("bias", g.rng.integers(-3000, 3000, size=[units], endpoint=True), I32, [units], bq)
    y = g.output("y", [2, units], I8, (0.05, 4))
    g.op(OP.FULLY_CONNECTED, [x, w, b], [y], OPT.FullyConnectedOptions, options(fb.FullyConnectedOptionsT))


# ---------------------------------------------------------------- SUM and GATHER


def reduce_sum(g, dtype, shape, axes, keep, qin=None, qout=None):
    if dtype == I8:
        # TFLite's reference SUM reads and writes int8 tensors as uint8 (reduce.cc, kReference branch of
        # QuantizedMeanOrSum): int8 goldens come from its default kernel instead.
        g.resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    x = g.input("x", shape, dtype, qin)
    a = g.const("axes", axes)
    rank = len(shape)
    red = {a % rank for a in axes}
    out = [1 if d in red else n for d, n in enumerate(shape) if keep or d not in red]
    y = g.output("y", out, dtype, qout)
    g.op(OP.SUM, [x, a], [y], OPT.ReducerOptions, options(fb.ReducerOptionsT, keepDims=keep))


@case
def sum_u8_hw(g):
    # Spatial sum with a rescale that keeps most sums in range.
    reduce_sum(g, U8, [1, 3, 4, 5], [1, 2], True, (0.02, 120), (0.3, 10))


@case
def sum_i8_channels_neg_axis(g):
    reduce_sum(g, I8, [2, 3, 7], [-1], False, (0.05, -3), (0.2, 5))


@case
def sum_i8_saturating(g):
    # Same scale in and out: most sums clamp at the type's limits.
    reduce_sum(g, I8, [1, 4, 4, 3], [1, 2], False, (0.1, 0), (0.1, 0))


@case
def sum_u8_two_axes_apart(g):
    reduce_sum(g, U8, [2, 3, 4, 5], [0, 2], True, (0.01, 128), (0.05, 100))


@case
def sum_u8_300x300x3(g):
    # A camera frame's size reduced to one value per channel: also the CPU model of serve's latency benchmark,
    # where the model should cost little next to moving a 300x300x3 input.
    reduce_sum(g, U8, [1, 300, 300, 3], [1, 2], True, (0.02, 120), (200.0, 10))


@case
def sum_f32(g):
    reduce_sum(g, F32, [2, 5, 3], [1], False)


def gather(g, dtype, shape, indices, axis, batch_dims=0, itype=I32, runtime=False):
    q = (0.05, 3) if dtype in (U8, I8) else None
    x = g.input("params", shape, dtype, q)
    idx = np.asarray(indices)
    i = g.input("indices", list(idx.shape), itype, data=idx) if runtime else g.const("indices", idx, itype)
    ax = axis % len(shape)
    out = list(shape[:ax]) + list(idx.shape[batch_dims:]) + list(shape[ax + 1:])
    y = g.output("y", out, dtype, q)
    g.op(OP.GATHER, [x, i], [y], OPT.GatherOptions, options(fb.GatherOptionsT, axis=axis, batchDims=batch_dims))


@case
def gather_u8_axis0(g):
    gather(g, U8, [5, 3, 2], [4, 0, 2, 2], 0)


@case
def gather_i8_axis_last_2d_indices(g):
    gather(g, I8, [2, 3, 6], [[5, 0], [1, 1], [3, 2]], -1)


@case
def gather_f32_runtime_indices(g):
    gather(g, F32, [4, 5], [3, 1, 0], 1, runtime=True)


@case
def gather_i32_int64_indices(g):
    gather(g, I32, [6, 2], [5, 5, 0, 1], 0, itype=I64)


@case
def gather_u8_batch_dims(g):
    gather(g, U8, [2, 4, 3], [[3, 0], [1, 2]], 1, batch_dims=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    total = 0
    for name, fn in sorted(CASES.items()):
        if args.only not in name:
            continue
        g = Graph(seed=zlib.crc32(name.encode()))
        fn(g)
        model = g.model()
        outs = run(model, g)
        d = os.path.join(args.out, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        files = {"model.tflite": model}
        files.update({f"in{i}.bin": a.tobytes() for i, a in enumerate(g.feeds)})
        files.update({f"out{j}.bin": a.tobytes() for j, a in enumerate(outs)})
        for f, data in files.items():
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(data)
        size = sum(len(v) for v in files.values())
        total += size
        print(f"{name}: {size} bytes, outputs {[a.shape for a in outs]}")
    print(f"{total} bytes in all", file=sys.stderr)


if __name__ == "__main__":
    main()
