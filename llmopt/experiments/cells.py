"""A grid's cells as tasks of other processes: a fresh local process per cell, or a Dask task per cell.

A cell is exactly the run a sequential grid makes (:func:`llmopt.experiments.compare.collect`): the
same options parsed by the same parser, the same name, seed, budget and references, run or resumed
by :func:`run_cell_here` in a store that every cell shares. :func:`run_cell` is that run as a pure
function of a picklable :class:`CellTask` (the store is a location string, opened by the worker), so
that a process of this machine and a Dask worker on another run the same code; a cell killed
halfway is resumed from the store by whoever runs it next.

Two runners start the tasks and report what ended, both polled by the grid's loop
(:mod:`llmopt.experiments.parallel`):

- :class:`LocalCells`: at most ``jobs`` processes at once, a new one per cell, each forked from a
  ``forkserver`` that imported llmopt (and litellm, when a cell calls a model) once, so a cell
  starts in milliseconds instead of paying the imports again (``spawn`` where there is no
  forkserver). A cell whose process dies (SIGKILL, out of memory) is a failed cell; the others go
  on. On Ctrl-C the parent sends each running cell SIGTERM, which the cell turns into the same
  clean stop as a Ctrl-C of ``llmopt run`` (its run stays resumable).
- :class:`DaskCells`: one ``client.submit`` per cell with ``retries``; Dask's scheduler places
  them and moves a dead worker's cell to another worker, which resumes it from the store. No
  scheduler of ours.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Protocol

from llmopt.experiments.compare import CellParser, Reference, prepare_cell, run_cell_here
from llmopt.experiments.grid import Cell, Grid
from llmopt.store import StoreBase
from llmopt.store import open_store as open_location

# --- one cell, in whatever process runs it ------------------------------------------------


def open_store(location: str, readonly: bool = False) -> StoreBase:
    """The grid's store at ``location``: a SQLite file on this machine, or a PostgreSQL URL that cells on
    other machines share (:func:`llmopt.store.open_store`)."""
    return open_location(location, readonly=readonly)


@dataclass(frozen=True)
class CellTask:
    """Everything one cell's run needs, picklable: the grid and the cell, the store's location, the
    parser of its options (a module-level function, pickled by name) and its problem's references
    (computed once per problem and seed by the parent, as a sequential grid does; None: no
    references). ``env``: the parent's environment, for a process that did not inherit it (a
    forkserver's child starts with the server's); never sent to a remote cluster."""

    grid: Grid
    cell: Cell
    store: str
    parse: CellParser
    references: tuple[Reference, ...] | None = None
    env: dict[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CellDone:
    """How a cell's run stopped (a StopReason's value), after how many steps and seconds."""

    name: str
    stop: str
    steps: int
    elapsed_s: float


def run_cell(task: CellTask) -> CellDone:
    """Run or resume one cell into the store: the run a sequential grid makes of it."""
    cell = task.cell
    args = task.parse(cell, task.grid)
    prepared = prepare_cell(task.grid, cell, args, True)
    refs = None if task.references is None else list(task.references)
    with open_store(task.store) as store:
        outcome = run_cell_here(store, cell, args, prepared, cell.name, refs, lambda line: None, False)
    result = outcome.result
    assert result is not None
    return CellDone(cell.name, result.stop_reason.value, result.steps, result.elapsed_s)


# --- local processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ended:
    """A cell that ended: ``done`` (it ran to a stop, interrupted included) or ``error`` (it raised,
    or its process died: one line saying how)."""

    name: str
    done: CellDone | None = None
    error: str | None = None


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the run is stopping cleanly now
    raise KeyboardInterrupt


def _cell_main(task: CellTask, conn: Any) -> None:
    """A cell's process: Ctrl-C of the terminal is the parent's to handle (it stops every cell with
    SIGTERM, which stops this run as Ctrl-C stops ``llmopt run``); the result or the error goes
    back on ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    if task.env is not None:
        os.environ.clear()
        os.environ.update(task.env)
    try:
        message: tuple[str, Any] = ("done", run_cell(task))
    except KeyboardInterrupt:  # stopped before its run began or after it ended: nothing half-written
        message = ("done", CellDone(task.cell.name, "interrupted", 0, 0.0))
    except BaseException as exc:  # SystemExit of a user's objective too: the parent reports it
        message = ("error", _one_line(exc))
    conn.send(message)
    conn.close()


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message (at file:line)``: where the cell failed, in one line."""
    text = str(exc).strip()
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}{at}"


def process_context(preload: list[str]) -> Any:
    """A ``forkserver`` context whose server imports ``preload`` once (``spawn`` where there is none)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(preload)  # no effect once this process's forkserver runs: it has them
    return ctx


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"its process was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"its process was killed by signal {-exitcode}"
    return f"its process exited with status {exitcode} before reporting"


class LocalCells:
    """Cells on processes of this machine: at most ``jobs`` at once, a fresh process per cell."""

    def __init__(self, tasks: list[CellTask], jobs: int, ctx: Any) -> None:
        self.waiting, self.jobs, self.ctx = list(tasks), max(1, jobs), ctx
        self.procs: dict[str, tuple[Any, Any]] = {}  # cell name -> (process, the parent's end of its pipe)
        self.stopping = False  # stop() sent the signals: a cell they ended was interrupted, not failed

    def running(self) -> list[str]:
        return list(self.procs)

    def busy(self) -> bool:
        """Cells wait or run."""
        return bool(self.waiting or self.procs)

    def start_more(self) -> list[str]:
        """Start cells until ``jobs`` run; their names."""
        started = []
        while self.waiting and len(self.procs) < self.jobs:
            task = self.waiting.pop(0)
            mine, theirs = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(target=_cell_main, args=(task, theirs), name=f"llmopt cell {task.cell.name}")
            proc.start()
            theirs.close()
            self.procs[task.cell.name] = (proc, mine)
            started.append(task.cell.name)
        return started

    def poll(self, timeout: float) -> list[Ended]:
        """Wait up to ``timeout`` seconds for cells to end; those that did."""
        if not self.procs:
            return []
        wait([proc.sentinel for proc, _ in self.procs.values()], timeout)
        ended = []
        for name, (proc, conn) in list(self.procs.items()):
            if proc.is_alive():
                continue
            proc.join()
            ended.append(self._ended(name, proc, conn, self.stopping))
            del self.procs[name]
        return ended

    @staticmethod
    def _ended(name: str, proc: Any, conn: Any, stopping: bool = False) -> Ended:
        try:
            kind, payload = conn.recv() if conn.poll() else (None, None)
        except (EOFError, OSError):
            kind, payload = None, None
        conn.close()
        if kind == "done":
            return Ended(name, done=payload)
        if kind is None and stopping and proc.exitcode in (-signal.SIGTERM, -signal.SIGKILL):
            return Ended(name, done=CellDone(name, "interrupted", 0, 0.0))  # stopped by us, resumable
        return Ended(name, error=payload if kind == "error" else _death(proc.exitcode))

    def stop(self, grace_s: float = 30.0) -> list[Ended]:
        """Stop every running cell cleanly (SIGTERM: the run records its stop), killing those that
        do not within ``grace_s``; start nothing more. What ended."""
        self.waiting.clear()
        self.stopping = True
        for proc, _ in self.procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline, ended = time.monotonic() + grace_s, []
        while self.procs and time.monotonic() < deadline:
            ended += self.poll(0.2)
        for proc, _ in self.procs.values():
            proc.kill()
        while self.procs:
            ended += self.poll(1.0)
        return ended


# --- Dask ---------------------------------------------------------------------------------


class DaskCells:
    """Cells as tasks of a Dask cluster: one ``client.submit(run_cell, task, retries=...)`` each."""

    def __init__(self, client: Any, tasks: list[CellTask], retries: int = 2) -> None:
        self.client = client
        self.futures = {t.cell.name: client.submit(run_cell, t, key=f"llmopt-cell-{t.cell.name}-{time.time_ns()}",
                                                   pure=False, retries=retries) for t in tasks}
        self.keys = {f.key: name for name, f in self.futures.items()}
        self.started: set[str] = set()

    def busy(self) -> bool:
        """Cells are not reported yet (waiting, running, or ended since the last poll)."""
        return bool(self.futures)

    def running(self) -> list[str]:
        """The cells a worker is running now (as the scheduler says)."""
        try:
            processing = self.client.processing()
        except Exception:  # the scheduler is busy or gone: the futures will say so
            return [n for n in self.started if n in self.futures]
        keys = {str(k) for tasks in processing.values() for k in tasks}
        return [name for key, name in self.keys.items() if key in keys and name in self.futures]

    def start_more(self) -> list[str]:
        """The cells that began running since the last call (Dask starts them, not us)."""
        new = [n for n in self.running() if n not in self.started]
        self.started.update(new)
        return new

    @property
    def waiting(self) -> list[str]:
        return [n for n in self.futures if n not in self.started]

    def poll(self, timeout: float) -> list[Ended]:
        time.sleep(timeout)
        ended = []
        for name, future in list(self.futures.items()):
            if future.status == "finished":
                ended.append(Ended(name, done=future.result()))
            elif future.status in ("error", "cancelled", "lost"):
                ended.append(Ended(name, error=_dask_error(future)))
            else:
                continue
            self.started.add(name)
            del self.futures[name]
        return ended

    def stop(self, grace_s: float = 0.0) -> list[Ended]:
        """Cancel every cell: those not begun never start; a running one stops with its worker
        (when its cluster closes), resumable from the store."""
        self.client.cancel(list(self.futures.values()))
        self.futures.clear()
        return []


def _dask_error(future: Any) -> str:
    try:
        exc = future.exception()
    except Exception as err:  # cancelled or lost
        return f"{type(err).__name__}: {err}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"


class Runner(Protocol):
    """What the grid's loop needs of :class:`LocalCells` and :class:`DaskCells`."""

    @property
    def waiting(self) -> list[Any]: ...

    def running(self) -> list[str]: ...

    def busy(self) -> bool: ...

    def start_more(self) -> list[str]: ...

    def poll(self, timeout: float) -> list[Ended]: ...

    def stop(self, grace_s: float = ...) -> list[Ended]: ...
