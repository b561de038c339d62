"""``pycoral.adapters.common`` over :mod:`edgetpu.adapters.common`."""

from edgetpu.adapters.common import *  # noqa: F401,F403
from edgetpu.adapters.common import __all__  # noqa: F401
