"""pycoral.utils.edgetpu's helpers: device listing, ``make_interpreter``, ``run_inference``."""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import Delegate, Interpreter, _native, load_delegate
from .dataset import read_label_file

__all__ = [
    "get_runtime_version",
    "list_edge_tpus",
    "load_edgetpu_delegate",
    "make_interpreter",
    "read_label_file",
    "run_inference",
]

_LIBRARY = {"Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(platform.system(), "libedgetpu.so.1")


def get_runtime_version() -> str:
    """The runtime's name and version."""
    return f"edgetpu (pure-Rust runtime) {_native.runtime_version()}"


def list_edge_tpus() -> List[Dict[str, str]]:
    """The Edge TPUs attached now: ``[{"type": "usb" | "pci", "path": ...}]``.

    ``path`` is the runtime's selection string of the device (``usb:<bus>-<ports>``,
    ``pci:apex_N``), which ``make_interpreter(..., device=path)`` takes.
    """
    return [{"type": kind, "path": path} for kind, path in _native.attached_devices()]


def load_edgetpu_delegate(options: Optional[Dict[str, Any]] = None) -> Delegate:
    """``load_delegate`` with the platform's libedgetpu name."""
    return load_delegate(_LIBRARY, options or {})


def _device_string(device: Optional[str]) -> str:
    """pycoral's device forms (``None``, ``":N"``, ``usb``, ``usb:N``, ``pci``, ``pci:N``) as this
    runtime's; ``sim`` forms pass through."""
    if not device:
        return ""
    if device.startswith(":"):
        n = device[1:]
        if not n.isdigit():
            raise ValueError(f"invalid device {device!r}: expected ':N'")
        tpus = list_edge_tpus()
        if int(n) >= len(tpus):
            raise ValueError(f"Failed to load delegate from {_LIBRARY}\ndevice {device}: {len(tpus)} Edge TPU(s) attached")
        return tpus[int(n)]["path"]
    return device


def make_interpreter(
    model_path_or_content: Union[str, bytes, "os.PathLike[str]"],
    device: Optional[str] = None,
    delegate: Optional[Delegate] = None,
) -> Interpreter:
    """An interpreter for a model (a path, or the model's bytes) on an Edge TPU.

    ``device``: ``None`` (any Edge TPU), ``":N"`` (the N-th), ``"usb"``, ``"usb:N"``, ``"pci"``,
    ``"pci:N"``, or ``"sim"`` / ``"sim:pci"`` (simulated). ``delegate``: one from
    :func:`edgetpu.load_delegate` to share between interpreters (``device`` is then ignored).
    Raises ValueError when there is no such device.
    """
    if delegate is None:
        delegate = load_edgetpu_delegate({"device": _device_string(device)})
    if isinstance(model_path_or_content, (bytes, bytearray, memoryview)):
        return Interpreter(model_content=bytes(model_path_or_content), experimental_delegates=[delegate])
    return Interpreter(model_path=os.fspath(model_path_or_content), experimental_delegates=[delegate])


def run_inference(interpreter: Interpreter, input_data: Union[bytes, np.ndarray]) -> None:
    """Copies raw uint8 input (``bytes`` or a 1-D array) into the first input and invokes."""
    details = interpreter.get_input_details()[0]
    expected = int(np.prod(details["shape"]))
    if isinstance(input_data, (bytes, bytearray, memoryview)):
        data = np.frombuffer(input_data, dtype=np.uint8)
    elif isinstance(input_data, np.ndarray):
        data = input_data.reshape(-1)
    else:
        raise TypeError("input data type is not supported.")
    if data.size != expected:
        raise ValueError(f"input size={data.size}, expected={expected}.")
    interpreter.set_tensor(details["index"], data.astype(details["dtype"], copy=False).reshape(details["shape"]))
    interpreter.invoke()
