"""``llmopt plot``: figures of a store's runs, or of a grid's (see :mod:`llmopt.experiments.plot`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmopt.cli.compare import CompareCommand, grid_from_args
from llmopt.cli.run_options import parse_cell
from llmopt.experiments.compare import Collected, collect
from llmopt.experiments.grid import parse_seeds
from llmopt.experiments.grouping import collect_runs
from llmopt.experiments.plot import FORMATS, X_AXES, write_figures
from llmopt.store import DEFAULT_STORE, is_url, open_store, store_exists


class PlotCommand:
    """Figures of runs (read from the store; nothing is run): best so far against step, scored
solutions, tokens, dollars or seconds (--x; median over seeds with a 95% bootstrap band, the
baselines as lines), the fixed-target ECDF (the fraction of (run, target) pairs reached against
evaluations, over the problem's ladder of targets), a histogram of proposal scores per step, for
runs that ran validations (--eval-every) training against validation score by step
(<problem>-overfitting, the OPRO paper's Figure 11), for MAP-Elites runs the archive as a heatmap
(<problem>-archive-<configuration>) and for island runs each island's best by step, resets marked
(<problem>-islands-<configuration>), both of each configuration's first seed, and, for a grid, the
best solutions drawn (TSP tours).

  llmopt plot --out figures/                          # every run of llmopt run's store
  llmopt plot --store runs.db linreg-llm-seed0 linreg-random-seed0 --out figures/
  llmopt plot experiments/demo.toml --out figures/demo    # a grid's runs (llmopt compare)

Without a grid, runs are grouped by problem and configuration (seed and budget aside), one line
per configuration with a band over its seeds.
"""

    HELP = "figures (PNG and SVG) of a store's runs, or of a grid's"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        CompareCommand.add_arguments(p, figures=False)
        p.add_argument("--out", default="figures", help="directory for the figures (default: figures)")
        p.add_argument("--x", nargs="+", choices=X_AXES, default=["step", "evals"], metavar="AXIS",
                       help="x axes of the best-so-far figures: step, evals, tokens, usd, seconds (default: step evals)")
        p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS), metavar="FORMAT",
                       help="the files each figure is written as (default: png svg; one alone takes half the time)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        collected, _ = selected_runs(args)
        for path in write_figures(collected, args.out, args.x, formats=tuple(args.formats)):
            print(f"wrote {path}")
        return 0


def _is_store(path: str) -> bool:
    """A PostgreSQL store's URL, or a SQLite file (a run store), told by its header, not its name."""
    if is_url(path):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def selected_runs(args: argparse.Namespace) -> tuple[Collected, str]:
    """The runs that ``llmopt plot`` and ``llmopt report`` show, read from the store (nothing is run
    or written), and the store's path: a grid's cells (a grid file, or --problems) when one is
    given, else the store's runs (the named ones, or all; --seeds filters). ValueError, one line:
    no store, no runs, or grid flags without a grid."""
    sources = list(args.grid or [])
    if sources and _is_store(sources[0]):  # `llmopt report runs.db`: the store itself, then run names
        if args.store and Path(args.store).resolve() != Path(sources[0]).resolve():
            raise ValueError(f"two stores: {sources[0]} and --store {args.store}")
        args.store = sources.pop(0)
    grid_file = sources[0] if sources and (sources[0].endswith(".toml") or Path(sources[0]).is_file()) else None
    if grid_file is None and not args.problems:  # any runs of a store
        if args.set or args.sweep or args.proposers or args.models:
            raise ValueError("--set, --sweep, --proposers and --models describe a grid: give a grid file or "
                             "--problems, or name runs already in the store without them")
        store = args.store or DEFAULT_STORE
        if not store_exists(store):
            raise ValueError(f"no store at {store}")
        seeds = parse_seeds(args.seeds, "--seeds") if args.seeds is not None else None
        with open_store(store, readonly=True) as opened:  # only read: nothing is written
            return collect_runs(opened, sources, seeds, with_references=not args.no_references), store
    if len(sources) > 1 or (sources and grid_file is None):
        raise ValueError("give one grid file (or --problems), or run names without a grid")
    args.grid = grid_file
    grid = grid_from_args(args)
    store = args.store or grid.store or DEFAULT_STORE
    if not store_exists(store):
        raise ValueError(f"no store at {store}: run `llmopt compare` first")
    collected = collect(grid, store, run=False, parse=parse_cell, with_references=not args.no_references)
    if not any(o.result is not None for o in collected.outcomes):
        raise ValueError(f"no run of grid {grid.name!r} in {store}: run `llmopt compare` first")
    return collected, store
