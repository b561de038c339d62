"""Input and output helpers for any model (pycoral.adapters.common)."""

from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

__all__ = ["input_details", "input_size", "input_tensor", "output_tensor", "set_input", "set_resized_input"]


def output_tensor(interpreter: Any, i: int) -> np.ndarray:
    """Output ``i`` of the model, as a view of the interpreter's memory."""
    return interpreter.tensor(interpreter.get_output_details()[i]["index"])()


def input_details(interpreter: Any, key: str) -> Any:
    """The value of ``key`` in the details of the model's first input."""
    return interpreter.get_input_details()[0][key]


def input_size(interpreter: Any) -> Tuple[int, int]:
    """The first input's (width, height), for an NHWC image input."""
    _, height, width, _ = input_details(interpreter, "shape")
    return int(width), int(height)


def input_tensor(interpreter: Any) -> np.ndarray:
    """The first input as a (height, width, channels) view of the interpreter's memory."""
    return interpreter.tensor(input_details(interpreter, "index"))()[0]


def set_input(interpreter: Any, data: Any) -> None:
    """Copies ``data`` (height, width, channels) into the first input."""
    input_tensor(interpreter)[:, :] = data


def set_resized_input(
    interpreter: Any, size: Tuple[int, int], resize: Callable[[Tuple[int, int]], Any]
) -> Tuple[Any, Tuple[float, float]]:
    """Fits an image of ``size`` (width, height) into the input, keeping its aspect ratio.

    ``resize((w, h))`` returns the image at the fitted size; it goes to the top-left corner, the
    rest of the input is zero. Returns (resized image, (scale, scale)).
    """
    width, height = input_size(interpreter)
    w, h = size
    scale = min(width / w, height / h)
    w, h = int(w * scale), int(h * scale)
    tensor = input_tensor(interpreter)
    tensor.fill(0)
    channels = tensor.shape[2]
    resized = resize((w, h))
    tensor[:h, :w] = np.reshape(resized, (h, w, channels))
    return resized, (scale, scale)
