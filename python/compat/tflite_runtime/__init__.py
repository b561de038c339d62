"""``tflite_runtime`` over the edgetpu runtime (edgetpu-compat; replaces Google's tflite-runtime)."""

try:
    import edgetpu  # noqa: F401
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "edgetpu-compat forwards to the `edgetpu` package of this repository, which is not installed: "
        "pip install ./python (from a checkout)"
    ) from e

from edgetpu import __version__  # noqa: F401
