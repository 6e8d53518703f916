"""Baselines for linear regression: the least-squares optimum and the best integer pair.

Random search, the third baseline, runs through the optimizer loop itself
(``llmopt run linreg --proposer random``) so it is recorded and budgeted like an LLM run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmopt.experiments.compare import Reference
from llmopt.experiments.report import format_table
from problems.linear_regression.cli import CLI as ProblemCLI
from problems.linear_regression.problem import LinearRegression, Pair


@dataclass(frozen=True)
class LeastSquares:
    w: float
    b: float
    loss: float


def least_squares(problem: LinearRegression) -> LeastSquares:
    """The real-valued optimum (closed form, via scipy)."""
    from scipy import stats  # here: every llmopt command loads this baseline's entry point

    fit = stats.linregress(problem.x, problem.y)
    w, b = float(fit.slope), float(fit.intercept)
    residual = problem.y - (problem.x * w + b)
    return LeastSquares(w, b, float(residual @ residual))


def best_integer_pair(problem: LinearRegression, radius: int = 3) -> tuple[Pair, float]:
    """The integer pair of least loss.

    For a fixed integer w the loss is a parabola in b, so its best integer b is the floor or the
    ceiling of the real minimiser; moving w by one costs about sum((x - mean x)^2) (~10^4 for 50
    points), far more than rounding b can save, so w within ``radius`` of the optimum suffices.
    """
    fit = least_squares(problem)
    best: tuple[Pair, float] | None = None
    for w in range(math.floor(fit.w) - radius, math.ceil(fit.w) + radius + 1):
        b_real = float((problem.y - w * problem.x).mean())
        for b in (math.floor(b_real), math.ceil(b_real)):
            loss = problem.score((w, b))
            if best is None or loss < best[1]:
                best = ((w, b), loss)
    assert best is not None
    return best


class CLI:
    """``llmopt baselines linreg`` (group ``llmopt.baselines``), and the reference rows of
    ``llmopt compare``'s linear-regression table."""

    HELP = "least squares and the best integer pair of a linear-regression instance"

    @staticmethod
    def add_arguments(p: Any) -> None:
        ProblemCLI.add_arguments(p)
        p.add_argument("--seed", type=int, default=0, help="seed of the instance's noise (default 0)")

    @staticmethod
    def run(args: Any) -> int:
        problem = ProblemCLI.from_args(args)
        rows = [["baseline", "w", "b", "loss"]]
        fit = least_squares(problem)
        pair, loss = best_integer_pair(problem)
        rows += [["least squares (real-valued)", f"{fit.w:.4f}", f"{fit.b:.4f}", f"{fit.loss:.4f}"],
                 ["best integer pair", str(pair[0]), str(pair[1]), f"{loss:.4f}"],
                 ["true pair", str(problem.w_true), str(problem.b_true), f"{problem.loss_at_true_pair:.4f}"]]
        print(format_table(rows))
        return 0

    @staticmethod
    def references(problem: LinearRegression) -> list[Any]:
        """Least squares (real-valued) and the best integer pair: rows of ``llmopt compare``'s table."""
        fit = least_squares(problem)
        pair, loss = best_integer_pair(problem)
        return [Reference("least squares (real-valued w, b)", fit.loss),
                Reference("best integer pair", loss, solution=pair)]
