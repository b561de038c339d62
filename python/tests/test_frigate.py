"""Frigate's Edge TPU detector logic, unchanged, on the compat package's tflite_runtime.

FrigateStyleDetector makes the calls of frigate/detectors/plugins/edgetpu_tfl.py in the same
order: load_delegate("libedgetpu.so.1.0", {"device": ...}) (ValueError when there is no Coral),
Interpreter(model_path=..., experimental_delegates=[...]), allocate_tensors, get_input_details,
get_output_details, then per frame set_tensor, invoke, tensor(i)()[0] on the four SSD outputs
and int(tensor(count)()[0]).
"""

import json

import numpy as np
import pytest
from conftest import data_root, golden_array

ROOT = data_root()


class FrigateStyleDetector:
    def __init__(self, model_path, device="usb"):
        from tflite_runtime.interpreter import Interpreter, load_delegate

        delegate = load_delegate("libedgetpu.so.1.0", {"device": device})
        self.interpreter = Interpreter(model_path=model_path, experimental_delegates=[delegate])
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def detect_raw(self, frame, threshold=0.4, limit=20):
        it = self.interpreter
        it.set_tensor(self.inputs[0]["index"], frame)
        it.invoke()
        boxes = it.tensor(self.outputs[0]["index"])()[0]
        class_ids = it.tensor(self.outputs[1]["index"])()[0]
        scores = it.tensor(self.outputs[2]["index"])()[0]
        count = int(it.tensor(self.outputs[3]["index"])()[0])
        detections = np.zeros((limit, 6), np.float32)
        for i in range(count):
            if scores[i] < threshold or i == limit:
                break
            detections[i] = [class_ids[i], float(scores[i]), boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]]
        return detections


def test_no_coral_raises_value_error_for_frigates_fallback():
    with pytest.raises(ValueError):
        FrigateStyleDetector(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), device="usb")
    with pytest.raises(ValueError):
        FrigateStyleDetector(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), device="pci")


def test_traffic_frames_with_the_sim_delegate():
    """A detection model (with SSD post-processing) through Frigate's calls: the golden detections."""
    run = json.loads((ROOT / "golden/traffic_model/frame0001.json").read_text())
    detector = FrigateStyleDetector(str(ROOT / run["model_path"]), device="sim")
    frame = golden_array("traffic_model", run["inputs"][0])
    for _ in range(3):  # views are dropped between frames, so invoke runs again
        detections = detector.detect_raw(frame, threshold=0.3)
    want = [d for d in run["result"]["detections"] if d["score"] >= 0.3]
    assert len(want) == 3 and not detections[3:].any()
    for row, w in zip(detections, want):
        assert row[0] == w["class_id"] and row[1] == np.float32(w["score"])
        assert row[2:].tolist() == [np.float32(v) for v in w["box_ymin_xmin_ymax_xmax"]]


def test_compiled_ssd_tail_on_sim():
    """A compiled model whose Edge TPU step runs on the simulated device and whose SSD
    post-processing runs on the CPU (the last segment of a pipelined SSD MobileNet v2; with no CPU
    twin the simulator's step outputs are seeded bytes): Frigate's view reads agree with copies."""
    path = str(ROOT / "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_2_of_3_edgetpu.tflite")
    detector = FrigateStyleDetector(path, device="sim")
    assert detector.interpreter.devices == ["sim:0"]
    first = detector.inputs[0]
    frame = np.random.default_rng(1).integers(0, 255, size=first["shape"], dtype=np.uint8)
    detections = detector.detect_raw(frame, threshold=0.0)
    it = detector.interpreter
    boxes, ids, scores, count = (it.get_tensor(d["index"]) for d in detector.outputs)
    n = min(int(count[0]), 20)
    assert n > 0
    assert np.array_equal(detections[:n, 0], ids[0, :n]) and np.array_equal(detections[:n, 1], scores[0, :n])
    assert np.array_equal(detections[:n, 2:], boxes[0, :n])
    assert (np.diff(scores[0, :n]) <= 0).all(), "scores come sorted"
