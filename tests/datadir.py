"""Where the tests find the data sets: the package's own resolver (``$LLMOPT_DATA``, else the copy
shipped in problems/data/), so a clone with nothing beside it runs the tests."""

from __future__ import annotations

from pathlib import Path

from problems.data import data_dir as _resolve


def data_dir() -> Path:
    """The directory the runs would read: ``$LLMOPT_DATA``, else the packaged copy."""
    return _resolve()
