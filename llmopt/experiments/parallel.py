"""A grid's cells at once: ``llmopt compare --jobs N`` (processes of this machine) and
``--executor dask`` (tasks of a Dask cluster), then the same tables as a sequential grid.

The parent does what a sequential grid does before its first run: every cell's options are parsed
and prepared (bad input: one line, nothing started), and the store is opened (created if new).
Then it skips the cells already done (a finished run whose settings are the grid's and whose budget
is spent: reopened read-only, so that a changed configuration is still refused before anything
starts), computes each problem's references once per seed, and hands the other cells to a runner
(:mod:`llmopt.experiments.cells`). Each cell is an ordinary resumable run in the shared store.
When they have ended, the grid is read back from the store (:func:`read_grid`): the tables,
figures and statistics are those of a sequential grid. A cell that raised or whose process died is
reported and the others go on; the next ``compare`` resumes it. Ctrl-C stops every cell cleanly.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from llmopt.budget import StopReason
from llmopt.executors import open_executor
from llmopt.experiments.cells import CellTask, DaskCells, Ended, LocalCells, Runner, open_store, process_context
from llmopt.experiments.compare import (
    CellParser,
    Collected,
    Reference,
    prepare_cell,
    read_grid,
    references,
)
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.progress import GridProgress
from llmopt.experiments.runs import open_run
from llmopt.history import TrialState
from llmopt.llm import LLM
from llmopt.plugins import entry_points
from llmopt.store import StoreBase

EXECUTORS = ("processes", "dask")


@dataclass
class GridRun:
    """What running a grid's cells at once did: the collected grid (read back from the store), the
    cells that failed (name, why: one line each), whether Ctrl-C stopped it, and the cells skipped
    because their runs were already done."""

    collected: Collected | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    skipped: list[str] = field(default_factory=list)


def run_parallel(grid: Grid, store: str, parse: CellParser, *, jobs: int = 2, executor: str = "processes",
                 address: str | None = None, with_references: bool = True, progress: bool = True,
                 events: bool = True, log: Callable[[str], None] | None = None) -> GridRun:
    """Run every unfinished cell of ``grid`` on ``jobs`` processes of this machine (``executor``
    "processes") or as tasks of a Dask cluster ("dask": the scheduler at ``address``, else a
    LocalCluster of ``jobs`` single-threaded worker processes), then read the grid back.
    ``events``: a line on stderr as each cell starts and ends; ``progress``: the grid's state too."""
    if executor not in EXECUTORS:
        raise GridError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise GridError(f"--jobs {jobs}: must be >= 1")
    parsed = [(cell, parse(cell, grid)) for cell in grid.cells()]  # every cell's options checked first
    prepared = [(cell, args, prepare_cell(grid, cell, args, True)) for cell, args in parsed]  # then models, keys
    with open_store(store):  # created here if new (a damaged store is refused before any cell starts)
        pass
    todo, skipped, begun = _unfinished(store, prepared)
    tasks = _tasks(grid, store, parse, todo, with_references, local=executor == "processes")
    display = GridProgress(len(prepared), enabled=events, states=progress)
    for name in skipped:
        display.line(f"{name}: already finished")
    out = GridRun(skipped=skipped)
    if executor == "processes":
        runner = LocalCells(tasks, jobs, process_context(_preload(parse, todo)))
        _loop(runner, display, store, begun, out)
    else:
        with open_executor("dask", workers=jobs, address=address) as client:
            _loop(DaskCells(client, tasks), display, store, begun, out)
    display.close()
    out.collected = read_grid(grid, store, parsed, parse, with_references=with_references,
                              log=log or (lambda line: display.line(line)))
    if out.interrupted:
        out.collected.stopped = StopReason.INTERRUPTED
    return out


def _unfinished(store: str, prepared: list[tuple[Cell, Any, Any]]) -> tuple[list[Any], list[str], set[str]]:
    """The cells to run, the names of those already done, and the names of the runs that exist."""
    todo, skipped, begun = [], [], set()
    with open_store(store, readonly=True) as ro:
        for cell, args, triple in prepared:
            record = ro.find_run(cell.name)
            if record is not None:
                begun.add(cell.name)
            if record is not None and record.status == "finished" and "problem" in ro.facts(record.id) \
                    and _spent(ro, args, triple):
                skipped.append(cell.name)
            else:
                todo.append((cell, args, triple))
    return todo, skipped, begun


def _spent(store: StoreBase, args: Any, triple: Any) -> bool:
    """A finished run, reopened read-only under the grid's settings (a changed configuration is
    refused here, in one line), has nothing left to do under the grid's budget."""
    args = copy.copy(args)
    args.resume = True
    return open_run(args, store, *triple).stop_reason() is not None


def _tasks(grid: Grid, store: str, parse: CellParser, todo: list[tuple[Cell, Any, Any]], with_references: bool,
           local: bool) -> list[CellTask]:
    """A task per cell, with its problem's references computed here once per (problem, seed)."""
    refs: dict[tuple[str, int], tuple[Reference, ...]] = {}
    env = dict(os.environ) if local else None  # a remote cluster's workers keep their own environment
    tasks = []
    for cell, _, (problem, _, _) in todo:
        mine = None
        if with_references:
            key = (cell.problem, cell.seed)
            if key not in refs:
                refs[key] = tuple(Reference(r.name, r.value, r.seconds) for r in references(cell.command, problem))
            mine = refs[key]
        tasks.append(CellTask(grid, cell, store, parse, mine, env))
    return tasks


def _preload(parse: CellParser, todo: list[tuple[Cell, Any, Any]]) -> list[str]:
    """What the forkserver imports once for every cell: llmopt's cell code, the parser's module, the
    cells' problem plugins and the registered proposers, and litellm when a cell calls a model (its
    import costs seconds of CPU)."""
    modules = ["llmopt.experiments.cells", parse.__module__,
               *(ep.module for ep in entry_points("llmopt.proposers").values()),
               *sorted({getattr(args.plugin, "__module__", "llmopt") for _, args, _ in todo})]
    if any(_calls_models(problem, proposer) for _, _, (problem, proposer, _) in todo):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # as llmopt imports it: offline
        modules.append("litellm")
    return modules


def _calls_models(problem: Any, proposer: Any) -> bool:
    return proposer.uses_llm() or any(isinstance(v, LLM) for v in getattr(problem, "__dict__", {}).values())


def _loop(runner: Runner, display: GridProgress, store: str, begun: set[str], out: GridRun) -> None:
    """Start, watch and collect the cells until none is left (or Ctrl-C: every cell stopped cleanly)."""
    done = 0
    try:
        while runner.busy():
            for name in runner.start_more():
                display.line(f"{name}: {'resuming' if name in begun else 'starting'}")
            for ended in runner.poll(0.25):
                done += _report(ended, display, out)
            if display.due():
                display.status(len(out.skipped) + done, len(out.failed), len(runner.waiting),
                               _states(store, runner.running()))
    except KeyboardInterrupt:
        out.interrupted = True
        display.line(f"interrupted: stopping {len(runner.running())} running cell(s) cleanly")
        for ended in runner.stop():
            _report(ended, display, out)


def _report(ended: Ended, display: GridProgress, out: GridRun) -> int:
    """One line for a cell that ended; 1 if it ran to a stop."""
    if ended.error is not None:
        out.failed.append((ended.name, ended.error))
        display.line(f"{ended.name}: FAILED: {ended.error}")
        return 0
    assert ended.done is not None
    if ended.done.stop == StopReason.INTERRUPTED.value:
        out.interrupted = True
    display.line(f"{ended.name}: {ended.done.stop} after {ended.done.steps} steps ({ended.done.elapsed_s:.1f} s)")
    return 1


def _states(store: str, names: list[str]) -> list[tuple[str, int | None, float | None]]:
    """Each running cell's last step and best value so far, read from the store (read-only)."""
    out: list[tuple[str, int | None, float | None]] = []
    try:
        with open_store(store, readonly=True) as ro:
            for name in names:
                record = ro.find_run(name)
                if record is None:
                    out.append((name, None, None))
                    continue
                steps = ro.steps(record.id)
                values = [float(t.value) for t in ro.trials(record.id, [TrialState.COMPLETE]) if t.value is not None]
                best = (min(values) if record.direction.value == "minimize" else max(values)) if values else None
                out.append((name, steps[-1].step if steps else None, best))
    except Exception:  # the display never stops a grid
        return [(name, None, None) for name in names]
    return out
