"""The embedded model on linear regression: structured output, free text, and the random control.

    python benchmarks/linreg_local.py [--seeds 5] [--steps 50] [--workers 2] [--store bench.db]

w_true=15, b_true=14, the paper's protocol: 5 starting pairs, 8 proposals per step (one round: a
step's invalid or duplicate replies are not replaced, so every configuration draws the same 8
proposals per step), up to 50 steps, stopping when the exact pair is proposed. Replies are capped
at 128 tokens. Each run is checked to have drawn 8 proposals in every step, for ``--steps`` steps
unless it found the pair (a BudgetMismatch otherwise). Runs go to one
store (inspect them with ``llmopt show --store ...``). Workers are separate processes with one
llama.cpp thread each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt import LLM, Budget, LLMProposer, Optimizer, RandomProposer, RunStore, TrialState  # noqa: E402
from llmopt.experiments.measures import check_proposals_per_step, evals_until  # noqa: E402
from llmopt.experiments.report import format_table  # noqa: E402
from llmopt.llm.embedded import DEFAULT_MODEL  # noqa: E402
from problems.linear_regression.problem import LinearRegression  # noqa: E402

CONFIGS = ("structured", "free text", "random")
CHECKPOINTS = (0, 10, 20, 30, 40, 50)
#: Proposals a step, in one sampling round: the equal budget of every configuration (checked per run).
PROPOSALS = 8


def engine_seconds() -> float:
    """Seconds this process's embedded models spent generating (the rest of a step is llmopt's)."""
    from llmopt.llm import embedded as local

    return sum(e.busy_s for e in local._engines.values())


def one_run(config: str, seed: int, steps: int, max_tokens: int, store_path: str, model: str) -> dict[str, Any]:
    problem = LinearRegression(seed=seed)
    if config == "random":
        proposer: Any = RandomProposer()
    else:
        llm = LLM.from_model(model, max_tokens=max_tokens)
        proposer = LLMProposer(llm, structured="auto" if config == "structured" else "off")
    store = RunStore(store_path)
    name = f"{model}-{config.replace(' ', '-')}-seed{seed}"
    opt = Optimizer(problem, proposer, seed=seed, store=store, name=name,
                    proposals_per_step=PROPOSALS, max_rounds=1, budget=Budget(max_steps=steps))
    engine_before = engine_seconds()  # workers are reused: count this run's model time only
    started = time.perf_counter()
    result = opt.run()
    wall = time.perf_counter() - started
    model_s = engine_seconds() - engine_before
    store.close()
    check_proposals_per_step(name, result.history, PROPOSALS, steps, solved=result.solved_step is not None)
    llm_trials = [t for t in result.history if t.source.startswith("llm:")]
    solved_eval = evals_until(result.history, lambda t: problem.is_solved(t.solution))
    curve = dict(result.history.best_so_far())
    return {
        "config": config, "seed": seed, "steps": result.steps, "solved_step": result.solved_step,
        "solved_eval": solved_eval, "evals": result.evaluations, "unique": result.metrics["unique_pairs"],
        "valid": (sum(t.state is not TrialState.INVALID and t.state is not TrialState.FAILED for t in llm_trials)
                  / len(llm_trials)) if llm_trials else None,
        "tokens": result.usage.tokens, "calls": result.usage.calls, "wall": wall,
        "s_per_step": wall / max(result.steps, 1), "framework_share": (1 - model_s / wall) if llm_trials else None,
        "best": result.best.value if result.best else None,
        "curve": {c: curve.get(min((s for s in curve if s <= c), default=0, key=lambda s: c - s)) for c in CHECKPOINTS
                  if c <= result.steps},
    }


def summary(rows: list[dict[str, Any]]) -> list[list[Any]]:
    table: list[list[Any]] = [["config", "seeds solved", "steps to exact pair", "evals to exact pair",
                               "valid replies", "unique pairs", "tokens/run", "s/step", "framework share"]]
    for config in CONFIGS:
        runs = [r for r in rows if r["config"] == config]
        if not runs:
            continue
        solved = [r for r in runs if r["solved_step"] is not None]
        mean = lambda key: statistics.mean(r[key] for r in runs)  # noqa: E731
        table.append([
            config, f"{len(solved)}/{len(runs)}",
            ", ".join("-" if r["solved_step"] is None else str(r["solved_step"]) for r in runs),
            ", ".join("-" if r["solved_eval"] is None else str(r["solved_eval"]) for r in runs),
            "-" if runs[0]["valid"] is None else f"{mean('valid'):.0%}", f"{mean('unique'):.0f}",
            f"{mean('tokens'):.0f}", f"{mean('s_per_step'):.2f}",
            "-" if runs[0]["framework_share"] is None else f"{mean('framework_share'):.1%}",
        ])
    return table


def curves(rows: list[dict[str, Any]]) -> list[list[Any]]:
    table: list[list[Any]] = [["config", *[f"best loss @ step {c}" for c in CHECKPOINTS]]]
    for config in CONFIGS:
        runs = [r for r in rows if r["config"] == config]
        if runs:
            cells = []
            for c in CHECKPOINTS:
                values = [r["curve"][c] if c in r["curve"] else r["best"] for r in runs]
                cells.append(f"{statistics.median(values):.0f}")
            table.append([config, *cells])
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128, help="max tokens per reply")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--model", default=DEFAULT_MODEL, help="any local/... model (default: the embedded one)")
    ap.add_argument("--store", help="default: a temporary file")
    args = ap.parse_args()
    store = args.store or str(Path(tempfile.mkdtemp()) / "bench.db")
    RunStore(store).close()  # create the schema once, before the workers race for it
    tasks = [(c, s) for c in args.configs.split(",") for s in range(args.seeds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(one_run, c, s, args.steps, args.max_tokens, store, args.model) for c, s in tasks]
        rows = []
        for future in futures:
            rows.append(future.result())
            r = rows[-1]
            print(f"done {r['config']} seed {r['seed']}: steps {r['steps']}, exact pair at step "
                  f"{r['solved_step']}, {r['wall']:.0f} s", flush=True)
    print()
    print(format_table(summary(rows)))
    print()
    print(format_table(curves(rows)))
    print(f"\n{len(tasks)} runs in {time.perf_counter() - started:.0f} s with {args.workers} workers; store: {store}")


if __name__ == "__main__":
    main()
