"""``llmopt compare``: run a grid of experiments into one store and print its comparison tables.

Every cell of the grid (problem x configuration x seed, see :mod:`llmopt.experiments.grid`) is one ordinary
``llmopt run``, stored under a name that says which cell it is. Running the same grid again
resumes whatever is unfinished and skips what is done (a finished run is reopened, its budget
re-checked, and nothing is asked again), so an interrupted grid costs nothing twice. The tables
are then computed from the store (:mod:`llmopt.experiments.tables`): one per problem, one row per
configuration, with the problem's classical baselines and its optimum as rows of the same table;
this module gives them each run's outcome and its spend on every axis (:class:`Spend`), read by
the one read path of stored runs (:mod:`llmopt.experiments.stored`): ``--no-run`` rebuilds no
problem and runs no baseline, since a grid's run records its problem's facts and its baselines'
values when it runs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from llmopt.budget import StopReason
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.measures import evals_until
from llmopt.experiments.report import proposer_name
from llmopt.experiments.runs import UsageError, baseline_hook, execute, open_run, prepare_run
from llmopt.experiments.stored import AXES as AXES
from llmopt.experiments.stored import ProblemFacts, StoredResult, StoredRun, read_run, record_facts
from llmopt.experiments.stored import Reference as Reference
from llmopt.experiments.stored import Spend as Spend
from llmopt.experiments.stored import reaches as reaches
from llmopt.experiments.stored import run_spend as run_spend
from llmopt.history import TrialState
from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem
from llmopt.store import RunRecord, RunStore, open_store

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

_BUDGET_WORDS = (("max_steps", "steps"), ("max_evals", "evals"), ("max_calls", "calls"), ("max_tokens", "tokens"),
                 ("max_usd", "usd"), ("max_seconds", "seconds"), ("target", "target"), ("patience", "patience"))


def budget_text(budget: dict[str, Any]) -> str:
    """A run's recorded budget (``asdict(Budget)``) in words: the limits it set, ``steps 10, evals 40``."""
    return ", ".join(f"{word} {budget[key]:g}" for key, word in _BUDGET_WORDS if budget.get(key) is not None)


@dataclass
class Outcome:
    """A cell's run as read back from the store (``result`` None: not run yet). ``problem``: what the
    tables and figures know of its problem (:class:`ProblemFacts`, read from the store, or taken from
    the problem itself where this process ran the cell, which ``live`` then holds)."""

    cell: Cell
    problem: ProblemFacts
    result: RunResult | StoredResult | None = None
    finished: bool = False  # False: not run, interrupted, or still running in another process
    spend: Spend | None = None
    ran: str = ""  # what ran, in words (Proposer.describe): the table's "ran" column
    budget: str = ""  # the run's stopping limits, in words (budget_text): shown where rows differ
    record: RunRecord | None = None  # the stored run (None: not run)
    live: Problem | None = field(default=None, repr=False, compare=False)

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
        return self.problem.success_test

    def solvable(self) -> bool:
        return self.has_success_test() or self.problem.optimum is not None

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
        return self._evals_until(self.problem.is_solved_trial)

    def evals_to_target(self, target: float) -> int | None:
        """Scored solutions up to and including the first that reaches ``target`` (None: never)."""
        return self._evals_until(lambda t: reaches(float(t.value), target, self.problem.direction))

    def evals_to_optimum(self) -> int | None:
        """By the problem's own test where it has one (linear regression's true pair), else by value."""
        if self.has_success_test():
            return self.evals_to_solve()
        optimum = self.problem.optimum
        return None if optimum is None else self.evals_to_target(float(optimum))

    def best_within(self, axis: str, amount: float) -> float | None:
        """The best value among solutions scored within ``amount`` of ``axis`` (see :class:`Spend`)."""
        if self.spend is None:
            raise ValueError(f"{self.cell.name}: no spend recorded (read the run from its store)")
        within = self.spend.values[self.spend.axis(axis) <= amount]
        if not len(within):
            return None
        return float(within.min() if self.problem.direction is Direction.MINIMIZE else within.max())


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

#: A grid cell's instance, rebuilt, with its references (their solutions too): what drawing a solution needs.
Instance = Callable[[Cell], tuple[Problem, list[Reference]]]

#: ``parse(cell, grid)``: a cell's options as the settings of one run (a namespace; a GridError, in
#: the grid's words, on a bad option).
CellParser = Callable[[Cell, "Grid | None"], Any]


@dataclass
class Collected:
    grid: Grid
    outcomes: list[Outcome]
    references: dict[str, dict[int, list[Reference]]]  # problem label -> seed -> references
    stopped: StopReason | None = None
    instance: Instance | None = field(default=None, repr=False)  # None: runs of a store, no grid to rebuild from


def collect(grid: Grid, store_path: str, *, run: bool, parse: CellParser, with_references: bool = True,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
            progress: bool = False) -> Collected:
    """Run (``run=True``) or only read back every cell of the grid, in order; ``progress``: each
    run shows its progress bar (on stderr, after the line saying which cell it is). ``parse``: a
    cell's options as a run's settings (the command line's: ``llmopt.cli.run_options.parse_cell``). Reading
    rebuilds no problem (see :mod:`llmopt.experiments.stored`), except for runs stored without
    their facts (an older llmopt's), which ``log`` names."""
    parsed = [(cell, parse(cell, grid)) for cell in grid.cells()]  # every cell's options checked first
    if not run:
        return read_grid(grid, store_path, parsed, parse, with_references=with_references, log=log)
    prepared = [(cell, args, prepare_cell(grid, cell, args, True)) for cell, args in parsed]  # then models and keys
    live: dict[tuple[str, int], tuple[Problem, list[Reference]]] = {}
    out = Collected(grid, [], {},
                    instance=lambda cell: live.get((cell.problem, cell.seed)) or cell_instance(grid, cell, parse))
    with open_store(store_path) as store:
        for i, (cell, args, (problem, proposer, budget)) in enumerate(prepared, 1):
            if with_references and cell.seed not in out.references.setdefault(cell.problem, {}):
                out.references[cell.problem][cell.seed] = references(cell.command, problem)
            live.setdefault((cell.problem, cell.seed), (problem, out.references.get(cell.problem, {}).get(cell.seed, [])))
            outcome = run_cell_here(store, cell, args, (problem, proposer, budget), f"[{i}/{len(prepared)}] {cell.name}",
                                out.references[cell.problem].get(cell.seed) if with_references else None, log, progress)
            out.outcomes.append(outcome)
            if outcome.result.stop_reason is StopReason.INTERRUPTED:
                out.stopped = StopReason.INTERRUPTED
                break
    return out


def run_cell_here(store: RunStore, cell: Cell, args: Any, prepared: tuple[Problem, Any, Any], tag: str,
              refs: list[Reference] | None, log: Callable[[str], None], progress: bool) -> Outcome:
    """Run (or resume) one cell and record its facts with it (see :func:`record_facts`)."""
    problem, proposer, budget = prepared
    args.resume = store.find_run(cell.name) is not None
    opt = open_run(args, store, problem, proposer, budget)
    log(f"{tag}: {'resuming' if args.resume else 'starting'}")
    result = execute(opt, args, progress_bar=progress)
    ran = proposer.describe(problem)
    record_facts(store, opt.run_record, problem, result.history, references=refs, ran=ran, budget=asdict(budget))
    log(f"{tag}: {result.stop_reason.value} after {result.steps} steps ({result.elapsed_s:.1f} s)")
    return Outcome(cell, ProblemFacts.of(problem, result.history), result,
                   finished=result.stop_reason is not StopReason.INTERRUPTED,
                   spend=run_spend(store, opt.run_record, result.history), ran=ran,
                   budget=budget_text(asdict(budget)), record=opt.run_record, live=problem)


def prepare_cell(grid: Grid, cell: Cell, args: Any, calls: bool) -> Any:
    """:func:`prepare_run` of a cell, its errors in the grid's words (:func:`grid_message`)."""
    try:
        return prepare_run(args, calls=calls)
    except UsageError as exc:
        raise GridError(grid_message(grid, cell, str(exc))) from None


def cell_problem(grid: Grid, cell: Cell, parse: CellParser) -> Problem:
    """A cell's problem, rebuilt from its options (a TSP instance's optimum solved again): only for what
    needs the problem itself (drawing a solution, scoring on a held-out split, an older store's runs)."""
    return prepare_cell(grid, cell, parse(cell, grid), False)[0]


def cell_instance(grid: Grid, cell: Cell, parse: CellParser) -> tuple[Problem, list[Reference]]:
    """:func:`cell_problem` and its references (their solutions too: the baselines are run again)."""
    problem = cell_problem(grid, cell, parse)
    return problem, references(cell.command, problem)


# --- reading the grid -----------------------------------------------------------------------

def read_grid(grid: Grid, store_path: str, parsed: list[tuple[Cell, Any]], parse: CellParser, *,
              with_references: bool = True, log: Callable[[str], None] = print) -> Collected:
    """Every cell of the grid as stored (:func:`read_run`), in order; nothing is created or written."""
    out = Collected(grid, [], {}, instance=lambda cell: cell_instance(grid, cell, parse))
    older: list[str] = []
    with open_store(store_path, readonly=True) as store:
        for cell, args in parsed:
            record = store.find_run(cell.name)
            if record is None:
                out.outcomes.append(Outcome(cell, ProblemFacts(cell.command, Direction.MINIMIZE)))
                continue
            stored = read_run(store, record)
            if stored.has_facts:
                outcome, refs = _stored_outcome(cell, stored), stored.references
            else:
                older.append(cell.name)
                outcome, refs = _rebuilt_outcome(grid, cell, args, store, with_references)
            out.outcomes.append(outcome)
            if with_references and refs is not None:
                out.references.setdefault(cell.problem, {}).setdefault(cell.seed, refs)
    if with_references:
        _missing_references(out)
    _share_facts(out.outcomes)
    if older:
        log(f"{len(older)} run(s) of grid {grid.name!r} in {store_path} were stored without the facts their tables "
            f"need (by an older llmopt), so their problems were rebuilt to read them (e.g. {older[0]}); running "
            f"`llmopt compare` on the grid once records them (finished runs are not run again)")
    return out


def _stored_outcome(cell: Cell, stored: StoredRun) -> Outcome:
    return Outcome(cell, stored.facts, stored.result, finished=stored.record.status == "finished",
                   spend=stored.spend, ran=stored.ran or proposer_name(stored.record.config),
                   budget=budget_text(stored.budget), record=stored.record)


def _rebuilt_outcome(grid: Grid, cell: Cell, args: Any, store: RunStore,
                     with_references: bool) -> tuple[Outcome, list[Reference] | None]:
    """A run stored without facts, read as an older llmopt did: its problem and optimizer rebuilt."""
    problem, proposer, budget = prepare_cell(grid, cell, args, False)
    args.resume = True
    opt = open_run(args, store, problem, proposer, budget)
    result = opt.result()
    outcome = Outcome(cell, ProblemFacts.of(problem, result.history), result,
                      finished=opt.run_record.status == "finished", spend=run_spend(store, opt.run_record, result.history),
                      ran=proposer.describe(problem), budget=budget_text(asdict(budget)), record=opt.run_record,
                      live=problem)
    return outcome, references(cell.command, problem) if with_references else None


def _missing_references(out: Collected) -> None:
    """References of the (problem, seed)s whose runs were recorded without them (a grid run with
    ``--no-references``): computed from the rebuilt problem, once per (problem, seed)."""
    assert out.instance is not None
    for outcome in out.outcomes:
        cell = outcome.cell
        if outcome.result is not None and cell.seed not in out.references.setdefault(cell.problem, {}):
            out.references[cell.problem][cell.seed] = out.instance(cell)[1]


def _share_facts(outcomes: list[Outcome]) -> None:
    """A cell not run yet knows its problem from a run of the same problem (same seed first)."""
    known = [o for o in outcomes if o.record is not None]
    for i, o in enumerate(outcomes):
        if o.record is None:
            same = [k for k in known if k.cell.problem == o.cell.problem]
            donor = next((k for k in same if k.cell.seed == o.cell.seed), same[0] if same else None)
            if donor is not None:
                outcomes[i] = replace(o, problem=replace(donor.problem, solved=frozenset()))


# --- the command ----------------------------------------------------------------------------
