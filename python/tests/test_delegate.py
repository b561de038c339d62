"""load_delegate: library names, device options, errors; compiled models on a simulated Edge TPU
give exactly what their CPU twins give on the CPU."""

import numpy as np
import pytest
from conftest import data_root

import edgetpu
import edgetpu.utils

ROOT = data_root()
COMPILED = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*_edgetpu.tflite"))
WITH_TWIN = [c for c in COMPILED if (ROOT / c.replace("_edgetpu.tflite", ".tflite")).is_file()]
# Compiled models of the test data with no CPU model beside them: the co-compiled pair and the
# segments of a pipelined SSD. The simulator computes their Edge TPU steps' outputs as seeded bytes.
WITHOUT_TWIN = [c for c in COMPILED if c not in WITH_TWIN]


def test_the_test_data_has_the_compiled_models():
    assert len(WITH_TWIN) >= 8, WITH_TWIN
    assert all(c.startswith(("cocompilation/", "pipeline/")) for c in WITHOUT_TWIN), WITHOUT_TWIN


def _inputs(it, seed):
    rng = np.random.default_rng(seed)
    out = []
    for d in it.get_input_details():
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        if info is not None:
            out.append(rng.integers(info.min, info.max, size=d["shape"], endpoint=True, dtype=d["dtype"]))
        else:
            out.append(rng.standard_normal(size=d["shape"]).astype(d["dtype"]))
    return out


@pytest.mark.parametrize("compiled", WITH_TWIN)
@pytest.mark.parametrize("device", ["sim", "sim:pci"])
def test_compiled_on_sim_equals_cpu_twin(compiled, device):
    twin = edgetpu.Interpreter(model_path=str(ROOT / compiled.replace("_edgetpu.tflite", ".tflite")))
    delegate = edgetpu.load_delegate("libedgetpu.so.1", {"device": device})
    it = edgetpu.Interpreter(model_path=str(ROOT / compiled), experimental_delegates=[delegate])
    it.allocate_tensors()
    twin.allocate_tensors()
    assert it.devices == [f"{device}:0"]
    assert [d["name"] for d in it.get_input_details()] == [d["name"] for d in twin.get_input_details()]
    assert [d["name"] for d in it.get_output_details()] == [d["name"] for d in twin.get_output_details()]
    for seed in range(2):
        for interp in (it, twin):
            for d, value in zip(interp.get_input_details(), _inputs(twin, seed)):
                interp.set_tensor(d["index"], value)
            interp.invoke()
        for a, b in zip(it.get_output_details(), twin.get_output_details()):
            got, want = it.get_tensor(a["index"]), twin.get_tensor(b["index"])
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), f"{compiled} on {device}: output {a['name']}"


@pytest.mark.parametrize("compiled", WITHOUT_TWIN)
def test_compiled_without_twin_runs_on_sim(compiled):
    delegate = edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim"})
    it = edgetpu.Interpreter(model_path=str(ROOT / compiled), experimental_delegates=[delegate])
    it.allocate_tensors()
    for d, value in zip(it.get_input_details(), _inputs(it, 0)):
        it.set_tensor(d["index"], value)
    it.invoke()
    first = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    it.invoke()
    for d, prev in zip(it.get_output_details(), first):
        got = it.get_tensor(d["index"])
        assert got.shape == tuple(d["shape"]) and got.dtype == d["dtype"]
        assert got.tobytes() == prev.tobytes(), "the same input gives the same output"


@pytest.mark.parametrize("library", ["libedgetpu.so.1", "libedgetpu.so.1.0", "libedgetpu.1.dylib", "edgetpu.dll",
                                     "/usr/lib/x86_64-linux-gnu/libedgetpu.so.1"])
def test_library_names(library):
    d = edgetpu.load_delegate(library, {"device": "sim"})
    assert d.devices == ["sim:0"] and d.simulated


def test_options():
    assert edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim:pci"}).devices == ["sim:pci:0"]
    # libedgetpu's other options are accepted.
    edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim", "performance": "max", "usb_always_dfu": "False"})
    with pytest.raises(ValueError, match="unknown options: bogus"):
        edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim", "bogus": "1"})


@pytest.mark.parametrize("library", ["libtensorflowlite_gpu_delegate.so", "libedgetpu.so.2", ""])
def test_other_libraries_are_refused(library):
    with pytest.raises(ValueError, match="Failed to load delegate from"):
        edgetpu.load_delegate(library)


@pytest.mark.parametrize("device", ["usb", "usb:0", "usb:3", "pci", "pci:0", "pci:1", "", "gpu", "cpu", "sim:nope"])
def test_no_such_device_is_a_value_error(device):
    # This machine has no Coral: every real device fails to open as libedgetpu's delegate does,
    # with a ValueError, which is what callers' CPU fallbacks catch.
    if device in ("usb", "usb:0", "pci", "pci:0", "") and edgetpu.utils.list_edge_tpus():
        pytest.fail("a Coral is attached: this test expects none")
    with pytest.raises(ValueError, match="Failed to load delegate from libedgetpu.so.1"):
        edgetpu.load_delegate("libedgetpu.so.1", {"device": device})


def test_compiled_model_without_delegate_gives_the_reference_error():
    it = edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"))
    assert it.get_input_details()[0]["shape"].tolist() == [1, 128, 128, 3]
    with pytest.raises(RuntimeError, match=r"Encountered unresolved custom op: edgetpu-custom-op\.\nSee instructions: "
                       r"https://www.tensorflow.org/lite/guide/ops_custom Node number 0 \(edgetpu-custom-op\) failed "
                       r"to prepare\."):
        it.allocate_tensors()
    with pytest.raises(RuntimeError, match="unresolved custom op"):
        it.invoke()


def test_reference_error_text_matches_ai_edge_litert():
    from ai_edge_litert.interpreter import Interpreter

    ref = Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"))
    with pytest.raises(RuntimeError) as theirs:
        ref.allocate_tensors()
    ours = edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"))
    with pytest.raises(RuntimeError) as mine:
        ours.allocate_tensors()
    assert str(mine.value).startswith(str(theirs.value).strip())


def test_cpu_model_with_delegate_runs_on_the_cpu():
    delegate = edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim"})
    it = edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant.tflite"),
                             experimental_delegates=[delegate])
    it.allocate_tensors()
    it.invoke()
    assert it.get_output_details()[0]["shape"].tolist() == [1, 1001]


def test_one_delegate_shared_by_two_interpreters():
    delegate = edgetpu.load_delegate("libedgetpu.so.1", {"device": "sim"})
    path = str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    a = edgetpu.Interpreter(model_path=path, experimental_delegates=[delegate])
    b = edgetpu.Interpreter(model_content=(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").read_bytes(),
                            experimental_delegates=[delegate])
    del delegate  # the interpreters keep the device open
    x = np.full((1, 128, 128, 3), 100, np.uint8)
    for it in (a, b):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
    assert a.get_tensor(a.get_output_details()[0]["index"]).shape == (1, 1001)
    assert b.get_tensor(b.get_output_details()[0]["index"]).shape == (1, 1001)


def test_delegates_must_come_from_load_delegate():
    with pytest.raises(ValueError, match="experimental_delegates"):
        edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant.tflite"), experimental_delegates=["x"])
