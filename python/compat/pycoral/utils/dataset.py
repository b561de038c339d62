"""``pycoral.utils.dataset`` over :mod:`edgetpu.dataset`."""

from edgetpu.dataset import read_label_file  # noqa: F401

__all__ = ["read_label_file"]
