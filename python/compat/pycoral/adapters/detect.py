"""``pycoral.adapters.detect`` over :mod:`edgetpu.adapters.detect`."""

from edgetpu.adapters.detect import *  # noqa: F401,F403
from edgetpu.adapters.detect import __all__  # noqa: F401
