"""``llmopt compare``: run a grid of experiments into one store and print its comparison tables.

Every cell of the grid (problem x configuration x seed, see :mod:`llmopt.experiments.grid`) is one ordinary
``llmopt run``, stored under a name that says which cell it is. Running the same grid again
resumes whatever is unfinished and skips what is done (a finished run is reopened, its budget
re-checked, and nothing is asked again), so an interrupted grid costs nothing twice. The tables
are then computed from the store (:mod:`llmopt.experiments.tables`): one per problem, one row per
configuration, with the problem's classical baselines and its optimum as rows of the same table;
this module gives them each run's outcome and its spend on every axis (:class:`Spend`, read
from the recorded trials and calls).
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from llmopt.budget import StopReason
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.measures import evals_until
from llmopt.experiments.runs import UsageError, baseline_hook, execute, open_run, prepare_run
from llmopt.history import TrialState
from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem
from llmopt.store import RunRecord, RunStore

# --- from a cell to the arguments of one run (parsed by llmopt.cli.run_options.parse_cell) ----------

_FLAG = re.compile(r"(?:argument )?--([a-z0-9][a-z0-9-]*)")


def grid_message(grid: Grid | None, cell: Cell, message: str) -> str:
    """An error about one of a cell's options, told in the grid's words: the first flag it names that
    the grid set becomes that option's key (``--objective 'm:f': cannot import m`` from
    ``problems.fn`` of grid.toml is ``grid.toml: problems.fn.objective 'm:f': cannot import m``);
    any other message is prefixed with the cell's problem and configuration labels."""
    if grid is not None:
        for match in _FLAG.finditer(message):
            option = match.group(1)
            if option in cell.origins:
                return message[:match.start()] + grid.key(cell, option) + message[match.end():]
    return f"{cell.problem}/{cell.config}: {message}"


# --- one run's numbers ----------------------------------------------------------------------

#: The axes a spend is counted on (a budget column, ``--budget AXIS=AMOUNT``).
AXES = ("evals", "tokens", "usd", "seconds")


@dataclass(frozen=True)
class Spend:
    """What a run had spent when it scored each of its solutions, in order (starting points
    included), on every axis a budget can be counted in; read from the stored trials and calls.
    Tokens and dollars are those of every call up to and including the trial's own (the
    optimizer's and the scorer's, redraws and failed calls too); seconds are wall-clock since the
    run's first step began (a resumed run's pause included)."""

    values: np.ndarray
    evals: np.ndarray
    tokens: np.ndarray
    usd: np.ndarray
    seconds: np.ndarray
    total: dict[str, float]

    def axis(self, name: str) -> np.ndarray:
        if name not in AXES:
            raise ValueError(f"unknown axis {name!r} (expected one of {', '.join(AXES)})")
        return getattr(self, name)


def run_spend(store: RunStore, run: RunRecord, history: Any) -> Spend:
    """A stored run's :class:`Spend` (``history``: its trials, in number order)."""
    calls = sorted(store.calls(run.id), key=lambda c: c.number)
    numbers = np.array([c.number for c in calls], dtype=float)
    tokens = np.cumsum([c.prompt_tokens + c.completion_tokens for c in calls], dtype=float)
    usd = np.cumsum([c.cost_usd or 0.0 for c in calls], dtype=float)
    created = {r["number"]: r["created"] for r in store.records("trials", run.id)}
    began = min((r["started"] for r in store.records("steps", run.id)), default=min(created.values(), default=0.0))
    scored = [t for t in history if t.state is TrialState.COMPLETE]

    def spent_by(cumulative: np.ndarray, number: int) -> float:
        i = int(np.searchsorted(numbers, number, side="right"))
        return float(cumulative[i - 1]) if i else 0.0

    last = max((c.number for c in calls), default=-1)
    return Spend(values=np.array([float(t.value) for t in scored]),
                 evals=np.arange(1, len(scored) + 1, dtype=float),
                 tokens=np.array([spent_by(tokens, t.number) for t in scored]),
                 usd=np.array([spent_by(usd, t.number) for t in scored]),
                 seconds=np.array([max(0.0, created.get(t.number, began) - began) for t in scored]),
                 total={"evals": float(len(scored)), "tokens": spent_by(tokens, last), "usd": spent_by(usd, last),
                        "seconds": max([0.0, *(c - began for c in created.values())])})


_BUDGET_WORDS = (("max_steps", "steps"), ("max_evals", "evals"), ("max_calls", "calls"), ("max_tokens", "tokens"),
                 ("max_usd", "usd"), ("max_seconds", "seconds"), ("target", "target"), ("patience", "patience"))


def budget_text(budget: dict[str, Any]) -> str:
    """A run's recorded budget (``asdict(Budget)``) in words: the limits it set, ``steps 10, evals 40``."""
    return ", ".join(f"{word} {budget[key]:g}" for key, word in _BUDGET_WORDS if budget.get(key) is not None)


def reaches(value: float, target: float, direction: Direction) -> bool:
    """``value`` is at least as good as ``target`` (up to a relative 1e-9, for floating sums)."""
    slack = 1e-9 * max(1.0, abs(target))
    return value <= target + slack if direction is Direction.MINIMIZE else value >= target - slack


@dataclass
class Outcome:
    """A cell's run as read back from the store (``result`` None: not run yet)."""

    cell: Cell
    problem: Problem
    result: RunResult | None = None
    finished: bool = False  # False: not run, interrupted, or still running in another process
    spend: Spend | None = None
    ran: str = ""  # what ran, in words (Proposer.describe): the table's "ran" column
    budget: str = ""  # the run's stopping limits, in words (budget_text): shown where rows differ

    def best(self) -> float | None:
        best = self.result.best if self.result else None
        return None if best is None else float(best.value)

    def gap_pct(self) -> float | None:
        best = self.best()
        return None if best is None else self.problem.gap_pct(best)

    def proposed(self) -> list[Any]:
        return [t for t in self.result.history if t.source != "start"] if self.result else []

    def beat_starts(self) -> bool | None:
        """Whether a proposal scored better than every starting solution (None: no starting solution
        was scored). A run that did not ended at a starting solution: it ties every other such run,
        and a tie there says nothing about its method."""
        if self.result is None:
            return None
        starts = [float(t.value) for t in self.result.history if t.source == "start" and t.ok]
        if not starts:
            return None
        best_start = min(starts) if self.problem.direction is Direction.MINIMIZE else max(starts)
        return any(self.problem.direction.better(float(t.value), best_start) for t in self.proposed() if t.ok)

    def unique(self) -> int:
        return len({t.key for t in self.proposed() if t.state in (TrialState.COMPLETE, TrialState.DUPLICATE)})

    def valid_pct(self) -> float | None:
        proposed = self.proposed()
        parsed = [t for t in proposed if t.state in (TrialState.COMPLETE, TrialState.DUPLICATE)]
        return 100.0 * len(parsed) / len(proposed) if proposed else None

    def has_success_test(self) -> bool:
        """The problem says which solutions are optimal (``is_solved``), beyond a known optimum value."""
        return getattr(type(self.problem), "is_solved", Problem.is_solved) is not Problem.is_solved

    def solvable(self) -> bool:
        return self.has_success_test() or getattr(self.problem, "optimum", None) is not None

    def solved(self) -> bool:
        if self.result is None:
            return False
        if self.has_success_test():
            return self.result.solved_step is not None
        return self.evals_to_optimum() is not None

    def evaluations(self) -> int:
        return self.result.evaluations if self.result else 0

    def _evals_until(self, reached: Callable[[Any], bool]) -> int | None:
        """Scored solutions up to and including the first trial ``reached`` accepts (starting points count)."""
        return None if self.result is None else evals_until(self.result.history, reached)

    def evals_to_solve(self) -> int | None:
        """Scored solutions up to and including the first optimal one (starting points count)."""
        if self.result is None or self.result.solved_step is None:
            return None
        return self._evals_until(lambda t: self.problem.is_solved(t.solution))

    def evals_to_target(self, target: float) -> int | None:
        """Scored solutions up to and including the first that reaches ``target`` (None: never)."""
        return self._evals_until(lambda t: reaches(float(t.value), target, self.problem.direction))

    def evals_to_optimum(self) -> int | None:
        """By the problem's own test where it has one (linear regression's true pair), else by value."""
        if self.has_success_test():
            return self.evals_to_solve()
        optimum = getattr(self.problem, "optimum", None)
        return None if optimum is None else self.evals_to_target(float(optimum))

    def best_within(self, axis: str, amount: float) -> float | None:
        """The best value among solutions scored within ``amount`` of ``axis`` (see :class:`Spend`)."""
        if self.spend is None:
            raise ValueError(f"{self.cell.name}: no spend recorded (read the run from its store)")
        within = self.spend.values[self.spend.axis(axis) <= amount]
        if not len(within):
            return None
        return float(within.min() if self.problem.direction is Direction.MINIMIZE else within.max())


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

#: ``parse(cell, grid)``: a cell's options as the settings of one run (a namespace; a GridError, in
#: the grid's words, on a bad option).
CellParser = Callable[[Cell, "Grid | None"], Any]


@dataclass
class Collected:
    grid: Grid
    outcomes: list[Outcome]
    references: dict[str, dict[int, list[Reference]]]  # problem label -> seed -> references
    stopped: StopReason | None = None


def collect(grid: Grid, store_path: str, *, run: bool, parse: CellParser, with_references: bool = True,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
            progress: bool = False) -> Collected:
    """Run (``run=True``) or only read back every cell of the grid, in order; ``progress``: each
    run shows its progress bar (on stderr, after the line saying which cell it is). ``parse``: a
    cell's options as a run's settings (the command line's parser: ``llmopt.cli.run_options.parse_cell``)."""
    parsed = [(cell, parse(cell, grid)) for cell in grid.cells()]  # every cell's options checked first,
    prepared = [(cell, args, _prepared(grid, cell, args, run)) for cell, args in parsed]  # then models and keys
    out = Collected(grid, [], {})
    with RunStore(store_path, readonly=not run) as store:  # only reading: nothing created or written
        for i, (cell, args, (problem, proposer, budget)) in enumerate(prepared, 1):
            if with_references and cell.seed not in out.references.setdefault(cell.problem, {}):
                out.references[cell.problem][cell.seed] = references(cell.command, problem)
            record = store.find_run(cell.name)
            exists = record is not None
            outcome = Outcome(cell, problem, finished=exists and record.status == "finished",
                              ran=proposer.describe(problem), budget=budget_text(asdict(budget)))
            out.outcomes.append(outcome)
            if not exists and not run:
                continue
            args.resume = exists
            opt = open_run(args, store, problem, proposer, budget)
            if not run:
                outcome.result = opt.result()
                outcome.spend = run_spend(store, opt.run_record, outcome.result.history)
                continue
            log(f"[{i}/{len(prepared)}] {cell.name}: {'resuming' if exists else 'starting'}")
            outcome.result = execute(opt, args, progress_bar=progress)
            outcome.spend = run_spend(store, opt.run_record, outcome.result.history)
            outcome.finished = outcome.result.stop_reason is not StopReason.INTERRUPTED
            log(f"[{i}/{len(prepared)}] {cell.name}: {outcome.result.stop_reason.value} after "
                f"{outcome.result.steps} steps ({outcome.result.elapsed_s:.1f} s)")
            if outcome.result.stop_reason is StopReason.INTERRUPTED:
                out.stopped = StopReason.INTERRUPTED
                break
    return out


def _prepared(grid: Grid, cell: Cell, args: Any, calls: bool) -> Any:
    """:func:`prepare_run` of a cell, its errors in the grid's words (:func:`grid_message`)."""
    try:
        return prepare_run(args, calls=calls)
    except UsageError as exc:
        raise GridError(grid_message(grid, cell, str(exc))) from None


# --- the command ----------------------------------------------------------------------------
