"""The cap-set evaluator: runs the candidate's ``solve(n)`` and verifies the set it returns.

The candidate's greedy skeleton is not trusted: whatever ``solve`` returns is checked here from
scratch (every vector in {0, 1, 2}^n, all distinct, no three on a line), so a candidate that edits
the skeleton, or returns a set it did not build, scores only what it really has. The score is the
size of a valid cap set; an invalid answer scores 0 with ONE line saying why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmopt.programs.candidate import one_line

#: FunSearch (Romera-Paredes et al., Nature 2023) found a cap set of size 512 in dimension 8
FUNSEARCH_N8 = 512
#: the largest cap set in dimension 8 known before FunSearch (reported in the same paper)
PREVIOUS_BEST_N8 = 496

Verdict = dict[str, Any]


def evaluate(candidate: Any, n: int = 8) -> Verdict:
    """Score = the size of the cap set ``solve(n)`` returns, once verified; 0 when it is not one."""
    try:
        result = candidate.run("solve", n)
    except Exception as exc:  # noqa: BLE001 - CandidateError (or a stand-in's error) is feedback
        return _invalid(f"solve({n}) failed: {one_line(exc)}")
    vectors = parse_vectors(result, n)
    if isinstance(vectors, str):
        return _invalid(vectors)
    line = find_line(vectors)
    if line is not None:
        i, j, k = line
        return _invalid(f"vectors {i}, {j} and {k} are on a line: {_show(vectors[i])}, {_show(vectors[j])}, "
                        f"{_show(vectors[k])} sum to 0 mod 3")
    size = len(vectors)
    return {"score": float(size),
            "feedback": f"valid cap set of size {size} in dimension {n}"
                        + (f" (FunSearch found {FUNSEARCH_N8}; the best known before it was {PREVIOUS_BEST_N8})"
                           if n == 8 else ""),
            "metrics": {"valid": True, "size": size, "dimension": n}}



def _invalid(reason: str) -> Verdict:
    return {"score": 0.0, "feedback": reason, "metrics": {"valid": False}}


def _show(vector: np.ndarray) -> str:
    return "(" + ",".join(str(int(v)) for v in vector) + ")"


def parse_vectors(result: object, n: int) -> np.ndarray | str:
    """The vectors as an m x n int64 array, or one line saying why they are not distinct vectors
    of {0, 1, 2}^n. Entries must be the integers 0, 1, 2 themselves (not 1.0, not True)."""
    if not isinstance(result, (list, tuple)):
        return f"solve({n}) must return a list of vectors; it returned a {type(result).__name__}"
    if len(result) > 3 ** n:
        return f"solve({n}) returned {len(result)} vectors; there are only {3 ** n} in {{0, 1, 2}}^{n}"
    for index, vector in enumerate(result):
        if not isinstance(vector, (list, tuple)) or len(vector) != n:
            return f"vector {index} is not a sequence of {n} values: {str(vector)[:80]}"
        bad = [v for v in vector if type(v) is not int or v not in (0, 1, 2)]
        if bad:
            return f"vector {index} has {bad[0]!r}; every entry must be 0, 1 or 2"
    vectors = np.array(result, dtype=np.int64).reshape(len(result), n)
    codes = vectors @ _powers(n)
    unique, counts = np.unique(codes, return_counts=True)
    if len(unique) < len(codes):
        code = unique[np.argmax(counts > 1)]
        twice = np.flatnonzero(codes == code)[:2]
        return f"vectors {twice[0]} and {twice[1]} are the same: {_show(vectors[twice[0]])}"
    return vectors


def _powers(n: int) -> np.ndarray:
    return 3 ** np.arange(n - 1, -1, -1, dtype=np.int64)


def find_line(vectors: np.ndarray) -> tuple[int, int, int] | None:
    """Indices (i < j, k) of three distinct vectors on a line, the first in row order, else None.

    For distinct a and b the one point completing their line is c = -(a + b) mod 3 (c differs from
    both); a set of distinct vectors is a cap set iff no such c is in the set. One row at a time:
    memory O(m n), time O(m^2 (n + log m)), whatever n is.
    """
    m, n = vectors.shape
    if m < 3:
        return None
    powers = _powers(n)
    codes = vectors @ powers
    order = np.argsort(codes)
    ranked = codes[order]
    for i in range(m - 1):
        third = ((-(vectors[i] + vectors[i + 1:])) % 3) @ powers
        slot = np.minimum(np.searchsorted(ranked, third), m - 1)
        hits = np.flatnonzero(ranked[slot] == third)
        if hits.size:
            return i, i + 1 + int(hits[0]), int(order[slot[hits[0]]])
    return None
