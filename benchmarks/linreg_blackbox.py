"""Linear regression on the paper's seven (w, b) settings: random search, optuna's TPE and CMA-ES,
and OPRO with the embedded model, at equal evaluations.

    python benchmarks/linreg_blackbox.py [--seeds 5] [--steps 50] [--methods random,tpe,cmaes,opro]
                                         [--store linreg-blackbox.db] [--box -50 50]

The paper's Table 2 settings, its protocol (5 starting pairs in [10, 20]^2, 8 proposals a step in one
sampling round, so a repeated pair is a proposal spent, not redrawn; at most 50 steps, stop when
the exact pair is proposed), and one search box that holds all seven
(default [-50, 50]^2) for random search and the classical optimizers. Every run is an ordinary
``llmopt run linreg`` (same store, budgets and defaults as a user's); finished runs in the store
are kept, so an interrupted benchmark continues where it stopped. Prints the table, after checking
the equal budget it claims: every run drew 8 proposals a step for ``--steps`` steps (fewer steps
only if it proposed the exact pair); it exits naming a run that did not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main as llmopt_main  # noqa: E402
from llmopt.experiments.measures import BudgetMismatch, check_proposals_per_step, evals_until  # noqa: E402
from llmopt.experiments.report import format_table  # noqa: E402
from llmopt.store import RunStore  # noqa: E402

#: The paper's Table 2 (w_true, b_true) settings, and its gpt-4 column: mean steps to the exact pair
#: over 5 runs (and the number of unique pairs explored), from arXiv 2309.03409 v3, Table 2.
SETTINGS = ((15, 14), (17, 17), (16, 10), (3, 5), (25, 23), (2, 30), (36, -1))
PAPER_GPT4 = {(15, 14): (4.0, 17.2), (17, 17): (6.0, 26.0), (16, 10): (6.2, 24.2), (3, 5): (12.2, 33.0),
              (25, 23): (12.2, 44.2), (2, 30): (38.0, 99.0), (36, -1): (50.4, 116.4)}
METHODS = {"random": ["--proposer", "random"], "tpe": ["--proposer", "optuna:tpe"],
           "cmaes": ["--proposer", "optuna:cmaes"], "opro": ["--proposer", "llm"]}
#: Proposals a step (``llmopt run``'s default), in one sampling round: the equal budget of every run.
PROPOSALS = 8


def run_name(method: str, w: int, b: int, seed: int) -> str:
    return f"{method}-w{w}-b{b}-seed{seed}"


def run_one(method: str, w: int, b: int, seed: int, steps: int, box: tuple[int, int], store: str) -> None:
    argv = ["run", "linreg", "--w-true", str(w), "--b-true", str(b), "--random-range", str(box[0]), str(box[1]),
            "--seed", str(seed), "--steps", str(steps), "--max-rounds", "1", "--store", store,
            "--name", run_name(method, w, b, seed),
            "--quiet", *METHODS[method]]
    with RunStore(store, readonly=True) as s:
        existing = s.find_run(run_name(method, w, b, seed))
        live = existing is not None and s.is_live(existing.name)
    if existing is not None:
        if existing.status == "finished" or live:  # done, or another process is running it
            return
        argv.append("--resume")
    code = llmopt_main(argv)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")


def outcome(store: RunStore, name: str, w: int, b: int, steps: int | None = None) -> dict[str, Any]:
    """A stored run's steps and evaluations (scored pairs, starts included) to the exact pair, and
    its distinct scored pairs. With ``steps``, first the budget the table claims: every step drew
    :data:`PROPOSALS` proposals, for ``steps`` steps unless the run solved it (BudgetMismatch)."""
    run = store.get_run(name)
    trials = store.trials(run.id)
    exact = f"w={w}, b={b}"
    solved_step = next((t.step for t in trials if t.ok and t.text == exact), None)
    if steps is not None:
        check_proposals_per_step(name, trials, PROPOSALS, steps, solved=solved_step is not None)
    return {"solved_step": solved_step, "solved_eval": evals_until(trials, lambda t: t.text == exact),
            "unique": len({t.key for t in trials if t.ok}), "steps": max((t.step for t in trials), default=0),
            "evals": sum(t.ok for t in trials), "elapsed": run.elapsed_s}


def mean(key: str, runs: list[dict[str, Any]]) -> str:
    return f"{statistics.mean(g[key] for g in runs):.1f}" if runs else "-"


def table(store_path: str, methods: list[str], seeds: int, steps: int | None = None) -> list[list[Any]]:
    rows: list[list[Any]] = [["(w, b)", "method", "solved", "steps to exact pair (mean of solved)",
                              "evaluations to it (mean)", "unique pairs (mean)", "s per run (mean)",
                              "paper gpt-4: steps (unique pairs)"]]
    totals: dict[str, list[dict[str, Any]]] = {}
    with RunStore(store_path, readonly=True) as store:
        for w, b in SETTINGS:
            for method in methods:
                got = [outcome(store, run_name(method, w, b, s), w, b, steps) for s in range(seeds)
                       if (r := store.find_run(run_name(method, w, b, s))) is not None and r.status == "finished"]
                if not got:
                    continue
                solved = [g for g in got if g["solved_step"] is not None]
                paper = PAPER_GPT4[(w, b)]
                rows.append([f"({w}, {b})", method, f"{len(solved)}/{len(got)}", mean("solved_step", solved),
                             mean("solved_eval", solved), mean("unique", got), mean("elapsed", got),
                             f"{paper[0]} ({paper[1]})" if method == methods[0] else ""])
                totals.setdefault(method, []).extend(got)
        for method, got in totals.items():
            solved = [g for g in got if g["solved_step"] is not None]
            rows.append(["all seven", method, f"{len(solved)}/{len(got)}", mean("solved_step", solved),
                         mean("solved_eval", solved), mean("unique", got), mean("elapsed", got), ""])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only-seeds", help="comma-separated seeds to run now (another process may run the others)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--methods", default="random,tpe,cmaes,opro")
    ap.add_argument("--box", type=int, nargs=2, default=(-50, 50), metavar=("LOW", "HIGH"))
    ap.add_argument("--store", default="linreg-blackbox.db")
    ap.add_argument("--table-only", action="store_true", help="print the table of the runs already in the store")
    args = ap.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    RunStore(args.store).close()
    if not args.table_only:
        seeds = [int(s) for s in args.only_seeds.split(",")] if args.only_seeds else range(args.seeds)
        for seed in seeds:  # seed-major: an interrupted benchmark has whole seeds
            for w, b in SETTINGS:
                for method in methods:
                    started = time.perf_counter()
                    run_one(method, w, b, seed, args.steps, tuple(args.box), args.store)
                    print(f"{method} ({w}, {b}) seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    try:
        rows = table(args.store, methods, args.seeds, args.steps)
    except BudgetMismatch as exc:
        raise SystemExit(f"linreg_blackbox: {exc}") from None
    print(format_table(rows))


if __name__ == "__main__":
    main()
