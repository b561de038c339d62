"""Test data of the integer UNIDIRECTIONAL_SEQUENCE_LSTM kernel (runtime/src/cpu/ops/lstm.rs).

<variant>.tflite + .in.bin + .out.bin: generated one-op models. (The keras model of the shared test
data is checked end to end by the golden tests, reading everything from ../shared.)

Run: python3 generate.py (needs ai-edge-litert 2.3.0, tflite, flatbuffers, numpy).

Generates small UNIDIRECTIONAL_SEQUENCE_LSTM int8 models covering the integer-LSTM variants,
runs them with TFLite's reference kernels, and stores model, input and output bytes."""
import numpy as np, flatbuffers, tflite, os
import importlib
M, S, T, O, OC, B = [importlib.import_module("tflite." + n) for n in ["Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "Buffer"]]
Q, U = [importlib.import_module("tflite." + n) for n in ["QuantizationParameters", "UnidirectionalSequenceLSTMOptions"]]
from ai_edge_litert.interpreter import Interpreter, OpResolverType

OUT = os.path.dirname(os.path.abspath(__file__)) + '/'
SHARED = os.environ.get('EDGETPU_TESTDATA', os.path.join(OUT, '../../../../../shared/testdata'))
INT8, INT16, INT32, FLOAT32 = 9, 7, 2, 0

def vec_i32(b, start, vals):
    start(b, len(vals))
    for v in reversed(vals): b.PrependInt32(v)
    return b.EndVector()

def build(tensors, inputs, outputs, intermediates, opts):
    b = flatbuffers.Builder(4096)
    # buffers: 0 empty, then one per tensor with data
    buf_objs = []
    B.Start(b); buf_objs.append(B.End(b))
    tensor_buf = []
    for t in tensors:
        if t.get('data') is not None:
            raw = t['data'].tobytes()
            b.StartVector(1, len(raw), 16)
            for x in reversed(raw): b.PrependByte(x)
            dv = b.EndVector()
            B.Start(b); B.AddData(b, dv); buf_objs.append(B.End(b)); tensor_buf.append(len(buf_objs) - 1)
        else:
            tensor_buf.append(0)
    tens = []
    for t, bi in zip(tensors, tensor_buf):
        name = b.CreateString(t['name'])
        shape = vec_i32(b, T.StartShapeVector, list(t['shape']))
        q = None
        if t.get('q') is not None:
            sc, zp = t['q']
            Q.StartScaleVector(b, len(sc))
            for s in reversed(sc): b.PrependFloat32(s)
            scv = b.EndVector()
            Q.StartZeroPointVector(b, len(zp))
            for z in reversed(zp): b.PrependInt64(z)
            zpv = b.EndVector()
            Q.Start(b); Q.AddScale(b, scv); Q.AddZeroPoint(b, zpv); q = Q.End(b)
        T.Start(b); T.AddShape(b, shape); T.AddType(b, t['type']); T.AddBuffer(b, bi); T.AddName(b, name)
        if q is not None: T.AddQuantization(b, q)
        if t.get('var'): T.AddIsVariable(b, True)
        tens.append(T.End(b))
    U.Start(b)
    U.AddFusedActivationFunction(b, 4)
    U.AddCellClip(b, opts.get('cell_clip', 0.0)); U.AddProjClip(b, opts.get('proj_clip', 0.0))
    U.AddTimeMajor(b, opts.get('time_major', False))
    uo = U.End(b)
    ins = vec_i32(b, O.StartInputsVector, inputs)
    outs = vec_i32(b, O.StartOutputsVector, outputs)
    inter = vec_i32(b, O.StartIntermediatesVector, intermediates)
    O.Start(b); O.AddOpcodeIndex(b, 0); O.AddInputs(b, ins); O.AddOutputs(b, outs)
    O.AddBuiltinOptionsType(b, tflite.BuiltinOptions.UnidirectionalSequenceLSTMOptions)
    O.AddBuiltinOptions(b, uo); O.AddIntermediates(b, inter)
    op = O.End(b)
    S.StartTensorsVector(b, len(tens))
    for t in reversed(tens): b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    S.StartOperatorsVector(b, 1); b.PrependUOffsetTRelative(op); ov = b.EndVector()
    si = vec_i32(b, S.StartInputsVector, [inputs[0]])
    so = vec_i32(b, S.StartOutputsVector, outputs)
    S.Start(b); S.AddTensors(b, tv); S.AddInputs(b, si); S.AddOutputs(b, so); S.AddOperators(b, ov)
    sg = S.End(b)
    OC.Start(b); OC.AddDeprecatedBuiltinCode(b, 44); OC.AddBuiltinCode(b, 44); OC.AddVersion(b, 1); oc = OC.End(b)
    M.StartOperatorCodesVector(b, 1); b.PrependUOffsetTRelative(oc); ocv = M.EndVector(b) if hasattr(M,'EndVector') else b.EndVector()
    M.StartSubgraphsVector(b, 1); b.PrependUOffsetTRelative(sg); sgv = b.EndVector()
    M.StartBuffersVector(b, len(buf_objs))
    for x in reversed(buf_objs): b.PrependUOffsetTRelative(x)
    bv = b.EndVector()
    desc = b.CreateString('generated integer LSTM test model')
    M.Start(b); M.AddVersion(b, 3); M.AddOperatorCodes(b, ocv); M.AddSubgraphs(b, sgv)
    M.AddBuffers(b, bv); M.AddDescription(b, desc)
    b.Finish(M.End(b), file_identifier=b'TFL3')
    return bytes(b.Output())

def make(name, seed, n_batch, n_time, n_input, n_cell, n_output, cifg=False, peephole=False,
         projection=False, proj_bias=False, layer_norm=False, time_major=False, cell_clip=0.0,
         proj_clip=0.0, cell_log2=-11, steps=1):
    rng = np.random.default_rng(seed)
    tensors = []
    def add(name, shape, type, data=None, q=None, var=False):
        tensors.append(dict(name=name, shape=shape, type=type, data=data, q=q, var=var))
        return len(tensors) - 1
    in_scale, in_zp = 0.02, 3
    os_scale, os_zp = 1 / 128, -2
    hid_scale, hid_zp = (os_scale, os_zp) if not projection else (1 / 100, -1)
    shape_in = [n_time, n_batch, n_input] if time_major else [n_batch, n_time, n_input]
    inputs = [add('input', shape_in, INT8, q=([in_scale], [in_zp]))]
    def w(nm, rows, cols, scale):
        return add(nm, [rows, cols], INT8, rng.integers(-127, 128, (rows, cols), dtype=np.int8), ([scale], [0]))
    gates = ['input', 'forget', 'cell', 'output']
    wsc = {g: 0.01 + 0.01 * i for i, g in enumerate(gates)}
    for g in gates:
        inputs.append(-1 if (cifg and g == 'input') else w(f'i2{g}', n_cell, n_input, wsc[g]))
    for g in gates:
        inputs.append(-1 if (cifg and g == 'input') else w(f'r2{g}', n_cell, n_output, wsc[g] * 1.5))
    for g in ['input', 'forget', 'output']:
        if peephole and not (cifg and g == 'input'):
            inputs.append(add(f'c2{g}', [n_cell], INT16, rng.integers(-3000, 3000, n_cell, dtype=np.int16), ([1e-4], [0])))
        else:
            inputs.append(-1)
    for g in gates:
        if cifg and g == 'input':
            inputs.append(-1)
        else:
            bs = in_scale * wsc[g] if not layer_norm else 1 / 1024 * 2 ** -10
            inputs.append(add(f'{g}_bias', [n_cell], INT32, rng.integers(-3000, 3000, n_cell, dtype=np.int32), ([bs], [0])))
    if projection:
        inputs.append(w('proj', n_output, n_cell, 0.015))
        inputs.append(add('proj_bias', [n_output], INT32, rng.integers(-500, 500, n_output, dtype=np.int32), ([hid_scale * 0.015], [0])) if proj_bias else -1)
    else:
        inputs += [-1, -1]
    inputs.append(add('output_state', [n_batch, n_output], INT8, q=([os_scale], [os_zp]), var=True))
    inputs.append(add('cell_state', [n_batch, n_cell], INT16, q=([2.0 ** cell_log2], [0]), var=True))
    for g in gates:
        if layer_norm and not (cifg and g == 'input'):
            inputs.append(add(f'{g}_ln', [n_cell], INT16, rng.integers(600, 1500, n_cell, dtype=np.int16), ([1 / 1024], [0])))
        else:
            inputs.append(-1)
    out_shape = [n_time, n_batch, n_output] if time_major else [n_batch, n_time, n_output]
    outputs = [add('output', out_shape, INT8, q=([os_scale], [os_zp]))]
    inter = []
    for i, g in enumerate(gates):
        if layer_norm:
            inter.append(add(f'{g}_intermediate', [0], INT16, q=([0.0007 + 0.0002 * i], [0])))
        else:
            inter.append(add(f'{g}_intermediate', [0], FLOAT32))
    inter.append(add('hidden_intermediate', [0], INT8, q=([hid_scale], [hid_zp])))
    model = build(tensors, inputs, outputs, inter, dict(cell_clip=cell_clip, proj_clip=proj_clip, time_major=time_major))
    open(OUT + name + '.tflite', 'wb').write(model)
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
    it.allocate_tensors()
    x = rng.integers(-128, 128, shape_in, dtype=np.int8)
    it.set_tensor(it.get_input_details()[0]['index'], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]['index'])
    x.tofile(OUT + name + '.in.bin'); y.tofile(OUT + name + '.out.bin')
    print(name, len(model), 'bytes; output std', y.astype(float).std(), 'min', y.min(), 'max', y.max())

make('basic', 1, 2, 5, 6, 8, 8, cell_clip=3.0)
make('time_major', 2, 3, 4, 6, 8, 8, time_major=True)
make('cifg_peephole_projection', 3, 3, 4, 6, 8, 5, cifg=True, peephole=True, projection=True, proj_bias=True, proj_clip=0.5, cell_clip=2.0)
make('layer_norm_peephole_projection', 4, 2, 5, 7, 8, 6, peephole=True, projection=True, layer_norm=True, time_major=True, cell_log2=-12)
make('layer_norm_cifg', 5, 2, 4, 5, 16, 16, cifg=True, layer_norm=True, cell_log2=-10)
make('projection_wide', 6, 1, 6, 4, 6, 9, projection=True, cell_log2=-14)

