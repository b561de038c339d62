"""Shared helpers of the Python tests: the test data (EDGETPU_TESTDATA, else ../shared/testdata
beside the checkout; missing data fails the tests, it never skips them) and its golden runs."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    root = Path(os.environ.get("EDGETPU_TESTDATA") or CHECKOUT.parent / "shared" / "testdata")
    if not (root / "MANIFEST.md").is_file():
        raise RuntimeError(f"test data not found at {root}: set EDGETPU_TESTDATA to the shared testdata directory")
    return root


@pytest.fixture(scope="session")
def td() -> Path:
    return data_root()


def golden_runs():
    """Every golden run: (model name, tag, parsed JSON), sorted."""
    root = data_root() / "golden"
    runs = [(p.parent.name, p.stem, json.loads(p.read_text())) for p in sorted(root.glob("*/*.json"))]
    assert len(runs) >= 30, f"expected the full set of golden runs under {root}, found {len(runs)}"
    return runs


def read_bin(directory: Path, name: str) -> bytes:
    """A golden .bin file, or its .bin.gz twin."""
    name = name[: -len(".gz")] if name.endswith(".gz") else name
    plain = directory / name
    if plain.is_file():
        return plain.read_bytes()
    return gzip.decompress((directory / f"{name}.gz").read_bytes())


def golden_array(model: str, entry: dict) -> np.ndarray:
    """A golden input or output as an array of its dtype and shape."""
    raw = read_bin(data_root() / "golden" / model, entry["file"])
    return np.frombuffer(raw, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])
