"""Runs a model that the Edge TPU compiler split into segments (``--num_segments``), one
interpreter per segment, as a pipeline: each segment runs in its own thread, so while one
segment works on a frame the one before it already works on the next. With each interpreter on
its own Edge TPU, the segments stay resident. The API is pycoral's ``PipelinedModelRunner``
(pycoral 2.x: tensors passed as dicts keyed by tensor name).

Each segment's inputs must be outputs of earlier segments (or, for the first, the model's
inputs), checked by name when the runner is made. ``invoke`` releases the GIL, so the stages
overlap.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["PipelinedModelRunner"]

_END = object()


class _Failed:
    """Carried down the pipeline in place of a result when a segment fails."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Queue:
    """A FIFO whose bound can change while it is used (0: unbounded)."""

    def __init__(self) -> None:
        self._items: Deque[Any] = deque()
        self._max = 0
        self._cond = threading.Condition()

    def set_max(self, size: int) -> None:
        with self._cond:
            self._max = max(0, int(size))
            self._cond.notify_all()

    def put(self, item: Any, force: bool = False) -> None:
        with self._cond:
            while not force and self._max and len(self._items) >= self._max:
                self._cond.wait()
            self._items.append(item)
            self._cond.notify_all()

    def get(self) -> Any:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._cond.notify_all()
            return item


def _names(details: List[Dict[str, Any]]) -> List[str]:
    return [d["name"] for d in details]


def _stage(k: int, it: Any, source: _Queue, sink: _Queue, last: bool) -> None:
    """Segment ``k``'s thread: runs each input through ``it`` until the end marker. A failed
    input is passed on as such (its error for ``pop``); the inputs after it go on."""
    inputs = [(d["index"], d["name"]) for d in it.get_input_details()]
    outputs = [(d["index"], d["name"]) for d in it.get_output_details()]
    while True:
        item = source.get()
        if item is _END or isinstance(item, _Failed):
            sink.put(item, force=True)
            if item is _END:
                return
            continue
        try:
            for index, name in inputs:
                it.set_tensor(index, item[name])
            it.invoke()
            produced = {name: it.get_tensor(index) for index, name in outputs}
        except Exception as e:  # noqa: BLE001 - reported to pop()'s caller
            sink.put(_Failed(f"segment {k}: {e}"), force=True)
            continue
        if last:
            sink.put(produced)
        else:
            item.update(produced)
            sink.put(item, force=True)


class PipelinedModelRunner:
    """Runs the segments of a model in a pipeline, one thread per segment.

    ``interpreters``: one per segment, in order (for example from
    ``edgetpu.utils.make_interpreter(path, device="usb:0")``, one device each).
    """

    def __init__(self, interpreters: Sequence[Any]) -> None:
        self._threads: List[threading.Thread] = []
        if not interpreters:
            raise ValueError("PipelinedModelRunner needs at least one interpreter")
        available = set(_names(interpreters[0].get_input_details()))
        for k, it in enumerate(interpreters):
            missing = [n for n in _names(it.get_input_details()) if n not in available]
            if missing:
                raise ValueError(
                    f"segment {k} takes input {missing[0]!r}, which no earlier segment outputs: "
                    "are these the segments of one model, in order?"
                )
            available.update(_names(it.get_output_details()))
        self._interpreters = list(interpreters)
        first = interpreters[0].get_input_details()
        self._input_types = {d["name"]: np.dtype(d["dtype"]) for d in first}
        self._input_shapes = {d["name"]: tuple(d["shape"]) for d in first}
        self._queues = [_Queue() for _ in range(len(interpreters) + 1)]
        self._closed = False
        self._push_lock = threading.Lock()
        for k, it in enumerate(self._interpreters):
            # The threads hold no reference to the runner, so that dropping it ends them (__del__).
            last = k == len(self._interpreters) - 1
            args = (k, it, self._queues[k], self._queues[k + 1], last)
            t = threading.Thread(target=_stage, args=args, name=f"edgetpu-pipeline-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def set_input_queue_size(self, size: int) -> None:
        """The most inputs waiting for the first segment (0, the default: no limit). ``push``
        blocks while the queue is full."""
        self._queues[0].set_max(size)

    def set_output_queue_size(self, size: int) -> None:
        """The most results waiting for ``pop`` (0, the default: no limit). The last segment
        waits while the queue is full."""
        self._queues[-1].set_max(size)

    def push(self, input_tensors: Dict[str, np.ndarray]) -> None:
        """Queues one set of inputs, keyed by the first segment's input names. An empty dict
        says that no more inputs come: ``pop`` then returns ``None`` once the results before it
        are taken. Pushing after that raises ``RuntimeError``."""
        if not isinstance(input_tensors, dict):
            raise TypeError(
                "push takes a dict of input tensors keyed by name (pycoral 2.x), "
                f"not {type(input_tensors).__name__}"
            )
        with self._push_lock:
            if self._closed:
                raise RuntimeError("push after the end of input (an empty push) was signalled")
            if not input_tensors:
                self._closed = True
                self._queues[0].put(_END, force=True)
                return
            if set(input_tensors) != set(self._input_types):
                raise ValueError(
                    f"expected the inputs {sorted(self._input_types)}, got {sorted(input_tensors)}"
                )
            item = {}
            for name, tensor in input_tensors.items():
                want = self._input_types[name]
                if not isinstance(tensor, np.ndarray) or tensor.dtype != want:
                    raise ValueError(f"input {name!r} must be a numpy array of {want}")
                if tensor.size != int(np.prod(self._input_shapes[name])):
                    raise ValueError(
                        f"input {name!r} has {tensor.size} elements, the model takes shape {self._input_shapes[name]}"
                    )
                item[name] = np.array(tensor, copy=True).reshape(self._input_shapes[name])
            # Queued under the lock, so that no input lands behind the end of input.
            self._queues[0].put(item)

    def pop(self) -> Optional[Dict[str, np.ndarray]]:
        """The next result: the last segment's outputs keyed by name, in push order. Blocks until
        it is ready. ``None`` after the end of input. Raises ``RuntimeError`` naming the
        segment and its error for an input that failed."""
        item = self._queues[-1].get()
        if item is _END:
            # Later pops see the end too.
            self._queues[-1].put(_END, force=True)
            return None
        if isinstance(item, _Failed):
            raise RuntimeError(item.message)
        return item

    def interpreters(self) -> List[Any]:
        """The interpreters, in segment order."""
        return self._interpreters

    def __del__(self) -> None:
        # Stop the threads if the caller did not signal the end; drop unconsumed results.
        if self._threads and not getattr(self, "_closed", True):
            try:
                self.push({})
            except Exception:  # noqa: BLE001 - nothing to report to at this point
                pass
