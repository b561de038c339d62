"""``pycoral.adapters.classify`` over :mod:`edgetpu.adapters.classify`."""

from edgetpu.adapters.classify import *  # noqa: F401,F403
from edgetpu.adapters.classify import __all__  # noqa: F401
