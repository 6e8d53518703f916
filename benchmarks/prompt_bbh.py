"""Does OPRO beat the fixed instructions on held-out data? One task, OPRO vs the random control.

For each seed, runs ``llmopt run prompt`` with the LLM proposer and with the random control
(same task, split, scorer and budget: checked, every run drew ``--proposals`` instructions in each
of ``--steps`` steps), then scores each run's best training instruction and the
fixed baselines on the test split with the same scorer (every reply cached in the store, so a
re-run of this script only prints). Prints one table: train and test accuracy with 95% Wilson
intervals, calls and wall time.

    python benchmarks/prompt_bbh.py --task bbh/sports_understanding \\
        --steps 8 --proposals 4 --max-train 30 --max-test 100 --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import time

from baselines.prompts import BASELINES
from llmopt.cli import main as llmopt
from llmopt.experiments.measures import BudgetMismatch, check_proposals_per_step
from llmopt.experiments.report import format_table
from llmopt.history import TrialState
from llmopt.llm.client import LLM
from llmopt.llm.embedded import DEFAULT_MODEL
from llmopt.store.sqlite import RunStore
from problems.prompt_optimization.cli import sample_examples, wilson
from problems.prompt_optimization.data import load_task
from problems.prompt_optimization.scorer import Scorer


def interval(correct: int, total: int) -> str:
    low, high = wilson(correct, total)
    return f"{100 * correct / total:.1f} [{100 * low:.0f}, {100 * high:.0f}]"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="bbh/sports_understanding")
    p.add_argument("--data-dir")
    p.add_argument("--store", default="prompt_bench.db")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--proposals", type=int, default=4)
    p.add_argument("--max-train", type=int, default=30)
    p.add_argument("--max-test", type=int, default=100, help="test examples (a seeded sample)")
    p.add_argument("--scorer", default=DEFAULT_MODEL)
    p.add_argument("--optimizer", default=DEFAULT_MODEL)
    p.add_argument("--scorer-max-tokens", type=int, default=16)
    p.add_argument("--position", default="Q_begin")
    return p.parse_args()


def run_name(task: str, kind: str, seed: int) -> str:
    return f"{task.replace('/', '-')}-{kind}-seed{seed}"


def run_all(args: argparse.Namespace) -> int:
    """OPRO and the random control for each seed (runs already in the store are kept); an exit code."""
    common = ["--task", args.task, "--steps", str(args.steps), "--proposals", str(args.proposals),
              "--max-rounds", "1", "--max-train", str(args.max_train), "--scorer", args.scorer,
              "--scorer-max-output-tokens", str(args.scorer_max_tokens), "--position", args.position,
              "--store", args.store, "--quiet"] + (["--data-dir", args.data_dir] if args.data_dir else [])
    with RunStore(args.store) as store:
        done = {r.name for r in store.runs()}
    for seed in args.seeds:
        for kind, extra in (("opro", ["--optimizer", args.optimizer]), ("random", ["--proposer", "random"])):
            name = run_name(args.task, kind, seed)
            if name in done:
                continue
            started = time.perf_counter()
            code = llmopt(["run", "prompt", *common, "--seed", str(seed), "--name", name, *extra])
            print(f"{name}: exit {code}, {time.perf_counter() - started:.0f} s", file=sys.stderr)
            if code != 0:
                return code
    return 0


def check_budget(args: argparse.Namespace, store: RunStore) -> None:
    """The claim "same budget": each of this benchmark's runs drew ``--proposals`` instructions in
    each of ``--steps`` steps (one sampling round), OPRO and the random control alike."""
    for seed in args.seeds:
        for kind in ("opro", "random"):
            run = store.get_run(run_name(args.task, kind, seed))
            check_proposals_per_step(run.name, store.trials(run.id), args.proposals, args.steps)


def table(args: argparse.Namespace) -> list[list[str]]:
    task = load_task(args.task, args.data_dir, max_train=args.max_train)
    test = sample_examples(task.test, args.max_test, 0)
    scorer = Scorer(LLM.from_model(args.scorer, temperature=0.0, max_tokens=args.scorer_max_tokens), args.position)
    rows = [["instruction", "source", "train acc % [95% CI]", "test acc % [95% CI]", "scored", "calls", "wall s"]]
    with RunStore(args.store) as store:
        check_budget(args, store)
        scorer.bind_cache(store.cache())

        def row(text: str, source: str, scored: str = "-", calls: str = "-", wall: str = "-") -> None:
            train = scorer.score(text, task.train, task.kind)
            held = scorer.score(text, test, task.kind)
            shown = text if len(text) <= 70 else text[:67] + "..."
            rows.append([repr(shown), source, interval(train.correct, train.total),
                         interval(held.correct, held.total), scored, calls, wall])

        for name, text in BASELINES.items():
            row(text, f"baseline: {name}")
        for run in store.runs():
            if run.problem != "prompt" or run.config["problem"]["task"] != args.task:
                continue
            trials = store.trials(run.id, states=[TrialState.COMPLETE])
            best = max(trials, key=lambda t: (t.value, -t.number))
            row(best.text, f"best of {run.name}", str(len(trials)), str(store.usage(run.id).calls),
                f"{run.elapsed_s:.0f}")
    print(f"task {args.task}: {len(task.train)} training examples, {len(test)} test examples; scorer {args.scorer} "
          f"(max {args.scorer_max_tokens} tokens), optimizer {args.optimizer}; {args.steps} steps x "
          f"{args.proposals} proposals")
    return rows


def main() -> int:
    args = parse_args()
    code = run_all(args)
    if code != 0:
        return code
    try:
        rows = table(args)
    except BudgetMismatch as exc:
        print(f"prompt_bbh: {exc}", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
