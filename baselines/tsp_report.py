"""``llmopt baselines tsp``: classical solvers against the exact optimum, in the paper's Table 3 layout.

Rows are methods, columns are instance sizes (or TSPLIB files); a cell is the median optimality
gap over seeds and the median wall time. With ``--store``, the OPRO runs and random controls
recorded there on the same instances are added as rows of the same table.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from baselines import tsp as solvers
from llmopt.experiments.compare import Reference
from llmopt.experiments.report import format_table, stored_history
from llmopt.problem import gap_pct
from llmopt.store import open_store
from problems.data import tsplib_file
from problems.tsp.instances import TSPInstance, random_instance, read_tour, read_tsplib, tour_length
from problems.tsp.problem import TravellingSalesman

REFERENCE_LABELS = {"nearest_neighbour": "nearest neighbour", "farthest_insertion": "farthest insertion",
                    "nearest_neighbour_2opt": "nearest neighbour + 2-opt", "christofides": "Christofides",
                    "ortools_guided_local_search": "OR-Tools GLS (1 s)", "lkh": "LKH-3"}

Cell = list[tuple[float, float]]  # (gap %, seconds) per instance


EXACT_LABELS = {"held_karp": "Held-Karp (exact)", "exact": "integer program (exact, HiGHS)"}


def solve(inst: TSPInstance, gls_time_s: float, exact_time_s: float) -> tuple[float, bool, dict[str, tuple[float, float]]]:
    """(optimum, proved, {method: (gap %, seconds)}) for one instance; the optimum is solved once."""
    results = solvers.all_baselines(inst, gls_time_s=gls_time_s, exact_time_s=exact_time_s)
    best = next(r for r in results if r.method in EXACT_LABELS)
    rows = {}
    for r in results:
        label = EXACT_LABELS.get(r.method, r.method)
        rows[label] = (gap_pct(r.length, best.length, TravellingSalesman.direction), r.seconds)
    return best.length, best.proved_optimal, rows


def store_rows(store_path: str, columns: dict[str, list[str]]) -> dict[str, dict[str, Cell]]:
    """Best gap of every stored TSP run whose instance is one of the table's, by proposer."""
    wanted = {name: column for column, names in columns.items() for name in names}
    out: dict[str, dict[str, Cell]] = defaultdict(lambda: defaultdict(list))
    with open_store(store_path, readonly=True) as store:
        for run in store.runs():
            problem = run.config.get("problem", {})
            column = wanted.get(problem.get("instance"))
            if problem.get("name") != "tsp" or column is None or not run.optimum:
                continue
            best = stored_history(store, run).best()
            proposer = run.config.get("proposer", {})
            label = f"OPRO {proposer['llm']['model']}" if proposer.get("kind") == "llm" else "random search (loop)"
            if best is not None:
                out[label][column].append((gap_pct(best.value, run.optimum, run.direction), run.elapsed_s))
    return out


def table(results: dict[str, dict[str, Cell]], columns: list[str]) -> list[list[str]]:
    rows = [["method", *columns]]
    for method, cells in results.items():
        row = [method]
        for column in columns:
            cell = cells.get(column, [])
            if not cell:
                row.append("-")
                continue
            gap = statistics.median(g for g, _ in cell)
            seconds = statistics.median(s for _, s in cell)
            row.append(f"{gap:.1f}% ({seconds:.2g}s)")
        rows.append(row)
    return rows


class CLI:
    HELP = "classical TSP solvers against the exact optimum (the paper's Table 3 layout)"

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.add_argument("--n", type=int, nargs="+", default=[10, 15, 20, 50], help="instance sizes (default 10 15 20 50)")
        p.add_argument("--seeds", type=int, default=5, help="instances per size, seeds 0..S-1 (default 5)")
        p.add_argument("--truncate", action="store_true", help="the official code's int()-truncated coordinates")
        p.add_argument("--tsplib", nargs="+", help="TSPLIB files instead of generated instances (or names in "
                       "tsplib/ of $LLMOPT_DATA or the package's data: eil51, berlin52)")
        p.add_argument("--store", help="add the TSP runs of this store as rows (same instances)")
        p.add_argument("--gls-time", type=float, default=2.0,
                       help="seconds for OR-Tools guided local search (default 2)")
        p.add_argument("--exact-time", type=float, default=60.0, help="seconds for proving each optimum (default 60)")

    @staticmethod
    def run(args: Any) -> int:
        results: dict[str, dict[str, Cell]] = defaultdict(lambda: defaultdict(list))
        columns: dict[str, list[str]] = {}
        notes: list[str] = []
        instances: list[tuple[str, TSPInstance, Path | None]] = []
        if args.tsplib:
            for name in args.tsplib:
                file = tsplib_file(name)
                inst = read_tsplib(file)
                instances.append((inst.name, inst, file))
        else:
            for n in args.n:
                instances += [(f"n={n}", random_instance(n, s, truncate=args.truncate), None)
                              for s in range(args.seeds)]
        for column, inst, path in instances:
            columns.setdefault(column, []).append(inst.name)
            optimum, proved, rows = solve(inst, args.gls_time, args.exact_time)
            for method, cell in rows.items():
                results[method][column].append(cell)
            if not proved:
                notes.append(f"{inst.name}: optimum not proved in {args.exact_time:g}s; gaps are to the best known")
            opt_tour = path.with_suffix(".opt.tour") if path is not None else None
            if opt_tour is not None and opt_tour.exists():
                known = tour_length(inst.dist, read_tour(opt_tour, inst.n))
                notes.append(f"{inst.name}: {'proved ' if proved else ''}optimum {optimum:g}; "
                             f"{opt_tour.name} has length {known:g}")
        if args.store:
            for method, cells in store_rows(args.store, columns).items():
                results[method].update(cells)
        print(format_table(table(results, list(columns))))
        for note in notes:
            print(note)
        return 0

    @staticmethod
    def references(problem: TravellingSalesman) -> list[Any]:
        """The classical solvers on the run's instance: rows of ``llmopt compare``'s table."""
        results = [solvers.nearest_neighbour(problem.instance), solvers.farthest_insertion(problem.instance),
                   solvers.nearest_neighbour_2opt(problem.instance), solvers.christofides(problem.instance),
                   solvers.ortools_guided_local_search(problem.instance, time_limit_s=1.0),
                   solvers.lkh(problem.instance)]
        return [Reference(REFERENCE_LABELS.get(r.method, r.method), r.length, r.seconds, r.tour) for r in results]
