"""Every golden run of the test data through edgetpu.Interpreter gives the golden bytes, and the
same bytes and tensor details as ai_edge_litert's interpreter with the reference kernels."""

import numpy as np
import pytest
from conftest import golden_array, golden_runs, data_root

import edgetpu

RUNS = golden_runs()
IDS = [f"{model}/{tag}" for model, tag, _ in RUNS]

# Goldens of intermediate tensors: the posenet decoder op (PosenetDecoderOp) is not one of TFLite's,
# so its goldens were made with the op cut off and hold the decoder's inputs. This runtime runs the
# decoder too; `experimental_preserve_all_tensors` makes those intermediates readable.
INTERMEDIATE_GOLDENS = {"posenet_mobilenet_v1_075_353_481_16_quant_decoder"}


def run_ours(model, run, **kwargs):
    it = edgetpu.Interpreter(model_path=str(data_root() / run["model_path"]), **kwargs)
    it.allocate_tensors()
    for entry in run["inputs"]:
        it.set_tensor(entry["index"], golden_array(model, entry))
    it.invoke()
    return it


@pytest.mark.parametrize("model,tag,run", RUNS, ids=IDS)
def test_golden_bytes(model, tag, run):
    it = run_ours(model, run, experimental_preserve_all_tensors=model in INTERMEDIATE_GOLDENS)
    for entry in run["outputs"]:
        got = it.get_tensor(entry["index"])
        want = golden_array(model, entry)
        assert got.dtype == want.dtype and got.shape == want.shape, entry["name"]
        assert got.tobytes() == want.tobytes(), f"{model}/{tag}: output {entry['index']} ({entry['name']}) differs"


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)


def _same_details(ours, theirs, what):
    assert len(ours) == len(theirs), what
    for a, b in zip(ours, theirs):
        assert set(a) == set(b), (what, sorted(a), sorted(b))
        for key in ("name", "index", "dtype", "quantization", "sparsity_parameters"):
            assert a[key] == b[key], (what, a["name"], key, a[key], b[key])
            assert type(a[key]) is type(b[key]), (what, a["name"], key)
        for key in ("shape", "shape_signature"):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (what, a["name"], key)
        qa, qb = a["quantization_parameters"], b["quantization_parameters"]
        assert set(qa) == set(qb), what
        for key in ("scales", "zero_points"):
            assert qa[key].dtype == qb[key].dtype and np.array_equal(qa[key], qb[key]), (what, a["name"], key)
        assert qa["quantized_dimension"] == qb["quantized_dimension"], (what, a["name"])
        assert qa["block_size"] == qb["block_size"], (what, a["name"])


@pytest.mark.parametrize("model,tag,run", RUNS, ids=IDS)
def test_same_as_ai_edge_litert_reference_kernels(model, tag, run):
    path = str(data_root() / run["model_path"])
    ref = _litert(path)
    if model in INTERMEDIATE_GOLDENS:
        # The reference cannot run this model at all (the decoder is a custom op it lacks).
        with pytest.raises(RuntimeError, match="unresolved custom op: PosenetDecoderOp"):
            ref.allocate_tensors()
        return
    ref.allocate_tensors()
    ours = run_ours(model, run)
    _same_details(ours.get_input_details(), ref.get_input_details(), "inputs")
    _same_details(ours.get_output_details(), ref.get_output_details(), "outputs")
    for entry in run["inputs"]:
        ref.set_tensor(entry["index"], golden_array(model, entry))
    ref.invoke()
    got = [ours.get_tensor(d["index"]) for d in ref.get_output_details()]
    want = [ref.get_tensor(d["index"]) for d in ref.get_output_details()]
    if [d["name"] for d in ref.get_output_details()][:1] == ["TFLite_Detection_PostProcess"]:
        # The SSD post-processing op writes only the first `count` rows of boxes, classes and
        # scores; TFLite leaves the rest of its buffers as they were (stale arena bytes).
        count = int(want[3][0])
        assert got[3].tobytes() == want[3].tobytes(), "count"
        got = [g[:, :count] for g in got[:3]]
        want = [w[:, :count] for w in want[:3]]
    for g, w, d in zip(got, want, ref.get_output_details()):
        assert g.tobytes() == w.tobytes(), d["name"]
