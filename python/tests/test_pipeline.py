"""pycoral's PipelinedModelRunner over this runtime: the test data's SSD MobileNet v2 in three
segments, each on its own simulated Edge TPU. With no CPU twins the simulator's Edge TPU outputs
are seeded bytes (a function of the inputs), so the pipeline's results are compared with the
same segments run one after another by hand."""

import threading

import numpy as np
import pytest

from edgetpu.utils import make_interpreter
from pycoral.pipeline.pipelined_model_runner import PipelinedModelRunner

from conftest import data_root


def segments():
    root = data_root() / "pipeline"
    return [str(root / f"ssd_mobilenet_v2_coco_quant_postprocess_segment_{k}_of_3_edgetpu.tflite") for k in range(3)]


def interpreters():
    its = [make_interpreter(p, device="sim") for p in segments()]
    for it in its:
        it.allocate_tensors()
    return its


def by_hand(its, frame):
    """The last segment's outputs, each segment's inputs taken from earlier outputs by name."""
    tensors = {its[0].get_input_details()[0]["name"]: frame}
    for it in its:
        for d in it.get_input_details():
            it.set_tensor(d["index"], tensors[d["name"]])
        it.invoke()
        tensors.update({d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()})
    return {d["name"]: tensors[d["name"]] for d in its[-1].get_output_details()}


def frames(n):
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(1, 300, 300, 3), dtype=np.uint8) for _ in range(n)]


def test_the_pipeline_gives_what_the_segments_give_one_after_another():
    runner = PipelinedModelRunner(interpreters())
    runner.set_input_queue_size(2)
    runner.set_output_queue_size(2)
    name = runner.interpreters()[0].get_input_details()[0]["name"]
    inputs = frames(6)
    want = [by_hand(interpreters(), f) for f in inputs]
    # A producer thread pushes while this one pops, as pycoral's examples do; the bounded queues
    # make the producer wait.
    producer = threading.Thread(target=lambda: [runner.push({name: f}) for f in inputs] + [runner.push({})])
    producer.start()
    got = []
    while True:
        result = runner.pop()
        if result is None:
            break
        got.append(result)
    producer.join()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w) and len(g) == 4
        for k in w:
            np.testing.assert_array_equal(g[k], w[k])
    # Different frames gave different detections: the comparison is not of constants.
    assert not np.array_equal(got[0]["TFLite_Detection_PostProcess"], got[1]["TFLite_Detection_PostProcess"])
    assert runner.pop() is None, "the end stays signalled"
    with pytest.raises(RuntimeError, match="after the end"):
        runner.push({name: inputs[0]})


def test_bad_inputs_are_refused_by_name():
    runner = PipelinedModelRunner(interpreters())
    name = runner.interpreters()[0].get_input_details()[0]["name"]
    with pytest.raises(ValueError, match="expected the inputs"):
        runner.push({"nope": frames(1)[0]})
    with pytest.raises(ValueError, match="numpy array of uint8"):
        runner.push({name: frames(1)[0].astype(np.float32)})
    with pytest.raises(ValueError, match="elements"):
        runner.push({name: np.zeros((1, 10), dtype=np.uint8)})
    with pytest.raises(TypeError, match="dict"):
        runner.push([frames(1)[0]])
    runner.push({})
    assert runner.pop() is None


def test_segments_out_of_order_are_refused():
    its = interpreters()
    with pytest.raises(ValueError, match="segment 1 takes input"):
        PipelinedModelRunner([its[0], its[2]])
    with pytest.raises(ValueError, match="at least one"):
        PipelinedModelRunner([])


def test_a_failing_segment_fails_that_input_only():
    its = interpreters()
    name = its[0].get_input_details()[0]["name"]
    good = frames(1)[0]
    want = by_hand(interpreters(), good)

    class Failing:
        """Segment 1, failing its first invoke."""

        def __init__(self, it):
            self.it, self.calls = it, 0

        def __getattr__(self, attr):
            return getattr(self.it, attr)

        def invoke(self):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("usb:1: transfer timed out")
            self.it.invoke()

    runner = PipelinedModelRunner([its[0], Failing(its[1]), its[2]])
    runner.push({name: good})
    runner.push({name: good})
    runner.push({})
    with pytest.raises(RuntimeError, match="segment 1: usb:1: transfer timed out"):
        runner.pop()
    second = runner.pop()
    np.testing.assert_array_equal(second["TFLite_Detection_PostProcess:1"], want["TFLite_Detection_PostProcess:1"])
    assert runner.pop() is None
