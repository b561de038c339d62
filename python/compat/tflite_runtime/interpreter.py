"""``tflite_runtime.interpreter``: the interpreter and ``load_delegate`` of the edgetpu runtime."""

import enum

from edgetpu import Delegate, Interpreter, SignatureRunner, load_delegate


class OpResolverType(enum.Enum):
    """TFLite's kernel choice; accepted for compatibility. This runtime's CPU kernels always give
    the reference kernels' bytes."""

    AUTO = 0
    BUILTIN = 1
    BUILTIN_REF = 2
    BUILTIN_WITHOUT_DEFAULT_DELEGATES = 3


__all__ = ["Delegate", "Interpreter", "OpResolverType", "SignatureRunner", "load_delegate"]
