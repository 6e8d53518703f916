"""A user's own function on the embedded model: how many of its proposals are INVALID, and why.

    python benchmarks/byop_embedded.py [--seeds 3] [--steps 4] [--store byop.db] [--label LABEL] [-- FLAGS...]

The problem is the README's "Bring your own problem" path with three inputs of the three kinds
a user's function has: an integer ``n`` in [-10, 10], a bounded float ``t`` in [0, 5] and an
enum ``kind`` (``objective`` below, run as ``llmopt run function --objective
benchmarks/byop_embedded.py:objective --schema <SCHEMA>``). Each seed is one ordinary run with
the embedded model (OPRO, structured output: llama.cpp's grammar from the schema), 8 proposals a
step; FLAGS after ``--`` are passed to every run (``--scores rounded`` to show the scores as
before). Prints, per run and in total, the proposals (starting points excluded), how many were
INVALID, and how many of those were out of the schema's bounds (a number outside its range, or
a kind not in the enum). Runs already in the store are read back, not run again; a run's name
says its label and seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main as llmopt_main  # noqa: E402
from llmopt.experiments.report import format_table, markdown_table  # noqa: E402
from llmopt.history import TrialState  # noqa: E402
from llmopt.store import RunStore  # noqa: E402

SCHEMA = {"type": "object", "required": ["n", "t", "kind"], "additionalProperties": False, "properties": {
    "n": {"type": "integer", "minimum": -10, "maximum": 10},
    "t": {"type": "number", "minimum": 0, "maximum": 5},
    "kind": {"enum": ["linear", "square", "root"]}}}
DESCRIPTION = "Minimize the cost of a setting: an integer n, a number t and a kind."
#: Words of jsonschema's complaints about a value outside the schema's bounds.
OUT_OF_BOUNDS = ("less than the minimum", "greater than the maximum", "is not one of")


def objective(s: dict[str, Any]) -> float:
    """The user's function: its optimum is n = 3, t = 1.7, kind = "square" (value 0.5)."""
    weight = {"linear": 2.0, "square": 1.0, "root": 3.0}[s["kind"]]
    return (s["n"] - 3) ** 2 + weight * (s["t"] - 1.7) ** 2 + weight / 2


def run_one(label: str, seed: int, steps: int, store: str, flags: list[str]) -> float:
    name = f"byop-{label}-seed{seed}"
    if Path(store).exists():
        with RunStore(store, readonly=True) as s:
            if s.find_run(name) is not None:  # done before: read back, not run again
                return 0.0
    argv = ["run", "function", "--objective", f"{Path(__file__).resolve()}:objective", "--schema",
            json.dumps(SCHEMA), "--description", DESCRIPTION, "--seed", str(seed), "--steps", str(steps),
            "--no-stop-when-solved", "--store", store, "--name", name, "--quiet", *flags]
    started = time.monotonic()
    code = llmopt_main(argv)
    if code != 0:
        raise SystemExit(f"llmopt {' '.join(argv)} exited {code}")
    return time.monotonic() - started


def counts(store: RunStore, name: str) -> dict[str, int]:
    trials = [t for t in store.trials(store.get_run(name).id) if t.source != "start"]
    invalid = [t for t in trials if t.state is TrialState.INVALID]
    bounds = [t for t in invalid if any(w in (t.error or "") for w in OUT_OF_BOUNDS)]
    return {"proposals": len(trials), "invalid": len(invalid), "out of bounds": len(bounds),
            "duplicate": sum(1 for t in trials if t.state is TrialState.DUPLICATE),
            "complete": sum(1 for t in trials if t.state is TrialState.COMPLETE)}


def table(store_path: str, label: str, seeds: int) -> list[list[Any]]:
    rows: list[list[Any]] = [["run", "proposals", "invalid", "of them out of bounds", "duplicate", "scored",
                              "invalid %"]]
    total = {"proposals": 0, "invalid": 0, "out of bounds": 0, "duplicate": 0, "complete": 0}
    with RunStore(store_path, readonly=True) as store:
        for seed in range(seeds):
            c = counts(store, f"byop-{label}-seed{seed}")
            total = {k: total[k] + c[k] for k in total}
            rows.append([f"seed {seed}", c["proposals"], c["invalid"], c["out of bounds"], c["duplicate"],
                         c["complete"], f"{100 * c['invalid'] / max(c['proposals'], 1):.0f}"])
    rows.append(["all", total["proposals"], total["invalid"], total["out of bounds"], total["duplicate"],
                 total["complete"], f"{100 * total['invalid'] / max(total['proposals'], 1):.0f}"])
    return rows


def main() -> int:
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--store", default="byop.db")
    p.add_argument("--label", default="default", help="names the runs (byop-<label>-seed<S>)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    for seed in range(args.seeds):
        spent = run_one(args.label, seed, args.steps, args.store, flags)
        if spent:
            print(f"seed {seed}: {spent:.0f} s", file=sys.stderr)
    rows = table(args.store, args.label, args.seeds)
    print(markdown_table(rows) if args.markdown else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
