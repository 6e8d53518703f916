"""Racing the scorer: scorer calls per step with and without ``--race``, and whether the race keeps
the instruction that full scoring would have kept.

    python benchmarks/race_bbh.py [--task bbh/boolean_expressions] [--max-train 64] [--steps 6]
        [--proposals 8] [--seeds 0 1] [--race 1 3] [--real 1] [--store race-bbh.db] [--markdown]

For each seed: one ordinary ``llmopt run prompt`` scored in full (every instruction on every
training example; embedded scorer and optimizer unless ``--scorer``/``--optimizer`` say
otherwise). Then, **on the same instructions**, each step is raced again from the store's cache
(no new calls): the bar is the K-th best training accuracy of the steps before it, as
``--race K`` sets it, and :meth:`PromptOptimization.evaluate_raced` scores each instruction on a
growing sample until it is scored in full or cannot reach the bar. Per step: scorer calls with and
without the race, and agreement: the step's best instruction under the race (the best of those
scored in full, else of the estimates) has the full-scoring best's accuracy (trivially so in a
step where nothing was cut short; the table counts those apart). This replay's "fewer calls" is
a replay over cached instructions, not a run; the ceiling printed under it is every instruction
but the best stopped at the first look. Last, one real ``llmopt run prompt --race K`` per seed
and K, checked to have the full run's steps and proposals: its trajectory departs from the full
run's once a cut-short estimate enters the meta-prompt, so it shows calls and the best it
reached, not agreement; its "fewer calls" is the real run's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main as llmopt  # noqa: E402
from llmopt.cli.run_options import run_parser  # noqa: E402
from llmopt.experiments.measures import BudgetMismatch, check_equal  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.experiments.runs import prepare_run  # noqa: E402
from llmopt.history import SolutionHistory, Trial, TrialState  # noqa: E402
from llmopt.problem import Direction  # noqa: E402
from llmopt.store import RunStore  # noqa: E402
from problems.prompt_optimization.problem import RACE_FIRST, race_looks  # noqa: E402


def argv_of(args: argparse.Namespace, seed: int, race: int | None) -> list[str]:
    out = ["--task", args.task, "--steps", str(args.steps), "--proposals", str(args.proposals), "--max-rounds", "1",
           "--max-train", str(args.max_train), "--scorer-max-tokens", str(args.scorer_max_tokens),
           "--seed", str(seed), "--store", args.store, "--quiet", "--name", run_name(args, seed, race)]
    out += ["--optimizer", args.optimizer] if args.optimizer else []
    out += ["--scorer", args.scorer] if args.scorer else []
    return out + (["--race", str(race)] if race else [])


def run_name(args: argparse.Namespace, seed: int, race: int | None) -> str:
    return f"race-{args.task.replace('/', '-')}-{'full' if race is None else f'race{race}'}-seed{seed}"


def ensure_run(args: argparse.Namespace, seed: int, race: int | None) -> None:
    name = run_name(args, seed, race)
    with RunStore(args.store) as store:
        existing = store.find_run(name)
        if existing is not None and existing.status == "finished":
            return
    started = time.perf_counter()
    code = llmopt(["run", "prompt", *argv_of(args, seed, race), *(["--resume"] if existing else [])])
    print(f"{name}: exit {code}, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if code != 0:
        raise SystemExit(code)


def race_step(step: int, raced: list[tuple[Trial, Any]], n_train: int) -> dict[str, Any]:
    """One step raced on its full run's instructions: ``raced`` pairs each instruction's trial (its
    full score) with its raced evaluation (calls made, ``metrics["race"]`` when cut short). The
    race keeps the step's best when its pick (the best of those scored in full, else of the
    estimates) has the full-scoring best's accuracy; a step that cut nothing agrees trivially."""
    full_best = max(float(t.value) for t, _ in raced)
    kept = [(t, e) for t, e in raced if "race" not in e.metrics]
    pick = max(kept or raced, key=lambda te: te[1].value)[0]
    cut = len(raced) - len(kept)
    return {"step": step, "full_calls": len(raced) * n_train, "raced_calls": sum(len(e.calls) for _, e in raced),
            "agree": float(pick.value) == full_best, "cut": cut, "instructions": len(raced), "trivial": cut == 0}


def race_steps(trials: list[Trial], race: int, evaluate_raced: Callable[[str, float], Any],
               n_train: int) -> list[dict[str, Any]]:
    """Every step of a full run raced again on its own instructions (``trials``: its scored ones).
    The bar is the one ``Optimizer(race=K)`` uses: the K-th best training accuracy of earlier steps;
    a step before K instructions were scored is not raced."""
    out = []
    for step in sorted({t.step for t in trials if t.step > 0}):
        ranked = SolutionHistory(Direction.MAXIMIZE, (t for t in trials if t.step < step)).top_k(race)
        here = [t for t in trials if t.step == step]
        if len(ranked) < race or not here:
            continue
        bar = float(ranked[0].value)
        out.append(race_step(step, [(t, evaluate_raced(t.text, bar)) for t in here], n_train))
    return out


def replay(args: argparse.Namespace, seed: int, race: int) -> list[dict[str, Any]]:
    """Each step of the full run raced again on its own instructions, from the cache (no new calls)."""
    parsed = run_parser("prompt").parse_args(argv_of(args, seed, None))
    problem, _, _ = prepare_run(parsed, calls=False)
    with RunStore(args.store) as store:
        problem.bind_cache(store.cache())
        run = store.get_run(run_name(args, seed, None))
        trials = [t for t in store.trials(run.id) if t.state is TrialState.COMPLETE]
        return race_steps(trials, race, problem.evaluate_raced, len(problem.task.train))


def replay_row(race: int, seeds: int, steps: list[dict[str, Any]]) -> list[Any]:
    """The replay table's row: scorer calls a step in full and raced, their ratio (the replay's
    "fewer calls", over the same instructions), the share cut short, and how often the step's best
    was kept, with the steps where that held trivially (nothing cut) counted apart."""
    full, raced = sum(s["full_calls"] for s in steps), sum(s["raced_calls"] for s in steps)
    agree = sum(s["agree"] for s in steps)
    trivial = sum(s["agree"] and s["trivial"] for s in steps)
    cut_pct = 100 * sum(s["cut"] for s in steps) / sum(s["instructions"] for s in steps)
    return [race, seeds, len(steps), f"{full / len(steps):.0f}", f"{raced / len(steps):.0f}",
            f"{full / max(raced, 1):.2f}x", f"{cut_pct:.0f}",
            f"{100 * agree / len(steps):.0f} ({agree} of {len(steps)}; {trivial} trivially: nothing cut)"]


def race_ceiling(n_train: int, instructions: int, first: int = RACE_FIRST) -> float:
    """The most a race can save in a step: every instruction but the best stopped at the first look
    (``instructions`` x ``n_train`` calls in full, against ``n_train`` + the others' first looks)."""
    look = race_looks(n_train, first)[0]
    return instructions * n_train / (n_train + (instructions - 1) * look)


def real_numbers(calls: list[Any], trials: list[Trial], seconds: float) -> dict[str, Any]:
    """A real run's scorer calls per step (step 0's starts left out), best accuracy, cut-short count."""
    steps = {c.step for c in calls if c.step > 0}
    scored = [t for t in trials if t.state is TrialState.COMPLETE]
    return {"calls_per_step": sum(1 for c in calls if c.step > 0) / max(len(steps), 1),
            "best": max(float(t.value) for t in scored), "seconds": seconds,
            "cut": sum(1 for t in scored if "race" in t.metrics), "steps": max((t.step for t in trials), default=0),
            "trials": len(trials)}


def real_run(args: argparse.Namespace, seed: int, race: int | None) -> dict[str, Any]:
    with RunStore(args.store) as store:
        run = store.get_run(run_name(args, seed, race))
        return real_numbers(store.calls(run.id, role="scorer"), store.trials(run.id), run.elapsed_s)


def check_same_budget(runs: dict[str, dict[str, Any]]) -> None:
    """The real runs of a seed are compared at equal settings: the same steps and the same number
    of proposals (one sampling round a step); BudgetMismatch names a run that differs."""
    check_equal("steps per run", {name: r["steps"] for name, r in runs.items()})
    check_equal("trials per run (starts and proposals)", {name: r["trials"] for name, r in runs.items()})


def real_row(label: str, got: list[dict[str, Any]], full: list[dict[str, Any]] | None) -> list[Any]:
    """A real run's row; "fewer calls" is the full runs' median scorer calls a step over this one's."""
    calls = statistics.median(g["calls_per_step"] for g in got)
    ratio = "-" if full is None else f"{statistics.median(g['calls_per_step'] for g in full) / calls:.2f}x"
    return [label, len(got), f"{calls:.0f}", ratio, sum(g["cut"] for g in got),
            f"{statistics.median(g['best'] for g in got):.1f}", f"{statistics.median(g['seconds'] for g in got):.0f}"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="bbh/boolean_expressions")
    p.add_argument("--max-train", type=int, default=64)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--proposals", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--race", type=int, nargs="+", default=[1, 3])
    p.add_argument("--scorer-max-tokens", type=int, default=16)
    p.add_argument("--scorer")
    p.add_argument("--optimizer")
    p.add_argument("--store", default="race-bbh.db")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--real", type=int, nargs="*", help="K of the real --race runs (default: those of --race; none: "
                                                        "only the replay of the full runs)")
    return p.parse_args()


def print_replay(args: argparse.Namespace) -> None:
    rows: list[list[Any]] = [["race K", "seeds", "steps raced", "scorer calls / step (full)",
                              "scorer calls / step (raced)", "fewer calls (replay)", "instructions cut short %",
                              "same top instruction %"]]
    for race in args.race:
        steps = [s for seed in args.seeds for s in replay(args, seed, race)]
        if steps:
            rows.append(replay_row(race, len(args.seeds), steps))
    print(markdown_table(rows) if args.markdown else format_table(rows))
    print(f"\nceiling (every instruction but the best stopped at the first look): "
          f"{race_ceiling(args.max_train, args.proposals):.2f}x with {args.max_train} examples and "
          f"{args.proposals} instructions a step")


def print_real(args: argparse.Namespace, reals: list[int]) -> None:
    rows: list[list[Any]] = [["run", "seeds", "scorer calls / step (median)", "fewer calls (real run)", "cut short",
                              "best train acc % (median)", "s / run (median)"]]
    for race in [None, *reals]:
        for seed in args.seeds:
            ensure_run(args, seed, race)
    got = {race: [real_run(args, seed, race) for seed in args.seeds] for race in [None, *reals]}
    for i, seed in enumerate(args.seeds):
        try:
            check_same_budget({run_name(args, seed, race): got[race][i] for race in got})
        except BudgetMismatch as exc:
            raise SystemExit(f"race_bbh: {exc}") from None
    for race, runs in got.items():
        rows.append(real_row("full" if race is None else f"--race {race}", runs, None if race is None else got[None]))
    print(markdown_table(rows) if args.markdown else format_table(rows))


def main() -> None:
    args = parse_args()
    for seed in args.seeds:
        ensure_run(args, seed, None)
    print_replay(args)
    reals = args.race if args.real is None else args.real
    if reals:
        print()
        print_real(args, reals)


if __name__ == "__main__":
    main()
