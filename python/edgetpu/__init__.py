"""Coral Edge TPU runtime in pure Rust, with the interpreter API of tflite_runtime / ai_edge_litert.

    import edgetpu
    it = edgetpu.Interpreter("model_edgetpu.tflite", experimental_delegates=[edgetpu.load_delegate("libedgetpu.so.1")])
    it.allocate_tensors()

Compiled models (``*_edgetpu.tflite``) run their Edge TPU steps on the delegate's device and every
other op on this runtime's CPU interpreter; CPU models run on the CPU interpreter, bit-exactly like
TFLite's reference kernels. pycoral's helpers are in :mod:`edgetpu.utils` and
:mod:`edgetpu.adapters`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _native
from ._native import Delegate

__all__ = [
    "Delegate",
    "Interpreter",
    "SignatureRunner",
    "load_delegate",
    "read_label_file",
    "__version__",
]

__version__ = _native.runtime_version()

# The names the Edge TPU delegate library goes by (Linux, macOS, Windows); any of them, with or
# without a directory, selects this runtime's Edge TPU support.
EDGETPU_LIBRARIES = ("libedgetpu.so.1", "libedgetpu.so.1.0", "libedgetpu.1.dylib", "edgetpu.dll")

# Options libedgetpu takes besides `device`; accepted and ignored (this runtime needs none of them).
_IGNORED_OPTIONS = ("performance", "usb_always_dfu", "usb_max_bulk_in_queue_length")


def load_delegate(library: str, options: Optional[Dict[str, Any]] = None) -> Delegate:
    """Opens the Edge TPU that ``options["device"]`` names, like ``load_delegate`` of tflite_runtime.

    ``library`` is one of the names of libedgetpu (``libedgetpu.so.1``, ``libedgetpu.so.1.0``,
    ``libedgetpu.1.dylib``, ``edgetpu.dll``); ``device`` is ``usb``, ``usb:N``, ``pci``, ``pci:N``,
    ``sim``, ``sim:pci`` or absent / ``""`` for the first one attached. Raises ValueError when there
    is no such device, as the reference does when the delegate fails to load, so that callers'
    CPU fallbacks keep working.
    """
    name = os.path.basename(os.fspath(library))
    if name not in EDGETPU_LIBRARIES:
        raise ValueError(
            f"Failed to load delegate from {library}\n"
            f"this runtime provides the Edge TPU delegate only ({', '.join(EDGETPU_LIBRARIES)})"
        )
    options = dict(options or {})
    device = options.pop("device", "")
    for key in _IGNORED_OPTIONS:
        options.pop(key, None)
    if options:
        raise ValueError(f"Failed to load delegate from {library}\nunknown options: {', '.join(sorted(options))}")
    if not isinstance(device, str):
        raise ValueError(f"Failed to load delegate from {library}\noption `device` must be a string, got {device!r}")
    return Delegate(str(library), device)


def _details(native: "_native.NativeInterpreter", index: int) -> Dict[str, Any]:
    name, index, shape, signature, dtype, scales, zero_points, dim = native.tensor_details(index)
    scales_arr = np.array(scales, dtype=np.float32)
    zps_arr = np.array(zero_points, dtype=np.int32)
    if len(scales) == 1:
        quantization = (float(scales[0]), int(zero_points[0]) if zero_points else 0)
    else:
        quantization = (0.0, 0)
    return {
        "name": name,
        "index": index,
        "shape": np.array(shape, dtype=np.int32),
        "shape_signature": np.array(signature, dtype=np.int32),
        "dtype": getattr(np, "bool_" if dtype == "bool" else dtype) if dtype else None,
        "quantization": quantization,
        "quantization_parameters": {
            "scales": scales_arr,
            "zero_points": zps_arr,
            "quantized_dimension": dim,
            "block_size": 0,
        },
        "sparsity_parameters": {},
    }


class Interpreter:
    """A model ready to run, with the API of ``tflite_runtime.interpreter.Interpreter``.

    Tensor indices are the model's own (as TFLite numbers them). ``invoke()`` releases the GIL.
    ``experimental_op_resolver_type`` is accepted and ignored: the CPU kernels always give the
    bytes of TFLite's reference kernels. ``experimental_preserve_all_tensors=True`` keeps every
    intermediate tensor readable with ``get_tensor``. Other keyword arguments of TFLite's
    constructor are accepted and ignored.
    """

    def __init__(
        self,
        model_path: Optional[str] = None,
        model_content: Optional[bytes] = None,
        experimental_delegates: Optional[Sequence[Delegate]] = None,
        num_threads: Optional[int] = None,
        experimental_op_resolver_type: Any = None,
        experimental_preserve_all_tensors: bool = False,
        **_ignored: Any,
    ) -> None:
        delegates = list(experimental_delegates or [])
        for d in delegates:
            if not isinstance(d, Delegate):
                raise ValueError(f"experimental_delegates takes delegates from edgetpu.load_delegate, got {d!r}")
        if model_path is not None and model_content is not None:
            raise ValueError("`model_path` and `model_content` cannot be both specified.")
        if model_path is not None:
            model_path = os.fspath(model_path)
        if model_content is not None:
            model_content = bytes(model_content)
        if num_threads is not None and not isinstance(num_threads, int):
            raise ValueError("type of num_threads should be int")
        self._delegates = delegates
        self._native = _native.NativeInterpreter(
            model_path,
            model_content,
            delegates[0] if delegates else None,
            num_threads,
            bool(experimental_preserve_all_tensors),
        )

    # -- the TFLite interpreter API -------------------------------------------------------------

    def allocate_tensors(self) -> None:
        """Checks that the model can run (tensors are allocated when the interpreter is built)."""
        self._native.allocate_tensors()

    def invoke(self) -> None:
        """Runs the model once, without the GIL."""
        self._native.invoke()

    def get_input_details(self) -> List[Dict[str, Any]]:
        """Details of the input tensors: ``name``, ``index``, ``shape``, ``dtype``, quantization..."""
        return [_details(self._native, i) for i in self._native.input_indices()]

    def get_output_details(self) -> List[Dict[str, Any]]:
        """Details of the output tensors."""
        return [_details(self._native, i) for i in self._native.output_indices()]

    def get_tensor_details(self) -> List[Dict[str, Any]]:
        """Details of every tensor of the model's main graph."""
        return [_details(self._native, i) for i in range(self._native.tensor_count())]

    def set_tensor(self, tensor_index: int, value: Any) -> None:
        """Copies ``value`` into a tensor; its dtype and shape must be the tensor's."""
        self._native.set_tensor(tensor_index, value)

    def get_tensor(self, tensor_index: int, subgraph_index: int = 0) -> np.ndarray:
        """A copy of a tensor (an input, an output or a constant)."""
        if subgraph_index != 0:
            raise ValueError(f"subgraph {subgraph_index}: only the main subgraph (0) can be read")
        return self._native.get_tensor(tensor_index)

    def tensor(self, tensor_index: int):
        """A function returning a NumPy array over the tensor's memory (no copy).

        Do not hold the array across ``invoke()``: it raises RuntimeError while one exists.
        """
        native = self._native
        native.tensor_details(tensor_index)  # ValueError now for a bad index, as TFLite's
        return lambda: native.view(tensor_index)

    def resize_tensor_input(self, input_index: int, tensor_size: Any, strict: bool = False) -> None:
        """Refused unless the size is the current one: this runtime plans every shape once."""
        shape = [int(d) for d in np.asarray(tensor_size).reshape(-1)]
        current = [int(d) for d in _details(self._native, input_index)["shape"]]
        if shape != current:
            raise ValueError(
                f"resize_tensor_input is not supported: tensor {input_index} keeps its shape {current} "
                f"(asked for {shape}); this runtime plans the model's shapes once, when it is loaded"
            )

    def reset_all_variables(self) -> None:
        """Not supported: raises RuntimeError."""
        raise RuntimeError("reset_all_variables is not supported by this runtime; create a new Interpreter")

    def get_signature_list(self) -> Dict[str, Dict[str, List[str]]]:
        """The signature defs: ``{key: {"inputs": [names], "outputs": [names]}}``."""
        return {
            key: {"inputs": sorted(n for n, _ in ins), "outputs": sorted(n for n, _ in outs)}
            for key, _, ins, outs in self._native.signatures()
        }

    def get_signature_runner(self, signature_key: Optional[str] = None) -> "SignatureRunner":
        """A callable running the signature ``signature_key`` by input and output names."""
        signatures = self._native.signatures()
        if signature_key is None:
            if len(signatures) != 1:
                raise ValueError(
                    f"SignatureDef signature_key is None and model has {len(signatures)} Signatures. "
                    "None is only allowed when the model has 1 SignatureDef"
                )
            signature_key = signatures[0][0]
        return SignatureRunner(self, signature_key)

    # -- beyond TFLite --------------------------------------------------------------------------

    @property
    def devices(self) -> List[str]:
        """The Edge TPU devices the model's Edge TPU steps run on (empty on the CPU)."""
        return self._native.devices


class SignatureRunner:
    """Runs one signature def of a model by input and output names (``get_signature_runner``)."""

    def __init__(self, interpreter: Interpreter, signature_key: str) -> None:
        for key, subgraph, inputs, outputs in interpreter._native.signatures():
            if key == signature_key:
                break
        else:
            raise ValueError(f'Invalid signature_key provided: "{signature_key}".')
        if subgraph != 0:
            raise ValueError(
                f'signature "{signature_key}" runs subgraph {subgraph}; this runtime runs the main subgraph (0) only'
            )
        self._interpreter = interpreter
        self._inputs = dict(inputs)
        self._outputs = dict(outputs)

    def __call__(self, **kwargs: Any) -> Dict[str, np.ndarray]:
        if len(kwargs) != len(self._inputs):
            raise ValueError(
                "Invalid number of inputs provided for running a SignatureDef, "
                f"expected {len(self._inputs)} vs provided {len(kwargs)}"
            )
        for name, value in kwargs.items():
            if name not in self._inputs:
                raise ValueError(f"Invalid Input name ({name}) for SignatureDef")
            self._interpreter.set_tensor(self._inputs[name], value)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(t) for name, t in self._outputs.items()}

    def get_input_details(self) -> Dict[str, Dict[str, Any]]:
        """Details of the inputs, by signature name."""
        return {name: _details(self._interpreter._native, t) for name, t in self._inputs.items()}

    def get_output_details(self) -> Dict[str, Dict[str, Any]]:
        """Details of the outputs, by signature name."""
        return {name: _details(self._interpreter._native, t) for name, t in self._outputs.items()}


def read_label_file(file_path: str) -> Dict[int, str]:
    """Reads labels, one per line, optionally ``<id> <label>`` or ``<id>: <label>``; as pycoral's."""
    from .dataset import read_label_file as read

    return read(file_path)


# pycoral's helpers, as edgetpu.utils and edgetpu.adapters (imported last: they use the above).
from . import adapters, utils  # noqa: E402,F401
