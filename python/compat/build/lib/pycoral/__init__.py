"""``pycoral`` over the edgetpu runtime (edgetpu-compat; replaces Google's pycoral)."""
