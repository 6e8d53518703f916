"""OPRO against EvoPrompt's GA and DE (and random) at equal scorer-call budgets, tested on held-out data.

    python benchmarks/evoprompt_grid.py experiments/evoprompt.toml [--seeds 0 1] [--set KEY=VALUE ...]
        [--store evoprompt.db] [--test-examples N] [--no-run] [--markdown]

Runs (or resumes) every cell of the grid with ``llmopt compare``'s machinery, then scores each
run's chosen instruction (the best on validation where the run validated, else the best on
training) on the task's test split with the run's own scorer and the store's reply cache, and
prints one row per problem and configuration: the runs' instructions scored, scorer and optimizer
calls, invalid and duplicate proposals, the mean training accuracy of the new instructions (how
good the proposals were), the best training accuracy and the chosen instruction's test accuracy
(mean and each seed), beside the starting instructions' test accuracy. It first checks the
equal budget it claims (on each problem every run scored the same instructions and made the same
scorer calls) and exits 1 naming the runs that differ. ``--set`` overrides the grid's defaults as in
``llmopt compare`` (e.g. ``--set model="openai/gpt-4o-mini"``); ``--test-examples N`` scores a
seeded sample of N test examples (the same for every instruction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli.compare import assignments  # noqa: E402
from llmopt.cli.run_options import parse_cell  # noqa: E402
from llmopt.experiments.compare import cell_problem, collect  # noqa: E402
from llmopt.experiments.grid import load_grid  # noqa: E402
from llmopt.experiments.measures import BudgetMismatch, check_equal  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.history import Trial  # noqa: E402
from llmopt.llm.usage import Usage  # noqa: E402
from llmopt.store import RunStore  # noqa: E402
from problems.prompt_optimization.cli import sample_examples  # noqa: E402


def chosen(result: Any) -> Trial | None:
    """The run's chosen instruction: the best on validation if it validated, else the best on training."""
    return getattr(result, "chosen", None) or result.best


@dataclass(frozen=True)
class RunNumbers:
    """One run's cells of the table: what it spent and found, and its chosen instruction's test score."""

    seed: int
    best_train: float
    test: float
    scored: int  # instructions scored on training (starts included): the budget
    scorer_calls: int
    optimizer_calls: int
    lost: int  # proposals that were invalid or repeats
    new_mean: float  # mean training accuracy of the instructions the run found (nan: none)


def run_numbers(seed: int, result: Any, test: float) -> RunNumbers:
    """A run's numbers from its result as read back from the store (``test``: its pick's test accuracy)."""
    roles = result.usage_by_role
    new = [float(t.value) for t in result.history if t.ok and t.step > 0]
    return RunNumbers(seed=seed, best_train=float(result.best.value), test=test, scored=result.evaluations,
                      scorer_calls=roles.get("scorer", Usage()).calls,
                      optimizer_calls=roles.get("optimizer", Usage()).calls,
                      lost=result.counts["INVALID"] + result.counts["DUPLICATE"],
                      new_mean=statistics.fmean(new) if new else float("nan"))


def check_budgets(by_row: dict[tuple[str, str], list[RunNumbers]]) -> None:
    """The grid's claim: on each problem every run (every configuration and seed) scored the same
    instructions and made the same scorer calls. BudgetMismatch names the runs that differ."""
    for problem in dict.fromkeys(p for p, _ in by_row):
        runs = {f"{p}/{c}/seed{r.seed}": r for (p, c), rs in by_row.items() if p == problem for r in rs}
        check_equal(f"instructions scored on {problem}", {k: r.scored for k, r in runs.items()})
        check_equal(f"scorer calls on {problem}", {k: r.scorer_calls for k, r in runs.items()})


def table_rows(by_row: dict[tuple[str, str], list[RunNumbers]],
               starts: dict[str, list[tuple[str, float]]]) -> list[list[Any]]:
    """The published table: per problem and configuration, means over seeds (and each seed's test
    score, in seed order), then each starting instruction's test accuracy."""
    rows: list[list[Any]] = [["problem", "config", "runs", "instructions scored", "scorer calls / run",
                              "optimizer calls / run", "invalid / duplicate", "new instructions' train % (mean)",
                              "best train % (mean)", "chosen test % (mean)", "per seed"]]
    mean = statistics.fmean
    for (plabel, config), unsorted in by_row.items():
        runs = sorted(unsorted, key=lambda r: r.seed)
        rows.append([plabel, config, len(runs), f"{mean(r.scored for r in runs):.0f}",
                     f"{mean(r.scorer_calls for r in runs):.0f}", f"{mean(r.optimizer_calls for r in runs):.0f}",
                     f"{mean(r.lost for r in runs):.0f}", f"{mean(r.new_mean for r in runs):.1f}",
                     f"{mean(r.best_train for r in runs):.1f}", f"{mean(r.test for r in runs):.1f}",
                     " ".join(f"{r.test:.1f}" for r in runs)])
    for plabel, scored in starts.items():
        for text, acc in scored:
            rows.append([plabel, f"start: {text!r}", "-", "-", "-", "-", "-", "-", "-", f"{acc:.1f}", ""])
    return rows


def score_outcomes(collected: Any, store_path: str, test_examples: int | None
                   ) -> tuple[dict[tuple[str, str], list[RunNumbers]], dict[str, list[tuple[str, float]]], Usage]:
    """Each run's numbers, its chosen instruction scored on test with its own scorer (and the
    store's reply cache), and each problem's starting instructions scored the same way."""
    test_calls = Usage()
    by_row: dict[tuple[str, str], list[RunNumbers]] = {}
    starts: dict[str, list[tuple[str, float]]] = {}
    with RunStore(store_path) as store:
        cache = store.cache()
        for outcome in collected.outcomes:
            result = outcome.result
            problem = outcome.live or cell_problem(collected.grid, outcome.cell, parse_cell)  # read back: rebuilt to score
            if result is None or result.best is None:
                continue
            problem.scorer.llm = problem.scorer.llm.with_cache(cache)  # collect()'s store is closed: this one
            examples = sample_examples(problem.task.test, test_examples, 0)

            def test_score(text: str) -> float:
                nonlocal test_calls
                scored = problem.scorer.score(text, examples, problem.task.kind)
                for c in scored.completions:
                    test_calls = test_calls.add(c)
                return 100.0 * scored.accuracy

            pick = chosen(result)
            assert pick is not None
            by_row.setdefault((outcome.cell.problem, outcome.cell.config), []).append(
                run_numbers(outcome.cell.seed, result, test_score(pick.text)))
            if outcome.cell.problem not in starts:
                starts[outcome.cell.problem] = [(text, test_score(text)) for text in problem.initial]
    return by_row, starts, test_calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid")
    ap.add_argument("--seeds", type=int, nargs="+", help="override the grid's seeds")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a grid default")
    ap.add_argument("--store", help="run store (default: the grid's)")
    ap.add_argument("--test-examples", type=int, help="score on a seeded sample of this many test examples")
    ap.add_argument("--no-run", action="store_true", help="only read the store (and score on test)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    settings = {k.replace("_", "-"): v for k, v in assignments(args.set, "--set").items()}
    grid = load_grid(args.grid).with_overrides(seeds=tuple(args.seeds) if args.seeds else None, defaults=settings)
    store_path = args.store or grid.store or "runs.db"
    collected = collect(grid, store_path, run=not args.no_run, parse=parse_cell, with_references=False, progress=False)
    by_row, starts, test_calls = score_outcomes(collected, store_path, args.test_examples)
    try:
        check_budgets(by_row)
    except BudgetMismatch as exc:
        print(f"evoprompt_grid: {exc}", file=sys.stderr)
        return 1
    print((markdown_table if args.markdown else format_table)(table_rows(by_row, starts)))
    print(f"\ntest scoring: {test_calls.calls} scorer calls ({test_calls.cache_hits} from the cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
