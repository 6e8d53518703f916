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
scored in full, else of the estimates) has the full-scoring best's accuracy. Last, one real
``llmopt run prompt --race K`` per seed and K: its trajectory departs from the full run's once a
cut-short estimate enters the meta-prompt, so it shows calls and the best it reached, not agreement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main as llmopt  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.experiments.runs import prepare_run, run_parser  # noqa: E402
from llmopt.history import SolutionHistory, TrialState  # noqa: E402
from llmopt.problem import Direction  # noqa: E402
from llmopt.store import RunStore  # noqa: E402


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


def replay(args: argparse.Namespace, seed: int, race: int) -> list[dict[str, Any]]:
    """Each step of the full run raced again on its own instructions, from the cache."""
    parsed = run_parser("prompt").parse_args(argv_of(args, seed, None))
    problem, _, _ = prepare_run(parsed, calls=False)
    out = []
    with RunStore(args.store) as store:
        problem.bind_cache(store.cache())
        run = store.get_run(run_name(args, seed, None))
        trials = [t for t in store.trials(run.id) if t.state is TrialState.COMPLETE]
        for step in sorted({t.step for t in trials if t.step > 0}):
            ranked = SolutionHistory(Direction.MAXIMIZE, (t for t in trials if t.step < step)).top_k(race)
            here = [t for t in trials if t.step == step]
            if len(ranked) < race or not here:
                continue
            bar = float(ranked[0].value)  # the bar Optimizer(race=K) would use: the K-th best of earlier steps
            raced = [(t, problem.evaluate_raced(t.text, bar)) for t in here]
            full_best = max(t.value for t in here)
            kept = [(t, e) for t, e in raced if "race" not in e.metrics]
            pick = max(kept or raced, key=lambda te: te[1].value)[0]
            out.append({"step": step, "full_calls": len(here) * len(problem.task.train),
                        "raced_calls": sum(len(e.calls) for _, e in raced), "agree": pick.value == full_best,
                        "cut": sum(1 for _, e in raced if "race" in e.metrics), "instructions": len(here)})
    return out


def real_run(args: argparse.Namespace, seed: int, race: int | None) -> dict[str, Any]:
    with RunStore(args.store) as store:
        run = store.get_run(run_name(args, seed, race))
        calls = store.calls(run.id, role="scorer")
        steps = {c.step for c in calls if c.step > 0}
        trials = store.trials(run.id, states=[TrialState.COMPLETE])
        return {"calls_per_step": sum(1 for c in calls if c.step > 0) / max(len(steps), 1),
                "best": max(t.value for t in trials), "seconds": run.elapsed_s,
                "cut": sum(1 for t in trials if "race" in t.metrics)}


def main() -> None:
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
    args = p.parse_args()
    for seed in args.seeds:
        ensure_run(args, seed, None)
    rows: list[list[Any]] = [["race K", "seeds", "steps raced", "scorer calls / step (full)",
                              "scorer calls / step (raced)", "fewer calls", "instructions cut short %",
                              "same top instruction %"]]
    for race in args.race:
        steps = [s for seed in args.seeds for s in replay(args, seed, race)]
        if not steps:
            continue
        full, raced = sum(s["full_calls"] for s in steps), sum(s["raced_calls"] for s in steps)
        rows.append([race, len(args.seeds), len(steps), f"{full / len(steps):.0f}", f"{raced / len(steps):.0f}",
                     f"{full / max(raced, 1):.2f}x",
                     f"{100 * sum(s['cut'] for s in steps) / sum(s['instructions'] for s in steps):.0f}",
                     f"{100 * sum(s['agree'] for s in steps) / len(steps):.0f}"])
    print(markdown_table(rows) if args.markdown else format_table(rows))
    reals = args.race if args.real is None else args.real
    if not reals:
        return
    real: list[list[Any]] = [["run", "seeds", "scorer calls / step (median)", "cut short", "best train acc % (median)",
                              "s / run (median)"]]
    for race in [None, *reals]:
        for seed in args.seeds:
            ensure_run(args, seed, race)
        got = [real_run(args, seed, race) for seed in args.seeds]
        real.append(["full" if race is None else f"--race {race}", len(got),
                     f"{statistics.median(g['calls_per_step'] for g in got):.0f}", sum(g["cut"] for g in got),
                     f"{statistics.median(g['best'] for g in got):.1f}",
                     f"{statistics.median(g['seconds'] for g in got):.0f}"])
    print(markdown_table(real) if args.markdown else format_table(real))


if __name__ == "__main__":
    main()
