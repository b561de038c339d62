"""``tflite_runtime`` over the edgetpu runtime (edgetpu-compat; replaces Google's tflite-runtime)."""

from edgetpu import __version__  # noqa: F401
