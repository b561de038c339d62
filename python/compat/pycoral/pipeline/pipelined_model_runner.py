"""``pycoral.pipeline.pipelined_model_runner`` over :mod:`edgetpu.pipeline`."""

from edgetpu.pipeline import PipelinedModelRunner  # noqa: F401

__all__ = ["PipelinedModelRunner"]
