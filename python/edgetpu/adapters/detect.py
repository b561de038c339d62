"""Detection results (pycoral.adapters.detect), for models ending in the SSD post-processing op."""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Tuple

from . import common

__all__ = ["BBox", "Object", "get_objects"]


class BBox(NamedTuple):
    """A box: ``xmin``, ``ymin``, ``xmax``, ``ymax``."""

    xmin: Any
    ymin: Any
    xmax: Any
    ymax: Any

    @property
    def width(self) -> Any:
        """xmax - xmin."""
        return self.xmax - self.xmin

    @property
    def height(self) -> Any:
        """ymax - ymin."""
        return self.ymax - self.ymin

    @property
    def area(self) -> Any:
        """width * height."""
        return self.width * self.height

    @property
    def valid(self) -> bool:
        """Whether width and height are both >= 0."""
        return self.width >= 0 and self.height >= 0

    def scale(self, sx: float, sy: float) -> "BBox":
        """The box with x coordinates multiplied by ``sx`` and y coordinates by ``sy``."""
        return BBox(self.xmin * sx, self.ymin * sy, self.xmax * sx, self.ymax * sy)

    def translate(self, dx: Any, dy: Any) -> "BBox":
        """The box moved by (``dx``, ``dy``)."""
        return BBox(self.xmin + dx, self.ymin + dy, self.xmax + dx, self.ymax + dy)

    def map(self, f: Callable[[Any], Any]) -> "BBox":
        """The box with ``f`` applied to each coordinate."""
        return BBox(f(self.xmin), f(self.ymin), f(self.xmax), f(self.ymax))

    @staticmethod
    def intersect(a: "BBox", b: "BBox") -> "BBox":
        """The overlap of two boxes (not ``valid`` when they do not overlap)."""
        return BBox(max(a.xmin, b.xmin), max(a.ymin, b.ymin), min(a.xmax, b.xmax), min(a.ymax, b.ymax))

    @staticmethod
    def union(a: "BBox", b: "BBox") -> "BBox":
        """The smallest box holding both."""
        return BBox(min(a.xmin, b.xmin), min(a.ymin, b.ymin), max(a.xmax, b.xmax), max(a.ymax, b.ymax))

    @staticmethod
    def iou(a: "BBox", b: "BBox") -> float:
        """Intersection over union: 1.0 for the same box, 0.0 when they do not overlap."""
        inter = BBox.intersect(a, b)
        if not inter.valid:
            return 0.0
        overlap = inter.area
        return overlap / (a.area + b.area - overlap)


class Object(NamedTuple):
    """A detected object: class ``id``, ``score`` and ``bbox`` (a :class:`BBox`)."""

    id: int
    score: float
    bbox: BBox


def get_objects(
    interpreter: Any, score_threshold: float = -float("inf"), image_scale: Tuple[float, float] = (1.0, 1.0)
) -> List[Object]:
    """The objects the model found, scoring at least ``score_threshold``.

    The outputs are the SSD post-processing op's: boxes (ymin, xmin, ymax, xmax, relative), class
    ids, scores and count. Boxes come back in input pixels divided by ``image_scale`` (the scale
    :func:`common.set_resized_input` returns), as integers.
    """
    boxes = common.output_tensor(interpreter, 0)[0]
    ids = common.output_tensor(interpreter, 1)[0]
    scores = common.output_tensor(interpreter, 2)[0]
    count = int(common.output_tensor(interpreter, 3)[0])
    width, height = common.input_size(interpreter)
    sx, sy = width / image_scale[0], height / image_scale[1]
    objects = []
    for i in range(count):
        if scores[i] < score_threshold:
            continue
        ymin, xmin, ymax, xmax = boxes[i]
        box = BBox(xmin, ymin, xmax, ymax).scale(sx, sy).map(int)
        objects.append(Object(int(ids[i]), float(scores[i]), box))
    return objects
