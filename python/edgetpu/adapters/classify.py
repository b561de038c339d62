"""Classification results (pycoral.adapters.classify)."""

from __future__ import annotations

from typing import Any, List, NamedTuple

import numpy as np

__all__ = ["Class", "get_classes", "get_classes_from_scores", "get_scores", "num_classes"]


class Class(NamedTuple):
    """One class of a result: its ``id`` and ``score``."""

    id: int
    score: float


def num_classes(interpreter: Any) -> int:
    """Number of classes of the model's first output."""
    return int(np.prod(interpreter.get_output_details()[0]["shape"]))


def get_scores(interpreter: Any) -> np.ndarray:
    """The first output, flattened and dequantized (float scores)."""
    details = interpreter.get_output_details()[0]
    values = interpreter.tensor(details["index"])().flatten()
    if np.issubdtype(details["dtype"], np.integer):
        scale, zero_point = details["quantization"]
        return scale * (values.astype(np.int64) - zero_point)
    return values


def get_classes_from_scores(
    scores: np.ndarray, top_k: float = float("inf"), score_threshold: float = -float("inf")
) -> List[Class]:
    """The ``top_k`` best classes of ``scores`` with a score of at least ``score_threshold``,
    best first."""
    k = int(min(top_k, len(scores)))
    if k <= 0:
        return []
    best = np.argpartition(scores, -k)[-k:]
    classes = [Class(int(i), scores[i]) for i in best if scores[i] >= score_threshold]
    return sorted(classes, key=lambda c: c.score, reverse=True)


def get_classes(interpreter: Any, top_k: float = float("inf"), score_threshold: float = -float("inf")) -> List[Class]:
    """The model's ``top_k`` best classes scoring at least ``score_threshold``, best first."""
    return get_classes_from_scores(get_scores(interpreter), top_k, score_threshold)
