"""The circle-packing evaluator: runs the candidate's ``construct_packing()`` and checks its answer.

It runs inside the sandbox (llmopt.programs) and receives a ``Candidate``; the candidate's function
runs in a process of its own (``candidate.run``), so nothing the candidate does can reach these
checks. Every check is exact arithmetic on float64 with one stated tolerance (``tolerance``): a
circle may cross a wall, or overlap another, by at most ``tolerance``. An invalid answer scores 0
with ONE line naming the first check it fails, so the model learns why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from llmopt.programs.candidate import one_line

#: AlphaEvolve's packing of 26 circles: its paper (arXiv 2506.13131, Appendix B.12) reports 2.635 (the
#: previous best 2.634); the construction in its notebook (google-deepmind/alphaevolve_results) sums to 2.63586.
BEST_KNOWN = 2.63586
#: seconds a cheap first stage (``quick``) allows ``construct_packing``
QUICK_TIMEOUT_S = 5.0

Verdict = dict[str, Any]


def evaluate(candidate: Any, n: int = 26, tolerance: float = 1e-9) -> Verdict:
    """Score = the sum of the radii of a valid packing of ``n`` circles in the unit square, else 0."""
    parsed = _packing(candidate, n)
    if isinstance(parsed, str):
        return _invalid(parsed)
    centers, radii = parsed
    violation = first_violation(centers, radii, tolerance)
    if violation is not None:
        return _invalid(violation)
    total = float(radii.sum())
    slack = tightest_slack(centers, radii)
    return {"score": total,
            "feedback": f"valid packing of {n} circles: sum of radii {total:.6f} (best known {BEST_KNOWN}); "
                        f"tightest constraint slack {slack:.3g}",
            "metrics": {"valid": True, "circles": n, "sum_radii": total, "min_radius": float(radii.min()),
                        "max_radius": float(radii.max()), "tightest_slack": slack}}


def quick(candidate: Any, n: int = 26, tolerance: float = 1e-9) -> Verdict:
    """A cheap first stage for cascades: ``construct_packing`` gets ``QUICK_TIMEOUT_S`` seconds;
    wrong shapes or non-finite numbers score 0; otherwise the score is the sum of the radii of the
    circles that break no constraint themselves (positive, inside the square, overlapping no other
    circle). For a valid packing that equals ``evaluate``'s score; for an invalid one it is partial
    credit, which only a threshold should use (the full evaluation scores it 0)."""
    parsed = _packing(candidate, n, timeout=QUICK_TIMEOUT_S)
    if isinstance(parsed, str):
        return _invalid(parsed)
    centers, radii = parsed
    good = _clean_circles(centers, radii, tolerance)
    total = float(radii[good].sum())
    return {"score": total, "feedback": f"{int(good.sum())} of {n} circles break no constraint; "
                                        f"their radii sum to {total:.6f}",
            "metrics": {"clean_circles": int(good.sum()), "clean_sum_radii": total}}


def _packing(candidate: Any, n: int, timeout: float | None = None) -> tuple[np.ndarray, np.ndarray] | str:
    """The candidate's packing as arrays, or the one line saying why there is none."""
    result = _run(candidate, timeout)
    return result if isinstance(result, str) else parse_packing(result, n)


def _run(candidate: Any, timeout: float | None = None) -> object:
    """The candidate's answer, or the one line saying why there is none. ``Candidate.run`` raises
    ``CandidateError`` for whatever the candidate does (raises, times out, dies, returns non-JSON);
    any exception is caught here, so a candidate loaded in-process (``Candidate.load``) or a test's
    stand-in is reported the same way."""
    try:
        return candidate.run("construct_packing", timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - everything the candidate does is feedback, not a crash
        return f"construct_packing failed: {one_line(exc)}"



def _invalid(reason: str) -> Verdict:
    return {"score": 0.0, "feedback": reason, "metrics": {"valid": False}}


def parse_packing(result: object, n: int) -> tuple[np.ndarray, np.ndarray] | str:
    """(centers n x 2, radii n) as float64 arrays, or one line saying what is wrong with the shape."""
    if not isinstance(result, (list, tuple)) or len(result) != 2:
        return f"construct_packing must return (centers, radii); it returned {_kind(result)}"
    centers = _floats(result[0])
    radii = _floats(result[1])
    if centers is None:
        return "centers are not a list of (x, y) numbers"
    if radii is None:
        return "radii are not a list of numbers"
    if centers.shape != (n, 2):
        return f"centers have shape {centers.shape}, expected ({n}, 2)"
    if radii.shape != (n,):
        count = f"{radii.shape[0]} radii" if radii.ndim == 1 else f"radii of shape {radii.shape}"
        return f"returned {count}, expected {n}"
    bad = np.flatnonzero(~np.isfinite(centers).all(axis=1))
    if bad.size:
        return f"center of circle {bad[0]} is not finite: {centers[bad[0]].tolist()}"
    bad = np.flatnonzero(~np.isfinite(radii))
    if bad.size:
        return f"radius of circle {bad[0]} is not finite: {radii[bad[0]]}"
    return centers, radii


def _floats(value: object) -> np.ndarray | None:
    if isinstance(value, (str, bytes, Mapping)):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _kind(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return f"a sequence of {len(value)} items"
    return f"a {type(value).__name__}"


def first_violation(centers: np.ndarray, radii: np.ndarray, tolerance: float) -> str | None:
    """The first failed check, in order: radii > 0, containment, non-overlap (the worst pair)."""
    bad = np.flatnonzero(radii <= 0)
    if bad.size:
        return f"circle {bad[0]} has radius {radii[bad[0]]:.6g}; every radius must be > 0"
    out = _wall_excess(centers, radii)
    worst = int(np.argmax(out))
    if out[worst] > tolerance:
        return (f"circle {worst} sticks out of the square by {out[worst]:.6g} (center "
                f"({centers[worst, 0]:.6g}, {centers[worst, 1]:.6g}), radius {radii[worst]:.6g})")
    overlap = _overlaps(centers, radii)
    i, j = np.unravel_index(int(np.argmax(overlap)), overlap.shape)
    if overlap[i, j] > tolerance:
        pairs = int((np.triu(overlap, 1) > tolerance).sum())
        more = f" ({pairs} overlapping pairs)" if pairs > 1 else ""
        return f"circles {min(i, j)} and {max(i, j)} overlap by {overlap[i, j]:.6g}{more}"
    return None


def _wall_excess(centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """How far each circle crosses a wall of the unit square (<= 0 when inside)."""
    low = radii[:, None] - centers
    high = centers + radii[:, None] - 1.0
    return np.maximum(low, high).max(axis=1)


def _overlaps(centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """r_i + r_j - |c_i - c_j| for every pair (> 0: they overlap); the diagonal is -inf."""
    delta = centers[:, None, :] - centers[None, :, :]
    distance = np.hypot(delta[..., 0], delta[..., 1])
    overlap = radii[:, None] + radii[None, :] - distance
    np.fill_diagonal(overlap, -np.inf)
    return overlap


def _clean_circles(centers: np.ndarray, radii: np.ndarray, tolerance: float) -> np.ndarray:
    overlap = _overlaps(centers, radii)
    return (radii > 0) & (_wall_excess(centers, radii) <= tolerance) & (overlap.max(axis=1) <= tolerance)


def tightest_slack(centers: np.ndarray, radii: np.ndarray) -> float:
    """The smallest distance by which a constraint holds (negative: violated within the tolerance)."""
    slack = min(-float(_wall_excess(centers, radii).max()), -float(_overlaps(centers, radii).max()))
    return slack if math.isfinite(slack) else 0.0
