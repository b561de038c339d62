"""``pycoral`` over the edgetpu runtime (edgetpu-compat; replaces Google's pycoral)."""

try:
    import edgetpu  # noqa: F401
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "edgetpu-compat forwards to the `edgetpu` package of this repository, which is not installed: "
        "pip install ./python (from a checkout)"
    ) from e
