"""Grid wall time against ``llmopt compare --jobs N`` (1, 2, 4, 8), and on a local Dask cluster.

    python benchmarks/grid_jobs.py [--delay 0.2] [--steps 20] [--cpu-steps 6] [--cells 8] [--cpu-ms 40]

Two grids of ``--cells`` cells (one configuration, that many seeds), each run into a fresh store
through ``llmopt.compare`` (the command's code) at each ``jobs``:

* latency-bound: OPRO on linear regression against a loopback OpenAI-compatible server
  (tests/openai_server.py) whose every reply takes ``--delay`` seconds, through litellm; each reply
  is a fresh random pair, so a step is one round of 4 concurrent calls (no redraws of duplicates).
  A cell waits on the network most of the time. Goal (issue 29): speedup >= 0.8 x N at N = 4.
* CPU-bound: random search on a user's function (``llmopt run function --objective``) that burns
  ``--cpu-ms`` of CPU per call. It cannot scale past the machine's cores.

Then the latency-bound grid as tasks of a Dask LocalCluster of 2 single-threaded worker processes
(``--executor dask``), its wall time including the cluster's start and the workers' imports.

"trials = sequential": every cell's trials (every column but the time of writing) equal the
jobs=1 grid's. The one-time start is timed apart and said below the table: importing litellm in
this process (what a sequential grid pays once) and starting the forkserver that the cells'
processes fork from (it imports llmopt and litellm once, whatever N); the rows are warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

COSTLY = '''
import time

def f(s):
    """(x - 3)^2 + (y + 1)^2, after burning CPU_MS of CPU."""
    end = time.process_time() + CPU_MS / 1000.0
    n = 0
    while time.process_time() < end:
        n += 1
    return (s["x"] - 3) ** 2 + (s["y"] + 1) ** 2
'''


def llm_grid(api_base: str, cells: int, steps: int) -> dict[str, Any]:
    return {"name": "latency", "seeds": cells,
            "defaults": {"steps": steps, "proposals": 4, "no-stop-when-solved": True},
            "problems": {"linreg": {}},
            "configs": {"opro": {"model": "openai/fake", "api-base": api_base, "api-key-env": "GRID_BENCH_KEY",
                                 "structured": "off"}}}


def cpu_grid(folder: Path, cells: int, steps: int, cpu_ms: int) -> dict[str, Any]:
    (folder / "costly.py").write_text(COSTLY.replace("CPU_MS", str(cpu_ms)))
    (folder / "space.json").write_text(json.dumps({
        "type": "object", "required": ["x", "y"],
        "properties": {"x": {"type": "integer", "minimum": -50, "maximum": 50},
                       "y": {"type": "integer", "minimum": -50, "maximum": 50}}}))
    return {"name": "cpu", "seeds": cells,
            "defaults": {"steps": steps, "proposals": 4, "no-stop-when-solved": True, "proposer": "random"},
            "problems": {"fn": {"problem": "function", "objective": str(folder / "costly.py") + ":f",
                                "schema": str(folder / "space.json")}},
            "configs": {"random": {}}}


def trials(store: Path) -> dict[str, list[dict[str, Any]]]:
    from llmopt import RunStore

    with RunStore(store, readonly=True) as s:
        return {r.name: [{k: v for k, v in row.items() if k != "created"} for row in s.records("trials", r.id)]
                for r in s.runs()}


def timed(grid: dict[str, Any], store: Path, **options: Any) -> float:
    import llmopt

    started = time.perf_counter()
    done = llmopt.compare(grid, store=str(store), progress=False, references=False, **options)
    elapsed = time.perf_counter() - started
    if not done.ok or not all(o.finished for o in done.outcomes):
        raise SystemExit(f"{store}: a cell did not finish: {done.failed}")
    return elapsed


def speedup_row(label: str, run: str, elapsed: float, t1: float, n: int, same: bool) -> list[str]:
    """One row of the table: wall seconds, speedup t1/tN as a ratio, speedup per job (the goal's
    0.8 at N = 4 for the latency-bound grid), and whether the trials equal the sequential grid's."""
    return [label, run, f"{elapsed:.2f}", f"{t1 / elapsed:.2f}", f"{t1 / elapsed / n:.2f}", "yes" if same else "NO"]


def sweep(label: str, grid: dict[str, Any], folder: Path, jobs: list[int]) -> list[list[str]]:
    rows, t1, reference = [], None, None
    for n in jobs:
        store = folder / f"{label}-{n}.db"
        elapsed = timed(grid, store, jobs=n)
        t1 = t1 or elapsed
        mine = trials(store)
        reference = reference or mine
        rows.append(speedup_row(label, f"jobs {n}", elapsed, t1, n, mine == reference))
        print(f"  {label} jobs {n}: {elapsed:.2f} s", file=sys.stderr)
    return rows


def table(rows: list[list[str]]) -> str:
    head = ["grid", "run", "wall s", "speedup t1/tN", "per job (speedup/N)", "trials = sequential"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per model reply (default 0.2)")
    parser.add_argument("--steps", type=int, default=20, help="steps per latency-bound cell (default 20)")
    parser.add_argument("--cpu-steps", type=int, default=6, help="steps per CPU-bound cell (default 6)")
    parser.add_argument("--cells", type=int, default=8, help="cells per grid (seeds; default 8)")
    parser.add_argument("--cpu-ms", type=int, default=40, help="CPU milliseconds per objective call (default 40)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    load = os.getloadavg()[0]
    import numpy as np
    from openai_server import OpenAIServer

    import llmopt
    from llmopt.llm._litellm import import_litellm

    os.environ["GRID_BENCH_KEY"] = "sk-grid-bench-000000"

    def slow(prompt: str, seed: int) -> str:
        """A fresh pair each reply (so a step is one round of calls, no redraws), after the delay."""
        time.sleep(args.delay)
        w, b = np.random.default_rng(seed).integers(-1000, 1000, size=2)
        return f"[{w}, {b}]"

    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(slow) as server:
        folder = Path(tmp)
        started = time.perf_counter()
        import_litellm()
        litellm_s = time.perf_counter() - started
        warm = llm_grid(server.api_base, 1, 1)
        started = time.perf_counter()
        llmopt.compare(warm, store=str(folder / "warm.db"), jobs=2, progress=False, references=False)
        fork_s = time.perf_counter() - started
        rows = sweep("latency-bound", llm_grid(server.api_base, args.cells, args.steps), folder, args.jobs)
        rows += sweep("CPU-bound", cpu_grid(folder, args.cells, args.cpu_steps, args.cpu_ms), folder, args.jobs)
        dask_store = folder / "dask.db"
        elapsed = timed(llm_grid(server.api_base, args.cells, args.steps), dask_store, executor="dask", jobs=2)
        t1 = float(rows[0][2])
        same = trials(dask_store) == trials(folder / "latency-bound-1.db")
        rows.append(speedup_row("latency-bound", "dask, 2 workers", elapsed, t1, 2, same))
    print(table(rows))
    print(f"\none-time start: import litellm in this process {litellm_s:.1f} s; first --jobs grid (forkserver start: "
          f"llmopt and litellm imported once, then a 1-cell grid) {fork_s:.1f} s")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"{args.cells} cells a grid, 4 proposals a step; latency-bound: {args.steps} steps, reply delay {args.delay} s; "
          f"CPU-bound: {args.cpu_steps} steps, objective {args.cpu_ms} ms CPU a call; {model}, {os.cpu_count()} cores; "
          f"load average before: {load:.2f}; Python {platform.python_version()}")


if __name__ == "__main__":
    main()
