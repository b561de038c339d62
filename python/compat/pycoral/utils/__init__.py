"""pycoral.utils: ``edgetpu`` and ``dataset``."""
