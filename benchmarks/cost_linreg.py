"""What a new valid proposal costs: tokens and calls per new valid (w, b) pair, and the repeats and
invalid replies that a proposal protocol pays for, on linear regression with the embedded model.

    python benchmarks/cost_linreg.py [--seeds 5] [--evals 45] [--configs paper,per-call-4,...] [--store cost-linreg.db]

Each configuration is an ordinary ``llmopt run linreg`` (the paper's problem: w=15, b=14, 5 starting
pairs in [10, 20]^2, 8 proposals a step) with an equal budget of scored pairs (``--max-evals``,
the 5 starting pairs included), differing only in the flags of :data:`CONFIGS`; every call is
read back from the store. ``paper``: the defaults (one reply per proposal; a repeated or invalid
reply is redrawn, up to 3 rounds a step); ``one-round``: a repeat is a proposal spent, not
redrawn (``--max-rounds 1``); ``per-call-K``: K pairs asked of one reply (``--per-call K``);
``hot-redraws``: redraw rounds sampled at temperature 1.5 (``--redraw-temperature 1.5``).
Finished runs in the store are kept, so an interrupted benchmark continues. Prints the table
(``--markdown`` for Markdown); ``$ / 1k new`` prices the same tokens at a hosted model's rates
(litellm's price map; ``--price-model``), the bill these protocols would run up there.
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
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.history import TrialState  # noqa: E402
from llmopt.llm import LLM  # noqa: E402
from llmopt.store import RunStore  # noqa: E402

CONFIGS = {"paper": [], "one-round": ["--max-rounds", "1"], "per-call-4": ["--per-call", "4"],
           "per-call-8": ["--per-call", "8"], "hot-redraws": ["--redraw-temperature", "1.5"],
           "per-call-8-hot": ["--per-call", "8", "--redraw-temperature", "1.5"]}
DEFAULT_CONFIGS = ("paper", "per-call-4", "per-call-8", "hot-redraws", "per-call-8-hot")
TRUE_PAIR = "w=15, b=14"


def run_name(config: str, seed: int) -> str:
    return f"cost-{config}-seed{seed}"


def run_one(config: str, seed: int, evals: int, store: str) -> None:
    argv = ["run", "linreg", "--seed", str(seed), "--max-evals", str(evals), "--steps", "1000", "--store", store,
            "--name", run_name(config, seed), "--quiet", *CONFIGS[config]]
    with RunStore(store, readonly=True) as s:
        existing = s.find_run(run_name(config, seed))
        if existing is not None and (existing.status == "finished" or s.is_live(existing.name)):
            return
    code = llmopt_main(argv + (["--resume"] if existing is not None else []))
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")


def measure(store: RunStore, name: str) -> dict[str, Any]:
    run = store.get_run(name)
    trials = store.trials(run.id)
    proposed = [t for t in trials if t.source != "start"]
    count = {state: sum(1 for t in proposed if t.state is state) for state in TrialState}
    usage = store.usage(run.id, role="optimizer")
    solved = next((t.step for t in sorted(trials, key=lambda t: t.number)
                   if t.state is TrialState.COMPLETE and t.text == TRUE_PAIR), None)
    values = [t.value for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    return {"new": count[TrialState.COMPLETE], "proposed": len(proposed), "duplicate": count[TrialState.DUPLICATE],
            "invalid": count[TrialState.INVALID], "failed": count[TrialState.FAILED], "calls": usage.calls,
            "tokens": usage.tokens, "prompt_tokens": usage.prompt_tokens, "best": min(values) if values else None,
            "solved_step": solved, "steps": max((t.step for t in trials), default=0), "seconds": run.elapsed_s}


def table(store_path: str, configs: list[str], seeds: int, price_model: str = "gpt-4o-mini") -> list[list[Any]]:
    rows: list[list[Any]] = [["configuration", "runs", "tokens / new valid", "calls / new valid", "new valid / run",
                              "duplicate %", "invalid %", "prompt tokens %", f"$ / 1k new ({price_model})",
                              "best loss (median)", "solved", "steps to the pair (median of solved)",
                              "s / run (median)"]]
    with RunStore(store_path, readonly=True) as store:
        for config in configs:
            got = [measure(store, run_name(config, s)) for s in range(seeds)
                   if (r := store.find_run(run_name(config, s))) is not None and r.status == "finished"]
            if not got:
                continue
            total = {k: sum(g[k] for g in got) for k in ("new", "proposed", "duplicate", "invalid", "calls", "tokens",
                                                          "prompt_tokens")}
            solved = [g["solved_step"] for g in got if g["solved_step"] is not None]
            new = max(total["new"], 1)
            usd = LLM.from_model(price_model).token_cost(total["prompt_tokens"], total["tokens"] - total["prompt_tokens"])
            rows.append([config, len(got), f"{total['tokens'] / new:.0f}", f"{total['calls'] / new:.2f}",
                         f"{total['new'] / len(got):.1f}", f"{100 * total['duplicate'] / max(total['proposed'], 1):.0f}",
                         f"{100 * total['invalid'] / max(total['proposed'], 1):.0f}",
                         f"{100 * total['prompt_tokens'] / max(total['tokens'], 1):.0f}",
                         "-" if usd is None else f"{1000 * usd / new:.3f}",
                         f"{statistics.median(g['best'] for g in got):.4g}", f"{len(solved)}/{len(got)}",
                         f"{statistics.median(solved):.0f}" if solved else "-",
                         f"{statistics.median(g['seconds'] for g in got):.0f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evals", type=int, default=45, help="scored pairs per run, the 5 starting ones included")
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--price-model", default="gpt-4o-mini", help="whose prices the $ column uses")
    ap.add_argument("--store", default="cost-linreg.db")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--table-only", action="store_true", help="print the table of the runs already in the store")
    args = ap.parse_args()
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; choose from {sorted(CONFIGS)}")
    RunStore(args.store).close()
    if not args.table_only:
        for seed in range(args.seeds):  # seed-major: an interrupted benchmark has whole seeds
            for config in configs:
                started = time.perf_counter()
                run_one(config, seed, args.evals, args.store)
                print(f"{config} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    rows = table(args.store, configs, args.seeds, args.price_model)
    print(markdown_table(rows) if args.markdown else format_table(rows))


if __name__ == "__main__":
    main()
