"""Where the tests find the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """$LLMOPT_DATA, else shared/data beside the repository (where CI puts it)."""
    path = Path(os.environ.get("LLMOPT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (path / "tsplib").is_dir():
        raise RuntimeError(f"test data not found at {path}: set LLMOPT_DATA to the shared data directory")
    return path
