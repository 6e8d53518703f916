"""Random search on linear regression: the control every LLM result must beat.

    python benchmarks/linreg_random.py [--seeds 5] [--steps 50] [--store runs.db]

Runs the random proposer through the same loop and store as OPRO (8 proposals per step, the
paper's 5 starting pairs) and prints, per seed, the step at which the exact (w_true, b_true)
pair was first proposed, next to the least-squares baselines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.linear_regression import best_integer_pair, least_squares  # noqa: E402
from llmopt import Budget, Optimizer, RandomProposer, RunStore  # noqa: E402
from llmopt.experiments.report import format_table  # noqa: E402
from problems.linear_regression.problem import LinearRegression  # noqa: E402


def box_summary(steps: list[int | None]) -> str:
    """Seeds' steps to the exact pair (None: never) as the results file states them: the median
    only when every seed solved (a median over the solved ones would flatter the box), and the count."""
    found = [s for s in steps if s is not None]
    median = f"{statistics.median(found):g}" if found and len(found) == len(steps) else "-"
    return f"median {median}; solved {len(found)}/{len(steps)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--store", help="keep the runs in this store (default: a temporary one)")
    ap.add_argument("--boxes", default="10:20,0:30", help="random-search boxes low:high, comma separated")
    args = ap.parse_args()
    store_path = args.store or str(Path(tempfile.mkdtemp()) / "runs.db")
    rows = [["box", "seed", "exact pair at step", "evaluations", "unique pairs", "best loss", "best integer loss",
             "least-squares loss", "stop"]]
    with RunStore(store_path) as store:
        for box in args.boxes.split(","):
            low, high = (int(v) for v in box.split(":"))
            solved = []
            for seed in range(args.seeds):
                problem = LinearRegression(seed=seed, random_range=(low, high))
                result = Optimizer(problem, RandomProposer(), seed=seed, store=store,
                                   budget=Budget(max_steps=args.steps)).run()
                step = result.metrics["exact_pair_step"]
                solved.append(step)
                rows.append([f"[{low},{high}]", seed, "-" if step is None else step, result.evaluations,
                             result.metrics["unique_pairs"], f"{result.best.value:.2f}",
                             f"{best_integer_pair(problem)[1]:.2f}", f"{least_squares(problem).loss:.2f}",
                             result.stop_reason.value])
            rows.append([f"[{low},{high}]", "all", box_summary(solved), "", "", "", "", "", ""])
    print(format_table(rows))
    print(f"\nstore: {store_path}")


if __name__ == "__main__":
    main()
