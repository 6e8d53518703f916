"""``llmopt compare``: a grid from a TOML file or flags, run into one store, then its tables."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from llmopt.budget import StopReason
from llmopt.cli.run_options import add_tracking_arguments, parse_cell
from llmopt.experiments.compare import Collected, Outcome, collect
from llmopt.experiments.grid import (
    DEFAULT_SEEDS,
    Grid,
    GridError,
    grid_from_dict,
    load_grid,
    parse_seeds,
    sweep_configs,
    tomllib,
)
from llmopt.experiments.parallel import EXECUTORS, run_parallel
from llmopt.experiments.plot import write_figures
from llmopt.experiments.report import format_table, markdown_table
from llmopt.experiments.tables import TableOptions, parse_budget, parse_gap, tables
from llmopt.proposers import registry
from llmopt.store import DEFAULT_STORE


def _value(text: str) -> Any:
    """A command-line value as TOML reads it (numbers, booleans, lists), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """KEY=VALUE words (--set, --sweep) as a dict, values read as TOML (the grid benchmark uses it too)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GridError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = _value(value.strip())
    return out


def grid_from_args(args: argparse.Namespace) -> Grid:
    settings = assignments(args.set, "--set")
    if "proposer" in {k.replace("_", "-") for k in settings}:
        raise GridError("--set proposer=...: a row's proposer is its configuration's (--proposers, or proposer = ... "
                        "in a [configs] table of the grid file), so that its label says what ran")
    if args.grid:
        if args.problems or args.proposers or args.models or args.sweep:
            raise GridError("with a grid file, only --seeds, --set and --store apply "
                            "(put problems, proposers and models in the file)")
        grid = load_grid(args.grid)
        seeds = parse_seeds(args.seeds, "--seeds") if args.seeds is not None else None
        return grid.with_overrides(seeds=seeds, defaults={k.replace("_", "-"): v for k, v in settings.items()})
    if not args.problems:
        raise GridError("give a grid file or --problems (see llmopt compare --help)")
    configs: dict[str, dict[str, Any]] = {}
    for proposer in args.proposers or ["llm", "random"]:
        if proposer == "random" or proposer.startswith("optuna:"):
            configs[proposer.split(":")[-1]] = {"proposer": proposer}  # rows "random", "tpe", "cmaes"
        elif proposer != "llm":  # EvoPrompt's GA and DE: one row per model, like OPRO's
            for model in args.models or [None]:
                label = proposer if model is None else f"{proposer} {model}"
                configs[label] = {"proposer": proposer, **({} if model is None else {"model": model})}
        else:
            for model in args.models or [None]:
                label = "opro" if model is None else f"opro {model}"
                configs[label] = {} if model is None else {"model": model}
    configs.update(swept(configs, assignments(args.sweep, "--sweep"), given=bool(args.proposers)))
    data = {"name": args.name, "seeds": DEFAULT_SEEDS if args.seeds is None else args.seeds, "defaults": settings,
            "problems": {p: {} for p in args.problems}, "configs": configs}
    return grid_from_dict(data, name=args.name, source="command line")


def swept(configs: dict[str, dict[str, Any]], sweep: dict[str, Any], *, given: bool) -> dict[str, dict[str, Any]]:
    """The rows a command-line ``--sweep`` adds: each value applied to each configuration given with
    ``--proposers`` (without it, to the LLM rows: the random control stays the control), labelled
    ``<configuration> <option>=<value>`` so that the label names what ran."""
    if not sweep:
        return {}
    bases = [label for label, config in configs.items() if given or config.get("proposer", "llm") != "random"]
    out: dict[str, dict[str, Any]] = {}
    for base in bases:
        one = {k: v if isinstance(v, list) else [v] for k, v in sweep.items()}
        for label, options in sweep_configs({**one, "base": base}, configs, "--sweep").items():
            out[f"{base} {label}"] = options
    return out


def table_options(args: argparse.Namespace) -> TableOptions:
    """The statistics flags; a bad value is one line (GridError) before anything runs."""
    if args.target is not None and args.target_gap is not None:
        raise GridError("give --target or --target-gap, not both")
    return TableOptions(control=args.control, target=args.target,
                        target_gap=None if args.target_gap is None else parse_gap(args.target_gap),
                        budget=None if args.budget is None else parse_budget(args.budget))


def print_tables(collected: Collected, markdown: bool, options: TableOptions = TableOptions(),
                 csv_out: bool = False) -> None:
    computed = tables(collected, options)
    if csv_out:  # one header, the union of the tables' columns (each drops the columns empty for it)
        columns = list(dict.fromkeys(["problem", *(c for rows in computed.values() for c in rows[0])]))
        writer = csv.DictWriter(sys.stdout, columns, restval="-", lineterminator="\n")
        writer.writeheader()
        for plabel, rows in computed.items():
            writer.writerows({"problem": plabel, **dict(zip(rows[0], row))} for row in rows[1:])
        return
    for plabel, rows in computed.items():
        commands = {o.cell.command for o in collected.outcomes if o.cell.problem == plabel}
        print(f"\n{plabel} ({', '.join(sorted(commands))}; seeds {', '.join(map(str, collected.grid.seeds))})")
        print(markdown_table(rows) if markdown else format_table(rows))
        for note in rows.notes:
            print(f"{'* ' if markdown else '  '}{note}")


@dataclass
class Comparison:
    """What ``llmopt compare`` computes, for Python (:func:`compare`).

    ``collected``: every cell's outcome as read back (``outcomes``), the references, the grid;
    ``tables``: problem label -> rows (the first row is the header), the numbers the command prints
    (:func:`llmopt.experiments.tables.tables`; ``text()`` formats them as it does); ``failed``: the
    cells that raised or whose process died, ``(run name, why)``, resumed by the next call;
    ``interrupted``: Ctrl-C stopped the grid (resumed by the next call too)."""

    collected: Collected
    tables: dict[str, Any] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def outcomes(self) -> list[Outcome]:
        return self.collected.outcomes

    @property
    def ok(self) -> bool:
        """Every cell ran to its stop."""
        return not self.failed and not self.interrupted

    def text(self, markdown: bool = False, options: TableOptions = TableOptions()) -> str:
        """The tables as ``llmopt compare`` prints them."""
        out = io.StringIO()
        with redirect_stdout(out):
            print_tables(self.collected, markdown, options)
        return out.getvalue()


def run_grid(grid: Grid, store: str, *, run: bool = True, jobs: int = 1, executor: str | None = None,
             address: str | None = None, with_references: bool = True, progress: bool = True,
             events: bool = True) -> Comparison:
    """Run (or only read) a grid into ``store``: one cell after another in this process (``jobs`` 1,
    no ``executor``), else ``jobs`` cells at once (:mod:`llmopt.experiments.parallel`). ``progress``:
    each run's bar, or the grid's state line; ``events``: the line as each cell starts and ends.
    The tables are left to the caller (they depend on its statistics options)."""
    if not run:
        return Comparison(collect(grid, store, run=False, parse=parse_cell, with_references=with_references))
    if jobs == 1 and executor is None:
        collected = collect(grid, store, run=True, parse=parse_cell, with_references=with_references, progress=progress,
                            **({} if events else {"log": lambda line: None}))
        return Comparison(collected, interrupted=collected.stopped is StopReason.INTERRUPTED)
    done = run_parallel(grid, store, parse_cell, jobs=jobs, executor=executor or "processes", address=address,
                        with_references=with_references, progress=progress, events=events)
    assert done.collected is not None
    return Comparison(done.collected, failed=done.failed, interrupted=done.interrupted)


def compare(grid: "str | os.PathLike[str] | Grid | Mapping[str, Any]", store: str | None = None, *, jobs: int = 1,
            executor: str | None = None, address: str | None = None, seeds: Any = None,
            settings: Mapping[str, Any] | None = None, run: bool = True, references: bool = True,
            control: str | None = None, target: float | None = None, target_gap: str | None = None,
            budget: str | None = None, progress: bool = True) -> Comparison:
    """``llmopt compare`` from Python: run a grid (a TOML file's path, a :class:`Grid`, or the
    file's content as a dict) into ``store`` (default: the grid's, else runs.db) and compute its
    tables. ``jobs``: cells at once, each in its own process (1: one after another, here);
    ``executor="dask"``: cells as tasks of the Dask scheduler at ``address`` (default: a local
    cluster of ``jobs`` workers). ``seeds`` (a count or a list) and ``settings`` (options for every
    run, like ``--set``) override the grid's; ``control``, ``target``, ``target_gap`` ("1%") and
    ``budget`` ("evals=200") are the statistics flags; ``progress=False``: nothing on stderr. Bad
    input raises :class:`GridError` before anything runs. A script that uses ``jobs > 1`` needs the
    usual ``if __name__ == "__main__":`` guard (the cells' processes import the main module)."""
    if isinstance(grid, Grid):
        loaded = grid
    elif isinstance(grid, Mapping):
        loaded = grid_from_dict(dict(grid), name=str(grid.get("name", "compare")), source="grid")
    else:
        loaded = load_grid(Path(grid))
    loaded = loaded.with_overrides(seeds=None if seeds is None else parse_seeds(seeds, "seeds"),
                                   defaults={k.replace("_", "-"): v for k, v in (settings or {}).items()})
    options = TableOptions(control=control, target=target, target_gap=None if target_gap is None else parse_gap(target_gap),
                           budget=None if budget is None else parse_budget(budget))
    done = run_grid(loaded, store or loaded.store or DEFAULT_STORE, run=run, jobs=jobs, executor=executor,
                    address=address, with_references=references, progress=progress, events=progress)
    done.tables = tables(done.collected, options)
    return done


class CompareCommand:
    """Run a grid of experiments (problem x configuration x seed) into one store, resuming what
is done, and print one table per problem: per configuration what ran (proposer, model, a control's
search space), the evaluations, the median with its interquartile range and the median's 95% CI,
success rates with Wilson intervals, COCO's aRT, and a test against the control (Holm-corrected),
with the problem's baselines and optimum as rows.

  llmopt compare experiments/demo.toml             # a grid file (see experiments/)
  llmopt compare --problems linreg tsp --seeds 10 --set steps=10 --budget evals=40 --target-gap 1%
  llmopt compare --problems linreg --sweep temperature=[0.0,1.0,2.0] --proposers llm
"""

    HELP = "run a grid of experiments and print comparison tables"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser, figures: bool = True) -> None:
        if figures:
            p.add_argument("grid", nargs="?", help="a TOML grid file")
        else:  # llmopt plot: a grid's runs, or any runs of a store
            p.add_argument("grid", nargs="*", metavar="GRID_OR_STORE",
                           help="a TOML grid file; or a store (same as --store) and/or names of its runs "
                                "(default: every run of the store)")
        store_default, seeds_default = f"the grid's, else {DEFAULT_STORE}", f"the grid file's, else {DEFAULT_SEEDS}"
        if not figures:
            seeds_default += "; without a grid, every seed in the store"
        p.add_argument("--store", help=f"run store (default: {store_default})")
        p.add_argument("--seeds", type=_seeds_arg,
                       help=f"a count (3 = seeds 0,1,2) or a list such as [0,4,7] (default: {seeds_default})")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="an `llmopt run` option for every run, e.g. steps=10 (repeatable)")
        p.add_argument("--problems", nargs="+", metavar="PROBLEM", help="problems, with their default options")
        p.add_argument("--proposers", nargs="+", choices=registry.names(),
                       help="proposers, for a grid from flags (default: llm random; optuna:tpe and optuna:cmaes "
                            "are the rows tpe and cmaes; llm-iid and llm-scs, the LLM controls, a row per model)")
        p.add_argument("--models", nargs="+", help="litellm model strings for the llm proposer")
        p.add_argument("--sweep", action="append", default=[], metavar="KEY=[V1,V2]",
                       help="one configuration per value of an option, for each configuration of --proposers (without "
                            "it: the LLM rows), labelled '<configuration> KEY=VALUE' (repeatable)")
        p.add_argument("--name", default="compare", help="grid name for the command-line case (default compare)")
        p.add_argument("--no-references", action="store_true", help="leave out the classical baselines")
        p.add_argument("--control", help="the configuration each row is tested against (default: random, if present)")
        p.add_argument("--target", type=float, help="also the aRT (average evaluations) to reach this value")
        p.add_argument("--target-gap", metavar="PCT", help="also the aRT to this gap to the optimum, e.g. 1%%")
        p.add_argument("--budget", metavar="AXIS=AMOUNT",
                       help="also compare the best value within a spend: evals=200, tokens=50000, usd=1 or seconds=60")
        if figures:
            p.add_argument("--no-run", action="store_true", help="only print the tables of what is in the store")
            p.add_argument("--markdown", action="store_true", help="tables in Markdown")
            p.add_argument("--csv", action="store_true", help="tables as CSV on stdout (one header, a problem column)")
            p.add_argument("--plot", metavar="DIR", help="also write the figures (see llmopt plot) to DIR")
            p.add_argument("--quiet", action="store_true",
                           help="no progress bar of each run (the line naming each cell stays)")
            add_tracking_arguments(p.add_argument_group("tracking (each cell one MLflow run, tagged llmopt.grid)"))
            p.add_argument("--jobs", type=_jobs_arg, default=1, metavar="N",
                           help="run N cells at once, each in its own process (default 1: one after another, "
                                "in this process); with --executor dask, the workers of its local cluster")
            p.add_argument("--executor", choices=EXECUTORS,
                           help="where cells run: processes of this machine (the default with --jobs N > 1) or "
                                "tasks of a Dask cluster (see docs/grids-on-many-workers.md)")
            p.add_argument("--address", metavar="tcp://HOST:PORT",
                           help="the Dask scheduler to send cells to (default: a local cluster of --jobs workers); "
                                "across machines the store must be one they share (PostgreSQL)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        grid = grid_from_args(args)
        if args.mlflow:  # every cell's run is logged, as `--set mlflow=URI` would have it
            grid = grid.with_overrides(defaults={"mlflow": args.mlflow, "mlflow-experiment": args.mlflow_experiment})
        options = table_options(args)
        store = args.store or grid.store or DEFAULT_STORE
        if args.address and args.executor != "dask":
            raise GridError("--address is the Dask scheduler's: give it with --executor dask")
        try:
            done = run_grid(grid, store, run=not args.no_run, jobs=args.jobs, executor=args.executor,
                            address=args.address, with_references=not args.no_references, progress=not args.quiet)
        except KeyboardInterrupt:
            print(f"\ninterrupted: run the same command again to resume (store {store})", file=sys.stderr)
            return 130
        print_tables(done.collected, args.markdown, options, csv_out=args.csv)
        if args.plot:
            for path in write_figures(done.collected, args.plot):
                print(f"wrote {path}")
        return finish(done, store)


def finish(done: "Comparison", store: str) -> int:
    """The end of a grid on stderr: each failed cell in one line, how to resume; the exit status."""
    for name, why in done.failed:
        print(f"llmopt: error: cell {name} failed: {why}", file=sys.stderr)
    if done.failed:
        print(f"{len(done.failed)} of {len(done.collected.outcomes)} cells failed: run the same command again to "
              f"resume them (finished cells are not run again; store {store})", file=sys.stderr)
    if done.interrupted:
        print(f"\ninterrupted: run the same command again to resume (store {store})", file=sys.stderr)
        return 130
    return 1 if done.failed else 0


def _jobs_arg(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"a number of cells at once, >= 1, got {text!r}")
    return jobs


def _seeds_arg(text: str) -> Any:
    value = _value(text)
    try:
        parse_seeds(value, "--seeds")
    except GridError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value
