"""The installed plugins: entry points by group, scanned once per ``sys.path``.

Problems, proposers, baselines and commands plug in through entry points. Scanning every installed
distribution's metadata costs about 15 ms, and one ``llmopt run`` parser asks for about ten groups
and names, so a grid of 90 cells spent 15 s scanning the same metadata. The scan is kept per
``sys.path``: a directory added at run time (a plugin's) is scanned afresh; a package installed
into an already-scanned directory by another process is seen by the next process.
"""

from __future__ import annotations

import importlib.metadata
import sys
from functools import lru_cache


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """``group``'s entry points by name (a dict of importlib's, kept for this ``sys.path``)."""
    return dict(_scan(tuple(sys.path), group))


@lru_cache(maxsize=64)
def _scan(path: tuple[str, ...], group: str) -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}
