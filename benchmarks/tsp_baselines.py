"""Classical TSP baselines against the proved optimum, on the paper's random instances.

    python benchmarks/tsp_baselines.py [--n 10 15 20 50 100 200] [--seeds 5] [--gls-time 2] [--exact-time 60]

For every size n and seed 0..S-1, solves ``random_instance(n, seed)`` with every baseline and
proves the optimum (Held-Karp for n <= 12, else the integer program). Prints, per method and
size, the median gap to the optimum (%) and the median wall time over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import tsp  # noqa: E402
from llmopt.report import format_table  # noqa: E402
from problems.tsp_instances import random_instance  # noqa: E402

REFERENCE = ("held_karp", "exact")


def measure(n: int, seeds: int, gls_time_s: float, exact_time_s: float,
            cells: dict[str, dict[int, list[tuple[float, float]]]], notes: list[str]) -> None:
    """Append (gap %, seconds) for every method on every seed of size n."""
    for seed in range(seeds):
        inst = random_instance(n, seed)
        results = tsp.all_baselines(inst, gls_time_s=gls_time_s, exact_time_s=exact_time_s)
        best = next(r for r in results if r.method in REFERENCE)
        if not best.proved_optimal:
            notes.append(f"{inst.name}: optimum not proved in {exact_time_s:g}s; gaps there are to the best found")
        for r in results:
            cells[r.method][n].append((100.0 * (r.length - best.length) / best.length, r.seconds))


def render(cells: dict[str, dict[int, list[tuple[float, float]]]], sizes: list[int]) -> str:
    rows: list[list[str]] = [["method", *(f"n={n}" for n in sizes)]]
    for method, by_n in cells.items():
        row = [method]
        for n in sizes:
            pairs = by_n.get(n)
            if not pairs:
                row.append("-")
                continue
            gap = statistics.median(g for g, _ in pairs)
            seconds = statistics.median(s for _, s in pairs)
            row.append(f"{gap:6.2f}% {seconds:8.3f}s")
        rows.append(row)
    return format_table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10, 15, 20, 50, 100, 200], help="instance sizes")
    ap.add_argument("--seeds", type=int, default=5, help="instances per size (seeds 0..S-1)")
    ap.add_argument("--gls-time", type=float, default=2.0, help="seconds for OR-Tools guided local search")
    ap.add_argument("--exact-time", type=float, default=60.0, help="seconds for proving each optimum")
    args = ap.parse_args()
    cells: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    notes: list[str] = []
    started = time.perf_counter()
    for n in args.n:
        measure(n, args.seeds, args.gls_time, args.exact_time, cells, notes)
    print(f"median gap to the optimum (%) and median wall time, {args.seeds} seed(s) per size; "
          f"reference: held_karp (n <= {tsp.EXACT_REFERENCE_MAX_N}) else exact")
    print(render(cells, args.n))
    for note in notes:
        print(note)
    print(f"total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
