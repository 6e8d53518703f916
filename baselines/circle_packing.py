"""``llmopt baselines circle-packing``: scipy's SLSQP from random starts, the classical reference.

Each start draws the centers uniformly in the unit square (radii: the largest feasible ones for
those centers) and runs SLSQP on max sum(r) subject to containment (linear) and non-overlap
(|c_i - c_j|^2 >= (r_i + r_j)^2, with its exact Jacobian). SLSQP's answer may break a constraint by
its own tolerance, so the radii are repaired (only shrunk) until the evaluator's exact check, with
the evaluator's tolerance, accepts them: the value reported is one the evaluator would score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmopt.experiments.compare import Reference
from llmopt.experiments.report import format_table
from problems.circle_packing.evaluator import BEST_KNOWN, first_violation

#: where the best known value comes from (the table's last rows say which number is whose)
SOURCES = (("AlphaEvolve (best known)", BEST_KNOWN,
            "Novikov et al. 2025, arXiv 2506.13131 Appendix B.12 (2.635, rounded), the construction in "
            "https://github.com/google-deepmind/alphaevolve_results mathematical_results.ipynb (2.63586)"),
           ("OpenEvolve (reported)", 2.634292,
            "https://github.com/algorithmicsuperintelligence/openevolve/tree/main/examples/circle_packing README"),
           ("best before AlphaEvolve", 2.634, "as AlphaEvolve's Appendix B.12 states it"))


@dataclass(frozen=True)
class Budget:
    """What one SLSQP reference costs: ``starts`` random starts of at most ``max_iter`` iterations."""

    starts: int = 20
    max_iter: int = 100
    seed: int = 0

    def describe(self) -> str:
        return f"{self.starts} starts x {self.max_iter} iterations, seed {self.seed}"


@dataclass(frozen=True)
class Packing:
    value: float           # sum of radii of the best valid packing (0.0 when no start gave one)
    seconds: float
    centers: np.ndarray
    radii: np.ndarray
    valid_starts: int      # starts whose repaired answer the evaluator accepts
    converged: int         # starts where SLSQP itself reported success (the others stopped at its
                           # iteration limit or on "Inequality constraints incompatible")


def slsqp_packing(n: int = 26, budget: Budget = Budget(), tolerance: float = 1e-9) -> Packing:
    """The best of ``budget.starts`` SLSQP runs from random starts (deterministic for one seed)."""
    rng = np.random.default_rng(budget.seed)
    began = time.perf_counter()
    best: tuple[float, np.ndarray, np.ndarray] = (0.0, np.zeros((n, 2)), np.zeros(n))
    valid = converged = 0
    for _ in range(budget.starts):
        centers, radii, success = _one_start(rng.uniform(0.0, 1.0, size=(n, 2)), budget.max_iter)
        converged += success
        radii = repair(centers, radii)
        if first_violation(centers, radii, tolerance) is not None:
            continue
        valid += 1
        if radii.sum() > best[0]:
            best = (float(radii.sum()), centers, radii)
    return Packing(best[0], time.perf_counter() - began, best[1], best[2], valid, converged)


def _one_start(centers: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray, bool]:
    from scipy.optimize import minimize  # here: every llmopt command loads this baseline's entry point

    n = len(centers)
    start = np.concatenate([centers[:, 0], centers[:, 1], repair(centers, np.full(n, 0.5))])
    i, j = np.triu_indices(n, 1)
    walls, offset = _walls_matrix(n), _walls_offset(n)
    constraints = [{"type": "ineq", "fun": lambda z: walls @ z + offset, "jac": lambda z: walls},
                   {"type": "ineq", "fun": lambda z: _gaps(z, n, i, j), "jac": lambda z: _gaps_jacobian(z, n, i, j)}]
    bounds = [(0.0, 1.0)] * (2 * n) + [(0.0, 0.5)] * n
    done = minimize(lambda z: -z[2 * n:].sum(), start, jac=lambda z: np.r_[np.zeros(2 * n), -np.ones(n)],
                    method="SLSQP", bounds=bounds, constraints=constraints,
                    options={"maxiter": max_iter, "ftol": 1e-12})
    z = done.x
    return np.column_stack([z[:n], z[n:2 * n]]), np.maximum(z[2 * n:], 0.0), bool(done.success)


def _walls_matrix(n: int) -> np.ndarray:
    """Rows of x - r >= 0, 1 - x - r >= 0, y - r >= 0, 1 - y - r >= 0 over z = (x, y, r)."""
    eye = np.eye(n)
    zero = np.zeros((n, n))
    return np.block([[eye, zero, -eye], [-eye, zero, -eye], [zero, eye, -eye], [zero, -eye, -eye]])


def _walls_offset(n: int) -> np.ndarray:
    return np.concatenate([np.zeros(n), np.ones(n), np.zeros(n), np.ones(n)])


def _gaps(z: np.ndarray, n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    x, y, r = z[:n], z[n:2 * n], z[2 * n:]
    return (x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 - (r[i] + r[j]) ** 2


def _gaps_jacobian(z: np.ndarray, n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    x, y, r = z[:n], z[n:2 * n], z[2 * n:]
    rows = np.arange(len(i))
    jac = np.zeros((len(i), 3 * n))
    dx, dy, sr = 2 * (x[i] - x[j]), 2 * (y[i] - y[j]), -2 * (r[i] + r[j])
    jac[rows, i], jac[rows, j] = dx, -dx
    jac[rows, n + i], jac[rows, n + j] = dy, -dy
    jac[rows, 2 * n + i] = sr
    jac[rows, 2 * n + j] = sr
    return jac


def repair(centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """The radii, shrunk until they fit: capped by the walls, then every overlapping pair scaled
    down in proportion until it touches (radii only shrink, so a pair fixed earlier stays fixed)."""
    walls = np.min(np.concatenate([centers, 1.0 - centers], axis=1), axis=1)
    out = np.minimum(radii, walls).astype(np.float64)
    for a in range(len(out)):
        for b in range(a + 1, len(out)):
            distance = float(np.hypot(*(centers[a] - centers[b])))
            if out[a] + out[b] > distance:
                scale = distance / (out[a] + out[b]) * (1 - 1e-12)
                out[a] *= scale
                out[b] *= scale
    return np.maximum(out, 0.0)


def _budgets(args: Any) -> list[Budget]:
    return [Budget(starts, args.max_iter, args.seed) for starts in args.starts]


class CLI:
    """``llmopt baselines circle-packing`` (group ``llmopt.baselines``), and the reference rows of
    ``llmopt compare``'s circle-packing table."""

    HELP = "scipy SLSQP from random starts on 26 circles in the unit square, beside the best known sums"

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.add_argument("--starts", type=int, nargs="+", default=[Budget.starts],
                       help=f"random starts, one table row per number (default {Budget.starts})")
        p.add_argument("--max-iter", type=int, default=Budget.max_iter,
                       help=f"SLSQP iterations per start (default {Budget.max_iter})")
        p.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
        p.add_argument("--circles", type=int, default=26, help="number of circles (default 26)")

    @staticmethod
    def run(args: Any) -> int:
        if min(args.starts) < 1 or args.max_iter < 1 or args.circles < 1:
            print("error: --starts, --max-iter and --circles must be at least 1")
            return 2
        rows = [["method", "sum of radii", "seconds", "budget"]]
        for budget in _budgets(args):
            found = slsqp_packing(args.circles, budget)
            rows.append(["SLSQP, random starts", f"{found.value:.6f}", f"{found.seconds:.1f}",
                         f"{budget.describe()} ({found.converged} converged)"])
        if args.circles == 26:
            rows += [[name, f"{value:g}", "-", "-"] for name, value, _ in SOURCES]
        print(format_table(rows))
        if args.circles == 26:
            for name, _, source in SOURCES:
                print(f"{name}: {source}")
        return 0

    @staticmethod
    def references(problem: Any) -> list[Any]:
        """SLSQP at the default budget and the best known sum: rows of ``llmopt compare``'s table."""
        found = slsqp_packing(26, Budget())
        return [Reference(f"SLSQP ({Budget().describe()})", found.value, found.seconds,
                          {"centers": found.centers.tolist(), "radii": found.radii.tolist()}),
                Reference("best known (AlphaEvolve)", BEST_KNOWN)]
