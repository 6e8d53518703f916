"""Named, stateless random streams: one seed, many independent generators.

Every random draw in a run comes from ``stream(seed, purpose, ...)``. Because a stream is a
pure function of its names, a resumed run (or another process) draws exactly what the original
drew, without saving any generator state.
"""

from __future__ import annotations

import zlib

import numpy as np


def _word(name: str | int) -> int:
    if isinstance(name, (int, np.integer)):
        if name < 0:
            raise ValueError(f"stream names must be non-negative integers or strings, got {name}")
        return int(name)
    return zlib.crc32(name.encode("utf-8"))


def stream(seed: int, *names: str | int) -> np.random.Generator:
    """A generator determined by ``seed`` and the names (e.g. ``stream(0, "start")``)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(_word(n) for n in names)]))


def derive_seed(seed: int, *names: str | int) -> int:
    """A 31-bit integer seed (for LLM sampling) determined by ``seed`` and the names."""
    state = np.random.SeedSequence([int(seed), *(_word(n) for n in names)]).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)
