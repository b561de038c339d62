"""The interpreter API itself: views without copies, the GIL, signatures, and bad input that must
give Python exceptions (never a crash)."""

import threading
import time

import numpy as np
import pytest
from conftest import data_root

import edgetpu

ROOT = data_root()
MOBILENET = str(ROOT / "mobilenet_v1_0.25_128_quant.tflite")


@pytest.fixture
def it():
    interpreter = edgetpu.Interpreter(model_path=MOBILENET, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def test_tensor_is_a_view(it):
    index = it.get_input_details()[0]["index"]
    view = it.tensor(index)
    a, b = view(), view()
    assert np.shares_memory(a, b)
    a[0, 0, 0, :] = [1, 2, 3]
    assert b[0, 0, 0].tolist() == [1, 2, 3]
    assert it.get_tensor(index)[0, 0, 0].tolist() == [1, 2, 3]  # written through to the interpreter
    copy = it.get_tensor(index)
    assert not np.shares_memory(copy, a)
    out = it.get_output_details()[0]["index"]
    o1 = it.tensor(out)()
    assert o1.shape == (1, 1001) and o1.dtype == np.uint8
    del a, b, o1


def test_invoke_refuses_while_views_exist(it):
    index = it.get_input_details()[0]["index"]
    held = it.tensor(index)()
    with pytest.raises(RuntimeError, match="at least 1 reference to internal data"):
        it.invoke()
    part = held[0, :2]
    del held
    with pytest.raises(RuntimeError, match="at least 1 reference"):
        it.invoke()  # a slice keeps the memory too
    del part
    it.invoke()
    # Views fed through invoke see the new output in place.
    it.tensor(index)().fill(0)
    it.invoke()
    zero = it.get_tensor(it.get_output_details()[0]["index"])
    it.tensor(index)().fill(255)
    it.invoke()
    assert not np.array_equal(it.tensor(it.get_output_details()[0]["index"])(), zero)


def test_view_outlives_the_interpreter():
    interpreter = edgetpu.Interpreter(model_path=MOBILENET)
    view = interpreter.tensor(0)()
    view.fill(7)
    del interpreter  # the array keeps the interpreter's memory alive
    assert int(view.sum()) == 7 * view.size


def test_constant_tensor_view_is_read_only(it):
    # Tensor 1 of this model is a constant (weights): its view is a read-only copy.
    consts = [d["index"] for d in it.get_tensor_details() if d["index"] not in
              [x["index"] for x in it.get_input_details() + it.get_output_details()]]
    for t in consts:
        try:
            value = it.tensor(t)()
        except ValueError as e:
            assert "intermediate" in str(e)
            continue
        assert not value.flags.writeable
        with pytest.raises(ValueError):
            value[...] = 0
        break
    else:
        pytest.fail("no constant tensor found")


def test_invoke_releases_the_gil():
    big = edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v2_1.0_224_quant.tflite"), num_threads=1)
    big.invoke()
    counter = [0]
    stop = threading.Event()
    started = threading.Event()

    def spin():
        started.set()
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    started.wait()
    start = time.perf_counter()
    before = counter[0]
    for _ in range(3):
        big.invoke()
    during = counter[0] - before
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    # With the GIL held for the whole invoke, the spinning thread would not run during it.
    assert elapsed > 0.01 and during > 1000, (during, elapsed)


def test_signatures():
    lstm = edgetpu.Interpreter(model_path=str(ROOT / "keras_lstm_mnist_ptq.tflite"))
    assert lstm.get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["output_0"]}}
    from ai_edge_litert.interpreter import Interpreter

    ref = Interpreter(model_path=str(ROOT / "keras_lstm_mnist_ptq.tflite"))
    assert lstm.get_signature_list() == ref.get_signature_list()
    runner = lstm.get_signature_runner()
    x = np.random.default_rng(0).integers(0, 255, size=runner.get_input_details()["x"]["shape"], dtype=np.uint8)
    got = runner(x=x)
    ref_runner = ref.get_signature_runner()
    assert set(got) == set(ref_runner(x=x)) == {"output_0"}
    assert got["output_0"].shape == tuple(runner.get_output_details()["output_0"]["shape"])
    with pytest.raises(ValueError, match="Invalid Input name"):
        runner(y=x)
    with pytest.raises(ValueError, match="Invalid number of inputs"):
        runner()
    with pytest.raises(ValueError, match="Invalid signature_key"):
        lstm.get_signature_runner("nope")
    plain = edgetpu.Interpreter(model_path=MOBILENET)
    assert plain.get_signature_list() == {}
    with pytest.raises(ValueError, match="model has 0 Signatures"):
        plain.get_signature_runner()


def test_resize_tensor_input(it):
    it.resize_tensor_input(0, [1, 128, 128, 3])  # the current shape: nothing to do
    with pytest.raises(ValueError, match="resize_tensor_input is not supported"):
        it.resize_tensor_input(0, [2, 128, 128, 3])


@pytest.mark.parametrize("value,match", [
    (np.zeros((1, 128, 128, 3), np.float32), "Got value of type FLOAT32 but expected type UINT8 for input 0, name: input"),
    (np.zeros((1, 128, 128, 3), np.int8), "Got value of type INT8 but expected type UINT8"),
    (np.zeros((1, 128, 128), np.uint8), r"Dimension mismatch. Got 3 but expected 4 for input 0\."),
    (np.zeros((1, 127, 128, 3), np.uint8), "Dimension mismatch. Got 127 but expected 128 for dimension 1 of input 0"),
    ([1, 2], "Got value of type INT64 but expected type UINT8"),
    ("text", "expected type UINT8"),
    (None, "expected type UINT8"),
])
def test_set_tensor_errors_like_the_reference(it, value, match):
    with pytest.raises(ValueError, match=match):
        it.set_tensor(0, value)


def test_set_tensor_error_text_is_the_references(it):
    from ai_edge_litert.interpreter import Interpreter

    ref = Interpreter(model_path=MOBILENET)
    ref.allocate_tensors()
    for bad in (np.zeros((1, 128, 128, 3), np.float32), np.zeros((1, 128, 128), np.uint8),
                np.zeros((1, 127, 128, 3), np.uint8)):
        with pytest.raises(ValueError) as theirs:
            ref.set_tensor(0, bad)
        with pytest.raises(ValueError) as ours:
            it.set_tensor(0, bad)
        assert str(ours.value) == str(theirs.value)


def test_set_tensor_accepts_any_layout(it):
    base = np.arange(128 * 128 * 3 * 2, dtype=np.uint8).reshape(1, 128, 256, 3)
    strided = base[:, :, ::2]
    assert not strided.flags.c_contiguous
    it.set_tensor(0, strided)
    assert np.array_equal(it.get_tensor(0), strided)
    fortran = np.asfortranarray(np.arange(128 * 128 * 3, dtype=np.uint8).reshape(1, 128, 128, 3))
    it.set_tensor(0, fortran)
    assert np.array_equal(it.get_tensor(0), fortran)


@pytest.mark.parametrize("index", [-1, 89, 10**6, 2**70])
def test_unknown_tensor_index(it, index):
    for call in (lambda: it.get_tensor(index), lambda: it.set_tensor(index, np.zeros(1, np.uint8)),
                 lambda: it.tensor(index)):
        with pytest.raises((ValueError, OverflowError)):
            call()


def test_intermediate_tensor_is_refused(it):
    it.invoke()
    relu = [d for d in it.get_tensor_details() if "Relu6" in d["name"]]
    assert relu
    t = relu[0]["index"]
    with pytest.raises(ValueError, match="intermediate"):
        it.get_tensor(t)
    with pytest.raises(ValueError, match="cannot be written"):
        it.set_tensor(t, np.zeros(relu[0]["shape"], np.uint8))
    with pytest.raises(ValueError, match="intermediate"):
        it.tensor(t)()
    # With experimental_preserve_all_tensors, intermediates are readable.
    keep = edgetpu.Interpreter(model_path=MOBILENET, experimental_preserve_all_tensors=True)
    keep.invoke()
    assert keep.get_tensor(t).shape == tuple(relu[0]["shape"])


def test_missing_and_malformed_models(tmp_path):
    with pytest.raises(ValueError, match="Could not open '/nonexistent/model.tflite'"):
        edgetpu.Interpreter(model_path="/nonexistent/model.tflite")
    with pytest.raises(ValueError, match="Could not open"):
        edgetpu.Interpreter(model_path=str(tmp_path))  # a directory
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        edgetpu.Interpreter(model_path=str(empty))
    with pytest.raises(ValueError, match="not a valid Flatbuffer"):
        edgetpu.Interpreter(model_content=b"garbage" * 10)
    good = (ROOT / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    rng = np.random.default_rng(0)
    for cut in (8, 100, len(good) // 2):
        with pytest.raises((ValueError, RuntimeError)):
            edgetpu.Interpreter(model_content=good[:cut])
    # Flipped bytes anywhere: an exception or a model that runs, never a crash.
    for _ in range(30):
        bad = bytearray(good)
        for i in rng.integers(0, 4096, size=8):
            bad[i] ^= 0xFF
        try:
            m = edgetpu.Interpreter(model_content=bytes(bad))
            m.allocate_tensors()
            m.invoke()
        except (ValueError, RuntimeError):
            pass
    with pytest.raises(ValueError, match="must be specified"):
        edgetpu.Interpreter()
    with pytest.raises(ValueError, match="cannot be both specified"):
        edgetpu.Interpreter(model_path=MOBILENET, model_content=good)
    with pytest.raises(ValueError, match="num_threads"):
        edgetpu.Interpreter(model_path=MOBILENET, num_threads=0)
    with pytest.raises(ValueError):
        edgetpu.Interpreter(model_path=MOBILENET, num_threads="2")


def test_model_that_fails_at_invoke(td):
    # invalid_models/model_invoking_error.tflite: an op that fails when run.
    path = str(td / "invalid_models/model_invoking_error.tflite")
    try:
        m = edgetpu.Interpreter(model_path=path)
        m.allocate_tensors()
        m.invoke()
    except (ValueError, RuntimeError) as e:
        assert str(e)
    else:
        pytest.fail("model_invoking_error.tflite ran without an error")
