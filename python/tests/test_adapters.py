"""pycoral's API (edgetpu.utils, edgetpu.adapters and the pycoral modules of the compat package)
gives the golden results: the top-5 classes of cat.bmp, the traffic frame's detections."""

import json

import numpy as np
import pytest
from conftest import data_root, golden_array

import edgetpu
from edgetpu import utils
from edgetpu.adapters import classify, common, detect

ROOT = data_root()


def golden(model, tag):
    return json.loads((ROOT / "golden" / model / f"{tag}.json").read_text())


def _cat_pixels(model):
    """cat.bmp as the golden resized it (PIL LANCZOS) for the model's input, (H, W, 3)."""
    run = golden(model, "cat")
    assert "cat.bmp" in run["inputs"][0]["source"]
    return golden_array(model, run["inputs"][0])[0]


@pytest.mark.parametrize("model,device", [
    ("mobilenet_v1_0.25_128_quant", None),
    ("mobilenet_v1_0.5_160_quant", None),
    ("mobilenet_v2_1.0_224_quant", None),
    ("tf2_mobilenet_v2_1.0_224_ptq", None),
    ("mobilenet_v1_0.25_128_quant", "sim"),
    ("mobilenet_v1_0.75_192_quant", "sim:pci"),
])
def test_classify_cat_top5(model, device):
    want = golden(model, "cat")["result"]["top_k"]
    if device is None:
        it = edgetpu.Interpreter(model_path=str(ROOT / f"{model}.tflite"))
    else:
        it = utils.make_interpreter(str(ROOT / f"{model}_edgetpu.tflite"), device=device)
    it.allocate_tensors()
    size = common.input_size(it)
    pixels = _cat_pixels(model)
    assert size == (pixels.shape[1], pixels.shape[0])
    common.set_input(it, pixels)
    it.invoke()
    assert classify.num_classes(it) == 1001
    classes = classify.get_classes(it, top_k=5)
    assert [float(c.score) for c in classes] == [w["score"] for w in want]
    # Classes of equal scores come in no particular order (pycoral's argpartition): the ids must
    # match where the score is unique, and be ids of that score elsewhere.
    scores = classify.get_scores(it)
    for c, w in zip(classes, want):
        tied = set(np.flatnonzero(scores == c.score).tolist())
        assert c.id == w["class_id"] if len(tied) == 1 else c.id in tied, (c, w, tied)
    labels = edgetpu.read_label_file(str(ROOT / "imagenet_labels.txt"))
    assert [labels[c.id] for c in classes[:3]] == [w["label"] for w in want[:3]]
    # A threshold keeps the classes scoring at least that much.
    assert [c.id for c in classify.get_classes(it, top_k=5, score_threshold=want[2]["score"])] == \
        [w["class_id"] for w in want if w["score"] >= want[2]["score"]]
    scores = classify.get_scores(it)
    assert scores.shape == (1001,) and scores.dtype == np.float64


def test_set_resized_input_pads_and_scales():
    it = edgetpu.Interpreter(model_path=str(ROOT / "mobilenet_v1_0.25_128_quant.tflite"))
    it.allocate_tensors()
    calls = []

    def resize(size):
        calls.append(size)
        w, h = size
        return np.full((h, w, 3), 9, np.uint8)

    result, scale = common.set_resized_input(it, (512, 341), resize)
    assert calls == [(128, 85)] and scale == (0.25, 0.25) and result.shape == (85, 128, 3)
    tensor = common.input_tensor(it)
    assert (tensor[:85] == 9).all() and (tensor[85:] == 0).all()


def test_traffic_frame_detections():
    model = "traffic_model"
    run = golden(model, "frame0001")
    it = edgetpu.Interpreter(model_path=str(ROOT / run["model_path"]))
    it.allocate_tensors()
    assert "0001.bmp" in run["inputs"][0]["source"]
    common.set_input(it, golden_array(model, run["inputs"][0])[0])
    for entry in run["inputs"][1:]:  # the LSTM state, at its zero point
        it.set_tensor(entry["index"], golden_array(model, entry))
    it.invoke()
    threshold = 0.3
    objects = detect.get_objects(it, score_threshold=threshold)
    want = [d for d in run["result"]["detections"] if d["score"] >= threshold]
    assert len(objects) == len(want) == 3
    for o, w in zip(objects, want):
        assert isinstance(o, detect.Object) and isinstance(o.bbox, detect.BBox)
        assert o.id == w["class_id"] and o.score == w["score"]
        ymin, xmin, ymax, xmax = w["box_ymin_xmin_ymax_xmax"]
        assert o.bbox == (int(xmin * 256), int(ymin * 256), int(xmax * 256), int(ymax * 256))
    # image_scale maps the boxes back to a smaller original image.
    half = detect.get_objects(it, score_threshold=threshold, image_scale=(0.5, 0.5))
    assert [o.bbox.xmax for o in half] == [int(w["box_ymin_xmin_ymax_xmax"][3] * 512) for w in want]
    assert len(detect.get_objects(it)) == run["result"]["count"]


def test_bbox():
    a = detect.BBox(0, 0, 10, 10)
    b = detect.BBox(5, 5, 15, 20)
    assert (a.width, a.height, a.area, a.valid) == (10, 10, 100, True)
    assert detect.BBox.intersect(a, b) == (5, 5, 10, 10)
    assert detect.BBox.union(a, b) == (0, 0, 15, 20)
    assert detect.BBox.iou(a, b) == pytest.approx(25 / (100 + 150 - 25))
    assert detect.BBox.iou(a, detect.BBox(20, 20, 30, 30)) == 0.0
    assert a.scale(2, 3) == (0, 0, 20, 30) and a.translate(1, 2) == (1, 2, 11, 12)
    assert detect.BBox(0.4, 1.6, 2.5, 3.9).map(int) == (0, 1, 2, 3)
    assert not detect.BBox(5, 0, 1, 1).valid


def test_read_label_file(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("0 background\n1:person\n2  bicycle car\n")
    assert edgetpu.read_label_file(str(f)) == {0: "background", 1: "person", 2: "bicycle car"}
    f.write_text("cat\ndog\n")
    assert edgetpu.read_label_file(str(f)) == {0: "cat", 1: "dog"}
    labels = edgetpu.read_label_file(str(ROOT / "imagenet_labels.txt"))
    assert len(labels) == 1001 and labels[283] == "tiger cat"


def test_utils():
    assert utils.list_edge_tpus() == []  # no Coral on the test machine
    assert edgetpu.__version__ in utils.get_runtime_version()
    with pytest.raises(ValueError, match="Failed to load delegate"):
        utils.make_interpreter(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"))
    with pytest.raises(ValueError, match="Failed to load delegate"):
        utils.make_interpreter(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), device=":0")
    # From bytes: the simulator has no file beside which to find the CPU twin it computes the Edge
    # TPU step's outputs with, so they are seeded bytes; the model runs all the same.
    it = utils.make_interpreter((ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").read_bytes(), device="sim")
    it.allocate_tensors()
    it.invoke()
    assert it.devices == ["sim:0"] and classify.get_scores(it).shape == (1001,)
    it = utils.make_interpreter(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), device="sim")
    it.allocate_tensors()
    pixels = _cat_pixels("mobilenet_v1_0.25_128_quant")
    utils.run_inference(it, pixels.tobytes())
    assert classify.get_classes(it, top_k=1)[0].id == 283
    utils.run_inference(it, pixels.reshape(-1))
    assert classify.get_classes(it, top_k=1)[0].id == 283
    with pytest.raises(ValueError, match="input size=3, expected=49152"):
        utils.run_inference(it, b"abc")
    with pytest.raises(TypeError):
        utils.run_inference(it, "abc")


def test_pycoral_modules_of_the_compat_package():
    from pycoral.adapters import classify as pc_classify
    from pycoral.adapters import common as pc_common
    from pycoral.adapters import detect as pc_detect
    from pycoral.utils.dataset import read_label_file
    from pycoral.utils.edgetpu import make_interpreter

    from edgetpu import dataset

    assert pc_classify.get_classes is classify.get_classes and pc_common.set_input is common.set_input
    assert pc_detect.BBox is detect.BBox and read_label_file is dataset.read_label_file
    # pycoral's classification example, unchanged.
    labels = read_label_file(str(ROOT / "imagenet_labels.txt"))
    interpreter = make_interpreter(str(ROOT / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), device="sim")
    interpreter.allocate_tensors()
    pc_common.set_input(interpreter, _cat_pixels("mobilenet_v1_0.25_128_quant"))
    interpreter.invoke()
    classes = pc_classify.get_classes(interpreter, top_k=3)
    assert [labels.get(c.id) for c in classes] == ["tiger cat", "Egyptian cat", "tabby, tabby cat"]
