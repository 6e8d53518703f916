"""Where a run reads the files its options name: relative to the grid file that set them.

A grid file (``llmopt compare myproj/grid.toml``) is read as every tool reads its configuration:
its relative paths (``schema = "space.json"``, ``objective = "myobj:loss"``, ``store = "runs.db"``)
mean the files beside it, whatever the current directory. The grid puts its directory in a run's
arguments (``args.base_dir``); from the command line there is none, and paths are the current
directory's, as the shell's.
"""

from __future__ import annotations

import os
from typing import Any


def base_dir(args: Any) -> str | None:
    """The directory a run's relative paths are read from: its grid file's, or None (the current one)."""
    return getattr(args, "base_dir", None)


def beside(base: str | None, value: str) -> str:
    """``value`` read from ``base``: the path beside the grid file when there is something there, else
    ``value`` as given (a packaged name such as ``--tsplib eil51``, or a path the error will name)."""
    if base is None or not value or os.path.isabs(value):
        return value
    candidate = os.path.join(base, value)
    return candidate if os.path.exists(candidate) else value
