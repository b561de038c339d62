"""pycoral's adapters: model-independent input and output helpers (``common``), classification
(``classify``) and detection (``detect``)."""

from . import classify, common, detect

__all__ = ["classify", "common", "detect"]
