"""``llmopt compare``: run a grid of experiments into one store and print the paper-style tables.

Every cell of the grid (problem x configuration x seed, see :mod:`llmopt.experiments.grid`) is one ordinary
``llmopt run``, stored under a name that says which cell it is. Running the same grid again
resumes whatever is unfinished and skips what is done (a finished run is reopened, its budget
re-checked, and nothing is asked again), so an interrupted grid costs nothing twice. The tables
are then computed from the store: one per problem, one row per configuration, with the
problem's classical baselines and its optimum as rows of the same table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from llmopt.budget import StopReason
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.report import Table
from llmopt.experiments.runs import UsageError, baseline_hook, execute, open_run, prepare_run, run_parser
from llmopt.history import TrialState
from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem, gap_pct
from llmopt.store import RunStore


class _RaisingParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a bad grid cell is reported with its label."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GridError(message)


# --- from a cell to the arguments of one run -------------------------------------------------

def cell_argv(cell: Cell, parser: argparse.ArgumentParser) -> list[str]:
    """The ``llmopt run <problem>`` flags of a cell (TOML values to command-line words)."""
    argv: list[str] = []
    actions = parser._option_string_actions  # the public API has no lookup by flag
    for key, value in cell.options.items():
        flag = f"--{key}"
        action = actions.get(flag)
        if action is None:
            raise GridError(f"unknown option {key!r} for `llmopt run {cell.command}`")
        if value is None:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise GridError(f"option {key!r} is a switch: true or false, got {value!r}")
            if value != action.default:
                argv.append(flag)
            continue
        if isinstance(value, bool):
            raise GridError(f"option {key!r} takes a value, got {value!r}")
        values = value if isinstance(value, list) else [value]
        if isinstance(action, argparse._AppendAction):
            for v in values:
                argv += [flag, str(v)]
        else:
            argv += [flag, *map(str, values)]
    return argv + ["--seed", str(cell.seed), "--name", cell.name, "--quiet"]


def parse_cell(cell: Cell) -> argparse.Namespace:
    """Parsed run arguments of a cell; a GridError names the cell on any bad option. (The store is
    the grid's, opened by :func:`collect`, not an option of the cell.)"""
    try:
        parser = run_parser(cell.command, _RaisingParser)
        return parser.parse_args(cell_argv(cell, parser))
    except (GridError, UsageError) as exc:
        raise GridError(f"{cell.problem}/{cell.config}: {exc}") from None


# --- one run's numbers ----------------------------------------------------------------------

@dataclass
class Outcome:
    """A cell's run as read back from the store (``result`` None: not run yet)."""

    cell: Cell
    problem: Problem
    result: RunResult | None = None
    finished: bool = False  # False: not run, interrupted, or still running in another process

    def best(self) -> float | None:
        best = self.result.best if self.result else None
        return None if best is None else float(best.value)

    def gap_pct(self) -> float | None:
        best = self.best()
        return None if best is None else self.problem.gap_pct(best)

    def proposed(self) -> list[Any]:
        return [t for t in self.result.history if t.source != "start"] if self.result else []

    def unique(self) -> int:
        return len({t.key for t in self.proposed() if t.state in (TrialState.COMPLETE, TrialState.DUPLICATE)})

    def valid_pct(self) -> float | None:
        proposed = self.proposed()
        parsed = [t for t in proposed if t.state in (TrialState.COMPLETE, TrialState.DUPLICATE)]
        return 100.0 * len(parsed) / len(proposed) if proposed else None

    def evals_to_solve(self) -> int | None:
        """Scored solutions up to and including the first optimal one (starting points count)."""
        if self.result is None or self.result.solved_step is None:
            return None
        count = 0
        for t in self.result.history:
            if t.state is TrialState.COMPLETE:
                count += 1
                if self.problem.is_solved(t.solution):
                    return count
        return None


@dataclass(frozen=True)
class Reference:
    """A non-LLM answer to the same instance: a classical solver, a fixed prompt, the optimum."""

    name: str
    value: float
    seconds: float | None = None
    solution: Any = field(default=None, compare=False)


def references(command: str, problem: Problem) -> list[Reference]:
    """The classical baselines of the problem (the ``references(problem)`` hook of its entry in the
    ``llmopt.baselines`` group: baselines attach themselves, problems never import them), plus
    the known optimum."""
    hook = baseline_hook(command, "references")
    out = [Reference(*r) if isinstance(r, tuple) else r for r in (hook(problem) if hook else [])]
    if problem.optimum is not None and not any(r.name.startswith("optimum") for r in out):
        out.append(Reference("optimum", float(problem.optimum)))
    return out


# --- running the grid -----------------------------------------------------------------------

@dataclass
class Collected:
    grid: Grid
    outcomes: list[Outcome]
    references: dict[str, dict[int, list[Reference]]]  # problem label -> seed -> references
    stopped: StopReason | None = None


def collect(grid: Grid, store_path: str, *, run: bool, with_references: bool = True,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
            progress: bool = False) -> Collected:
    """Run (``run=True``) or only read back every cell of the grid, in order; ``progress``: each
    run shows its progress bar (on stderr, after the line saying which cell it is)."""
    parsed = [(cell, parse_cell(cell)) for cell in grid.cells()]  # every cell's options checked first,
    prepared = [(cell, args, prepare_run(args, calls=run)) for cell, args in parsed]  # then models and keys
    out = Collected(grid, [], {})
    with RunStore(store_path, readonly=not run) as store:  # only reading: nothing created or written
        for i, (cell, args, (problem, proposer, budget)) in enumerate(prepared, 1):
            if with_references and cell.seed not in out.references.setdefault(cell.problem, {}):
                out.references[cell.problem][cell.seed] = references(cell.command, problem)
            record = store.find_run(cell.name)
            exists = record is not None
            outcome = Outcome(cell, problem, finished=exists and record.status == "finished")
            out.outcomes.append(outcome)
            if not exists and not run:
                continue
            args.resume = exists
            opt = open_run(args, store, problem, proposer, budget)
            if not run:
                outcome.result = opt.result()
                continue
            log(f"[{i}/{len(prepared)}] {cell.name}: {'resuming' if exists else 'starting'}")
            outcome.result = execute(opt, args, progress_bar=progress)
            outcome.finished = outcome.result.stop_reason is not StopReason.INTERRUPTED
            log(f"[{i}/{len(prepared)}] {cell.name}: {outcome.result.stop_reason.value} after "
                f"{outcome.result.steps} steps ({outcome.result.elapsed_s:.1f} s)")
            if outcome.result.stop_reason is StopReason.INTERRUPTED:
                out.stopped = StopReason.INTERRUPTED
                break
    return out


# --- tables ---------------------------------------------------------------------------------

def mean_std(values: Sequence[float | None], fmt: str = "{:.3g}") -> str:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(statistics.fmean(xs))} ± {fmt.format(statistics.stdev(xs))}"


def _dollars(outcomes: list[Outcome]) -> str:
    usages = [o.result.usage for o in outcomes if o.result]
    total = sum(u.cost_usd for u in usages)
    unpriced = sum(u.unpriced_calls for u in usages)
    return f">=${total:.4f}" if unpriced else f"${total:.4f}"


COLUMNS = ["configuration", "runs", "solved", "steps to optimum", "evals to optimum", "best", "gap %",
           "unique proposed", "valid %", "calls", "tokens", "cost (all runs)", "wall s"]


def config_row(label: str, outcomes: list[Outcome], planned: int) -> list[str]:
    """Finished runs only: a partial run (interrupted, or running elsewhere) would bias the means."""
    done = [o for o in outcomes if o.result is not None and o.finished]
    partial = sum(1 for o in outcomes if o.result is not None and not o.finished)
    solvable = bool(outcomes) and type(outcomes[0].problem).is_solved is not Problem.is_solved
    solved = [o for o in done if o.result.solved_step is not None]
    return [
        label,
        f"{len(done)}/{planned}" + (f" (+{partial} partial)" if partial else ""),
        f"{len(solved)}/{len(done)}" if solvable else "-",
        mean_std([o.result.solved_step for o in solved], "{:.1f}"),
        mean_std([o.evals_to_solve() for o in solved], "{:.0f}"),
        mean_std([o.best() for o in done], "{:.4g}"),
        mean_std([o.gap_pct() for o in done], "{:.2f}"),
        mean_std([o.unique() for o in done], "{:.1f}"),
        mean_std([o.valid_pct() for o in done], "{:.0f}"),
        mean_std([o.result.usage.calls for o in done], "{:.0f}"),
        mean_std([o.result.usage.tokens for o in done], "{:.0f}"),
        _dollars(done) if done else "-",
        mean_std([o.result.elapsed_s for o in done], "{:.1f}"),
    ]


def reference_rows(refs: dict[int, list[Reference]], optimum_of: dict[int, float | None],
                   direction: Direction) -> list[list[str]]:
    by_name: dict[str, list[tuple[int, Reference]]] = {}
    for seed, rs in refs.items():
        for r in rs:
            by_name.setdefault(r.name, []).append((seed, r))
    rows = []
    for name, items in by_name.items():
        gaps = [gap_pct(r.value, optimum_of.get(s), direction) for s, r in items]
        rows.append([f"{name} (reference)", f"{len(items)}", "-", "-", "-", mean_std([r.value for _, r in items], "{:.4g}"),
                     mean_std(gaps, "{:.2f}"), "-", "-", "-", "-", "-",
                     mean_std([r.seconds for _, r in items], "{:.2g}")])
    return rows


def tables(collected: Collected) -> dict[str, Table]:
    """One table per problem label: configurations, then references."""
    out: dict[str, Table] = {}
    grid = collected.grid
    for plabel in grid.problems:
        outcomes = [o for o in collected.outcomes if o.cell.problem == plabel]
        if not outcomes:
            continue
        rows: Table = [list(COLUMNS)]
        for clabel in grid.configs:
            rows.append(config_row(clabel, [o for o in outcomes if o.cell.config == clabel], len(grid.seeds)))
        optimum_of = {o.cell.seed: o.problem.optimum for o in outcomes}
        rows += reference_rows(collected.references.get(plabel, {}), optimum_of, outcomes[0].problem.direction)
        out[plabel] = _drop_empty_columns(rows)
    return out


def _drop_empty_columns(rows: Table) -> Table:
    keep = [i for i in range(len(rows[0])) if i == 0 or any(r[i] not in ("-", "") for r in rows[1:])]
    return [[r[i] for i in keep] for r in rows]


# --- the command ----------------------------------------------------------------------------
