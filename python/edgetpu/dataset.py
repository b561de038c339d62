"""Label files (pycoral.utils.dataset)."""

from __future__ import annotations

import re
from typing import Dict

_ID_AND_LABEL = re.compile(r"[:\s]+")


def read_label_file(file_path: str) -> Dict[int, str]:
    """Reads a label file into ``{id: label}``.

    A line is either ``<id> <label>`` / ``<id>:<label>`` (the id given), or just a label (its id is
    the line number, counting from 0).
    """
    labels: Dict[int, str] = {}
    with open(file_path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f):
            text = line.strip()
            parts = _ID_AND_LABEL.split(text, maxsplit=1)
            if len(parts) == 2 and parts[0].isdigit():
                labels[int(parts[0])] = parts[1].strip()
            else:
                labels[line_number] = text
    return labels
