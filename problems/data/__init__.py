"""The data sets of the problems, shipped with the package, and where a run reads them from.

This folder is the package's copy (sources and licences in its README.md): ``gsm8k/``, ``bbh/``
(27 tasks), ``multiarith/``, ``aqua/`` and ``tsplib/`` (eil51, berlin52 with optimal tours).
:func:`data_dir` is the one place that decides which directory a problem reads: an explicit
directory (``--data-dir``) first, then ``$LLMOPT_DATA``, then this packaged copy.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LLMOPT_DATA"


class DataError(ValueError):
    """A data directory or file is missing or malformed; the message names it."""


def packaged() -> Path:
    """The copy of the data installed with the package (this folder)."""
    return Path(__file__).resolve().parent


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``), else ``$LLMOPT_DATA``, else the packaged copy.

    A directory that was given but does not exist is a one-line :class:`DataError` naming it and
    where it came from; an empty ``$LLMOPT_DATA`` counts as unset.
    """
    if explicit is not None:
        given, source = str(explicit), "--data-dir"
    elif os.environ.get(ENV):
        given, source = os.environ[ENV], f"${ENV}"
    else:
        given, source = str(packaged()), "the package's copy"
    out = Path(given)
    if not given or not out.is_dir():
        raise DataError(f"data directory {given or repr(given)} ({source}) does not exist")
    return out


def tsplib_file(name: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """A TSPLIB file: ``name`` itself when it is a file, else ``tsplib/<name>[.tsp]`` of the data directory.

    ``llmopt run tsp --tsplib eil51`` reads the packaged instance; a path that is neither is
    returned unchanged, so the reader's error names it.
    """
    path = Path(name)
    if path.is_file() or path.parent != Path("."):
        return path
    stem = path.name[:-4] if path.name.endswith(".tsp") else path.name
    if not stem:
        return path
    candidate = data_dir(root) / "tsplib" / f"{stem}.tsp"
    return candidate if candidate.is_file() else path
