"""``pycoral.utils.edgetpu`` over :mod:`edgetpu.utils`."""

from edgetpu.utils import (  # noqa: F401
    get_runtime_version,
    list_edge_tpus,
    load_edgetpu_delegate,
    make_interpreter,
    run_inference,
)

__all__ = ["get_runtime_version", "list_edge_tpus", "load_edgetpu_delegate", "make_interpreter", "run_inference"]
