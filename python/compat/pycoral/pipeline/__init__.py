"""``pycoral.pipeline`` over :mod:`edgetpu.pipeline`."""
