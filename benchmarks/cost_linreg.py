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
Finished runs in the store are kept, so an interrupted benchmark continues. Before printing it
checks the equal budget it claims (every run scored ``--evals`` pairs, fewer only if it proposed
the true pair) and exits naming the runs that differ. Prints the table (``--markdown`` for
Markdown; ``$ / 1k new`` prices the same tokens at a hosted model's rates, litellm's price map,
``--price-model``: the bill these protocols would run up there), then each configuration's best
loss per seed beside its best starting pair's, and each configuration against the first one seed
by seed, saying which ties are trivial (neither run moved from its starting pairs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main as llmopt_main  # noqa: E402
from llmopt.experiments.measures import BudgetMismatch, check_equal, proposal_counts  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
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
    """One stored run's counts: proposals by state, the optimizer's calls and tokens, its best loss
    and its best starting pair's (a run whose best is its best start never moved), when it solved."""
    run = store.get_run(name)
    trials = store.trials(run.id)  # in trial-number order
    counts = proposal_counts(trials)
    usage = store.usage(run.id, role="optimizer")
    solved = next((t.step for t in trials if t.ok and t.text == TRUE_PAIR), None)
    values = [float(t.value) for t in trials if t.ok and t.value is not None]
    starts = [float(t.value) for t in trials if t.ok and t.source == "start" and t.value is not None]
    return {"new": counts.complete, "proposed": counts.proposed, "duplicate": counts.duplicate,
            "invalid": counts.invalid, "failed": counts.failed, "evals": len(values), "calls": usage.calls,
            "tokens": usage.tokens, "prompt_tokens": usage.prompt_tokens, "best": min(values) if values else None,
            "start_best": min(starts) if starts else None, "solved_step": solved,
            "steps": max((t.step for t in trials), default=0), "seconds": run.elapsed_s, "stop": run.stop_reason}


def read_runs(store_path: str, configs: list[str], seeds: int) -> dict[str, dict[int, dict[str, Any]]]:
    """The finished runs of each configuration, by seed (unfinished ones are left out of the table)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    with RunStore(store_path, readonly=True) as store:
        for config in configs:
            out[config] = {s: measure(store, run_name(config, s)) for s in range(seeds)
                           if (r := store.find_run(run_name(config, s))) is not None and r.status == "finished"}
    return out


def check_budget(runs: dict[str, dict[int, dict[str, Any]]], evals: int) -> None:
    """The equal budget the table claims: every run scored ``evals`` pairs (starts included); a run
    that proposed the true pair stops there and may have scored fewer. BudgetMismatch otherwise."""
    checked = {run_name(c, s): g["evals"] for c, got in runs.items() for s, g in got.items()
               if g["stop"] != "solved" or g["evals"] > evals}
    check_equal("scored pairs per run (--max-evals)", checked, evals)


def row_numbers(got: list[dict[str, Any]]) -> dict[str, Any]:
    """A configuration's row as numbers: totals over its runs (tokens and calls of the optimizer
    per new valid pair; duplicates and invalid replies as shares of all proposals), medians per run."""
    total = {k: sum(g[k] for g in got) for k in ("new", "proposed", "duplicate", "invalid", "calls", "tokens",
                                                  "prompt_tokens")}
    solved = [g["solved_step"] for g in got if g["solved_step"] is not None]
    new, proposed = total["new"], total["proposed"]
    return {"runs": len(got), "tokens_per_new": total["tokens"] / new if new else None,
            "calls_per_new": total["calls"] / new if new else None, "new_per_run": new / len(got),
            "duplicate_pct": 100 * total["duplicate"] / proposed if proposed else None,
            "invalid_pct": 100 * total["invalid"] / proposed if proposed else None,
            "prompt_pct": 100 * total["prompt_tokens"] / total["tokens"] if total["tokens"] else None,
            "prompt_tokens": total["prompt_tokens"], "completion_tokens": total["tokens"] - total["prompt_tokens"],
            "new": new, "best_median": statistics.median(g["best"] for g in got), "solved": len(solved),
            "solved_median_step": statistics.median(solved) if solved else None,
            "seconds_median": statistics.median(g["seconds"] for g in got)}


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(runs: dict[str, dict[int, dict[str, Any]]], price_model: str = "gpt-4o-mini") -> list[list[Any]]:
    rows: list[list[Any]] = [["configuration", "runs", "tokens / new valid", "calls / new valid", "new valid / run",
                              "duplicate %", "invalid %", "prompt tokens %", f"$ / 1k new ({price_model})",
                              "best loss (median)", "solved", "steps to the pair (median of solved)",
                              "s / run (median)"]]
    for config, by_seed in runs.items():
        if not by_seed:
            continue
        n = row_numbers(list(by_seed.values()))
        usd = LLM.from_model(price_model).token_cost(n["prompt_tokens"], n["completion_tokens"])
        rows.append([config, n["runs"], _cell(n["tokens_per_new"], ".0f"), _cell(n["calls_per_new"], ".2f"),
                     f"{n['new_per_run']:.1f}", _cell(n["duplicate_pct"], ".0f"), _cell(n["invalid_pct"], ".0f"),
                     _cell(n["prompt_pct"], ".0f"), "-" if usd is None or not n["new"] else f"{1000 * usd / n['new']:.3f}",
                     f"{n['best_median']:.4g}", f"{n['solved']}/{n['runs']}", _cell(n["solved_median_step"], ".0f"),
                     f"{n['seconds_median']:.0f}"])
    return rows


def loss_text(value: float) -> str:
    """A loss as the results file writes it: one decimal below 1,000, whole numbers above."""
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


def moved(g: dict[str, Any]) -> bool:
    """The run found a pair better than its best starting pair (else its best is a start's)."""
    return g["start_best"] is None or g["best"] < g["start_best"]


def per_seed_line(config: str, by_seed: dict[int, dict[str, Any]]) -> str:
    """Best loss per seed beside the best starting pair's, and on how many seeds the run moved at all."""
    seeds = sorted(by_seed)
    left = [s for s in seeds if moved(by_seed[s])]
    return (f"{config}: best loss per seed ({', '.join(map(str, seeds))}) "
            f"{', '.join(loss_text(by_seed[s]['best']) for s in seeds)}; best starting pair "
            f"{', '.join(loss_text(by_seed[s]['start_best']) for s in seeds)}; below its starts on "
            f"{len(left)} of {len(seeds)} seeds" + (f" ({', '.join(map(str, left))})" if left else ""))


@dataclass(frozen=True)
class SeedComparison:
    """A configuration's best loss against a reference configuration's, seed by seed. A tie where
    neither run moved from its best starting pair (the same for both: starts depend on the seed
    only) is trivial: it says the two did equally nothing, not that one is as good as the other."""

    label: str
    reference: str
    lower: tuple[int, ...]
    equal: tuple[int, ...]
    higher: tuple[int, ...]
    trivial: tuple[int, ...]

    def describe(self) -> str:
        def seeds(group: tuple[int, ...]) -> str:
            return f"{len(group)}" + (f" ({', '.join(map(str, group))})" if group else "")

        head = (f"{self.label} against {self.reference}, best loss per seed: lower on {seeds(self.lower)}, "
                f"equal on {seeds(self.equal)}, higher on {seeds(self.higher)}")
        every = len(self.lower) + len(self.equal) + len(self.higher)
        if self.trivial and len(self.trivial) == every:
            return head + "; trivially: on every seed neither run left its best starting pair"
        if self.trivial:
            return head + (f"; the ties on seeds {', '.join(map(str, self.trivial))} are trivial: "
                           "neither run left its best starting pair there")
        return head


def compare_seeds(label: str, reference: str, mine: dict[int, dict[str, Any]],
                  theirs: dict[int, dict[str, Any]]) -> SeedComparison:
    """``mine`` against ``theirs`` on the seeds both have (lower loss is better)."""
    common = sorted(set(mine) & set(theirs))
    lower = tuple(s for s in common if mine[s]["best"] < theirs[s]["best"])
    equal = tuple(s for s in common if mine[s]["best"] == theirs[s]["best"])
    higher = tuple(s for s in common if mine[s]["best"] > theirs[s]["best"])
    trivial = tuple(s for s in equal if not moved(mine[s]) and not moved(theirs[s]))
    return SeedComparison(label, reference, lower, equal, higher, trivial)


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
    runs = read_runs(args.store, configs, args.seeds)
    try:
        check_budget(runs, args.evals)
    except BudgetMismatch as exc:
        raise SystemExit(f"cost_linreg: {exc}") from None
    rows = table(runs, args.price_model)
    print(markdown_table(rows) if args.markdown else format_table(rows))
    print()
    for config, by_seed in runs.items():
        if by_seed:
            print(per_seed_line(config, by_seed))
    reference = configs[0]
    for config in configs[1:]:
        if runs[config] and runs[reference]:
            print(compare_seeds(config, reference, runs[config], runs[reference]).describe())


if __name__ == "__main__":
    main()
