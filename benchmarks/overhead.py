"""Framework overhead per trial, without LLM latency.

    python benchmarks/overhead.py [--steps 200]

Runs OPRO on linear regression against an instant in-process model (a backend that answers
with a fixed-format pair derived from the seed) and stores everything in a SQLite store, so
the time measured is llmopt's own: meta-prompt build, reply parsing, scoring, dedup, the
cache lookup and the store writes. Prints the per-trial time and its breakdown by phase.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore  # noqa: E402
from llmopt.experiments.report import format_table  # noqa: E402
from llmopt.llm.client import BackendReply  # noqa: E402
from problems.linear_regression.problem import LinearRegression  # noqa: E402

PHASES = {
    "meta-prompt build": ("metaprompt.py", "build_meta_prompt"),
    "decode (parse)": ("linear_regression.py", "decode"),
    "score": ("linear_regression.py", "score"),
    "store writes": ("storage.py", "_write"),
    "cache lookups": ("storage.py", "get"),
}


async def instant(request: dict) -> BackendReply:
    seed = request["seed"]
    text = f"[{seed % 41 - 5}, {seed // 41 % 41 - 5}]"
    return BackendReply(text=text, prompt_tokens=600, completion_tokens=8, cost_usd=None)


def run(steps: int, store_path: str) -> tuple[float, int, pstats.Stats]:
    store = RunStore(store_path)
    opt = Optimizer(LinearRegression(seed=0), LLMProposer(LLM.from_model("bench/instant", backend=instant)),
                    store=store, budget=Budget(max_steps=steps, stop_when_solved=False))
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = opt.run()
    profiler.disable()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, len(result.history), pstats.Stats(profiler)


def phase_time(stats: pstats.Stats, file_end: str, func: str) -> float:
    return sum(v[3] for (file, _, name), v in stats.stats.items() if file.endswith(file_end) and name == func)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    path = str(Path(tempfile.mkdtemp()) / "bench.db")
    run(5, path + ".warm")  # imports, first-touch costs
    elapsed, trials, stats = run(args.steps, path)
    plain, _, _ = run(args.steps, path + ".plain")  # the same run again, timed without the profiler
    rows = [["measure", "value"],
            ["steps x proposals", f"{args.steps} x 8"],
            ["trials recorded", trials],
            ["wall time (no profiler)", f"{plain:.2f} s"],
            ["overhead per trial", f"{plain / trials * 1e3:.2f} ms"]]
    for label, (file_end, func) in PHASES.items():
        share = phase_time(stats, file_end, func)
        rows.append([f"  {label}", f"{share / trials * 1e3:.3f} ms/trial ({share / elapsed:.0%} of profiled time)"])
    print(format_table(rows))


if __name__ == "__main__":
    main()
