"""OPRO against EvoPrompt's GA and DE (and random) at equal scorer-call budgets, tested on held-out data.

    python benchmarks/evoprompt_grid.py experiments/evoprompt.toml [--seeds 0 1] [--set KEY=VALUE ...]
        [--store evoprompt.db] [--test-examples N] [--no-run] [--markdown]

Runs (or resumes) every cell of the grid with ``llmopt compare``'s machinery, then scores each
run's chosen instruction (the best on validation where the run validated, else the best on
training) on the task's test split with the run's own scorer and the store's reply cache, and
prints one row per problem and configuration: the runs' instructions scored, scorer and optimizer
calls, invalid and duplicate proposals, the mean training accuracy of the new instructions (how
good the proposals were), the best training accuracy and the chosen instruction's test accuracy
(mean and each seed), beside the starting instructions' test accuracy. ``--set`` overrides the grid's defaults as in
``llmopt compare`` (e.g. ``--set model="openai/gpt-4o-mini"``); ``--test-examples N`` scores a
seeded sample of N test examples (the same for every instruction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli.compare import assignments  # noqa: E402
from llmopt.experiments.compare import collect  # noqa: E402
from llmopt.experiments.grid import load_grid  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.history import Trial  # noqa: E402
from llmopt.llm.usage import Usage  # noqa: E402
from llmopt.store import RunStore  # noqa: E402
from problems.prompt_optimization.cli import sample_examples  # noqa: E402


def chosen(result: Any) -> Trial | None:
    """The run's chosen instruction: the best on validation if it validated, else the best on training."""
    return getattr(result, "chosen", None) or result.best


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
    collected = collect(grid, store_path, run=not args.no_run, with_references=False, progress=False)
    rows: list[list[Any]] = [["problem", "config", "runs", "instructions scored", "scorer calls / run",
                              "optimizer calls / run", "invalid / duplicate", "new instructions' train % (mean)",
                              "best train % (mean)", "chosen test % (mean)", "per seed"]]
    test_calls = Usage()
    with RunStore(store_path) as store:
        cache = store.cache()
        by_row: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        starts: dict[str, list[tuple[str, float]]] = {}
        for outcome in collected.outcomes:
            result, problem = outcome.result, outcome.problem
            if result is None or result.best is None:
                continue
            problem.scorer.llm = problem.scorer.llm.with_cache(cache)  # collect()'s store is closed: this one
            examples = sample_examples(problem.task.test, args.test_examples, 0)

            def test_score(text: str) -> float:
                nonlocal test_calls
                scored = problem.scorer.score(text, examples, problem.task.kind)
                for c in scored.completions:
                    test_calls = test_calls.add(c)
                return 100.0 * scored.accuracy

            pick = chosen(result)
            assert pick is not None
            roles = result.usage_by_role
            new = [float(t.value) for t in result.history if t.ok and t.step > 0]  # type: ignore[arg-type]
            lost = result.counts["INVALID"] + result.counts["DUPLICATE"]
            by_row.setdefault((outcome.cell.problem, outcome.cell.config), []).append(
                (outcome.cell.seed, float(result.best.value), test_score(pick.text), result.evaluations,
                 roles.get("scorer", Usage()).calls, roles.get("optimizer", Usage()).calls, lost,
                 statistics.fmean(new) if new else float("nan")))
            if outcome.cell.problem not in starts:
                starts[outcome.cell.problem] = [(text, test_score(text)) for text in problem.initial]
        for (plabel, config), runs in by_row.items():
            runs.sort()
            mean = statistics.fmean
            rows.append([plabel, config, len(runs), f"{mean(r[3] for r in runs):.0f}", f"{mean(r[4] for r in runs):.0f}",
                         f"{mean(r[5] for r in runs):.0f}", f"{mean(r[6] for r in runs):.0f}",
                         f"{mean(r[7] for r in runs):.1f}", f"{mean(r[1] for r in runs):.1f}",
                         f"{mean(r[2] for r in runs):.1f}", " ".join(f"{r[2]:.1f}" for r in runs)])
        for plabel, scored in starts.items():
            for text, acc in scored:
                rows.append([plabel, f"start: {text!r}", "-", "-", "-", "-", "-", "-", "-", f"{acc:.1f}", ""])
    print((markdown_table if args.markdown else format_table)(rows))
    print(f"\ntest scoring: {test_calls.calls} scorer calls ({test_calls.cache_hits} from the cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
