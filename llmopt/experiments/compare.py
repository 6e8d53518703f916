"""``llmopt compare``: run a grid of experiments into one store and print its comparison tables.

Every cell of the grid (problem x configuration x seed, see :mod:`llmopt.experiments.grid`) is one ordinary
``llmopt run``, stored under a name that says which cell it is. Running the same grid again
resumes whatever is unfinished and skips what is done (a finished run is reopened, its budget
re-checked, and nothing is asked again), so an interrupted grid costs nothing twice. The tables
are then computed from the store: one per problem, one row per configuration, with the
problem's classical baselines and its optimum as rows of the same table. The numbers are the
statistics a black-box benchmark reports (:mod:`llmopt.experiments.stats`): medians with
quartiles and bootstrap intervals, success rates with Wilson intervals, COCO's aRT to the
optimum or a target, a Holm-corrected test of every row against the control, and the best value
at an equal spend of evaluations, tokens, dollars or seconds (:class:`Spend`, read from the
recorded trials and calls).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from llmopt.budget import StopReason
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.measures import evals_until
from llmopt.experiments.report import Table
from llmopt.experiments.runs import UsageError, baseline_hook, execute, open_run, prepare_run, run_parser
from llmopt.experiments.stats import (
    ALPHA,
    SMALL_N,
    Comparison,
    Summary,
    average_runtime,
    compare_to_control,
    holm,
    summarize,
    wilson,
)
from llmopt.history import TrialState
from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem, gap_pct
from llmopt.store import RunRecord, RunStore


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


# --- tables ---------------------------------------------------------------------------------

AXES = ("evals", "tokens", "usd", "seconds")
_AXIS_WORDS = {"evals": "evaluations", "tokens": "tokens", "usd": "dollars", "seconds": "seconds"}


def parse_budget(text: str) -> tuple[str, float]:
    """``evals=200``, ``tokens=50000``, ``usd=1`` or ``seconds=60`` -> (axis, amount)."""
    axis, sep, amount = text.partition("=")
    axis = axis.strip()
    if not sep or axis not in AXES:
        raise GridError(f"--budget {text!r}: expected {'|'.join(AXES)}=AMOUNT, e.g. evals=200")
    try:
        value = float(amount)
    except ValueError:
        raise GridError(f"--budget {text!r}: {amount.strip()!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise GridError(f"--budget {text!r}: the amount must be a positive number")
    return axis, value


def parse_gap(text: str) -> float:
    """``1%`` or ``1`` -> 1.0 (percent)."""
    try:
        value = float(str(text).strip().removesuffix("%"))
    except ValueError:
        raise GridError(f"--target-gap {text!r}: expected a percentage such as 1%") from None
    if not math.isfinite(value) or value < 0:
        raise GridError(f"--target-gap {text!r}: must be a percentage >= 0")
    return value


@dataclass(frozen=True)
class TableOptions:
    """What a comparison table tests and at which targets and budgets."""

    control: str | None = None  # the configuration every row is tested against; None: "random" if present
    target: float | None = None  # a value to reach (aRT column)
    target_gap: float | None = None  # a gap to each instance's optimum, in percent (aRT column)
    budget: tuple[str, float] | None = None  # (axis, amount): best value within that spend
    alpha: float = ALPHA

    def target_label(self) -> str | None:
        if self.target is not None:
            return f"aRT to {self.target:g}"
        if self.target_gap is not None:
            return f"aRT to gap {self.target_gap:g}%"
        return None

    def budget_label(self) -> str | None:
        return None if self.budget is None else f"{self.budget[0]} <= {self.budget[1]:g}"


class NotedTable(list):  # type: ignore[type-arg]
    """A table (rows of strings, the first the header) with the notes printed under it."""

    def __init__(self, rows: Table, notes: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.notes = list(notes)


def _num(value: float, fmt: str) -> str:
    return "inf" if value == math.inf else fmt.format(value)


def format_summary(s: Summary | None, fmt: str = "{:.3g}") -> str:
    """``median [q1, q3] (CI low-high)``; one value is printed alone."""
    if s is None:
        return "-"
    shown = {fmt.format(v) for v in (s.median, s.q1, s.q3, s.ci_low, s.ci_high) if v is not None}
    if s.n == 1 or len(shown) == 1:
        return fmt.format(s.median)  # one value, or every run the same as printed
    text = f"{fmt.format(s.median)} [{fmt.format(s.q1)}, {fmt.format(s.q3)}]"
    if s.ci_low is not None and s.ci_high is not None:
        text += f" ({fmt.format(s.ci_low)} to {fmt.format(s.ci_high)})"
    return text


def format_comparison(c: Comparison | None, alpha: float) -> str:
    if c is None:
        return "-"
    p = c.pvalue if c.adjusted is None else c.adjusted
    return f"{c.verdict(alpha)} (p={p:.2g})"


def _art_cell(runs: list[tuple[int | None, int]]) -> str:
    art = average_runtime(runs)
    if art is None:
        return "-"
    hits = sum(1 for hit, _ in runs if hit is not None)
    return f"{_num(art, '{:.4g}')} ({hits}/{len(runs)})"


@dataclass
class ConfigStats:
    """One configuration's finished runs of one problem, as numbers (the table is their text)."""

    label: str
    planned: int
    done: list[Outcome]
    partial: int
    solvable: bool
    columns: dict[str, Summary | None] = field(default_factory=dict)
    solved: int = 0
    versus: Comparison | None = None
    versus_budget: Comparison | None = None
    art_optimum: list[tuple[int | None, int]] = field(default_factory=list)
    art_target: list[tuple[int | None, int]] | None = None


NUMERIC = {  # column: (number of an outcome, format)
    "steps to optimum": (lambda o: o.result.solved_step, "{:.1f}"),
    "best": (lambda o: o.best(), "{:.4g}"),
    "gap %": (lambda o: o.gap_pct(), "{:.2f}"),
    "unique proposed": (lambda o: o.unique(), "{:.1f}"),
    "valid %": (lambda o: o.valid_pct(), "{:.0f}"),
    "calls": (lambda o: o.result.usage.calls, "{:.0f}"),
    "tokens": (lambda o: o.result.usage.tokens, "{:.0f}"),
    "wall s": (lambda o: o.result.elapsed_s, "{:.1f}"),
}


def _target_of(o: Outcome, options: TableOptions) -> float | None:
    if options.target is not None:
        return options.target
    optimum = getattr(o.problem, "optimum", None)
    if options.target_gap is None or optimum is None:
        return None
    sign = 1.0 if o.problem.direction is Direction.MINIMIZE else -1.0
    return float(optimum) + sign * abs(float(optimum)) * options.target_gap / 100.0


def config_stats(label: str, outcomes: list[Outcome], planned: int, options: TableOptions) -> ConfigStats:
    """Finished runs only: a partial run (interrupted, or running elsewhere) would bias the numbers."""
    done = [o for o in outcomes if o.result is not None and o.finished]
    partial = sum(1 for o in outcomes if o.result is not None and not o.finished)
    stats = ConfigStats(label, planned, done, partial, solvable=bool(outcomes) and outcomes[0].solvable())
    solved = [o for o in done if o.solved()]
    stats.solved = len(solved)
    for column, (number, _) in NUMERIC.items():
        pool = solved if column == "steps to optimum" else done
        stats.columns[column] = summarize([number(o) for o in pool])
    if options.budget is not None:
        stats.columns["budget"] = summarize([o.best_within(*options.budget) for o in done])
    if stats.solvable:
        stats.art_optimum = [(o.evals_to_optimum(), o.evaluations()) for o in done]
    if options.target_label() is not None:
        targets = [(o, _target_of(o, options)) for o in done]
        stats.art_target = [(o.evals_to_target(t), o.evaluations()) for o, t in targets if t is not None]
    return stats


def _paired_values(mine: list[Outcome], theirs: list[Outcome], value: Callable[[Outcome], float | None]
                   ) -> tuple[list[float], list[float], bool]:
    """Both sides' values; paired (aligned by seed) when both ran exactly the same seeds."""
    a = {o.cell.seed: value(o) for o in mine}
    b = {o.cell.seed: value(o) for o in theirs}
    a = {k: v for k, v in a.items() if v is not None and math.isfinite(v)}
    b = {k: v for k, v in b.items() if v is not None and math.isfinite(v)}
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        return [a[k] for k in seeds], [b[k] for k in seeds], True
    return list(a.values()), list(b.values()), False


def _test_against(rows: list[ConfigStats], control: ConfigStats, direction: Direction, options: TableOptions) -> None:
    """Each row's final best (and best within the budget) against the control's, Holm-corrected
    over the rows of the table."""
    tests = [("versus", lambda o: o.best())]
    if options.budget is not None:
        budget = options.budget
        tests.append(("versus_budget", lambda o: o.best_within(*budget)))
    for attr, value in tests:
        compared = []
        for row in rows:
            if row is control:
                continue
            x, y, paired = _paired_values(row.done, control.done, value)
            comparison = compare_to_control(x, y, direction, paired=paired)
            if comparison is not None:
                compared.append((row, comparison))
        for (row, comparison), adjusted in zip(compared, holm([c.pvalue for _, c in compared])):
            setattr(row, attr, replace(comparison, adjusted=adjusted))


def control_label(configs: dict[str, list[Outcome]], options: TableOptions, problem: str) -> str | None:
    """The row every other is tested against: ``--control``, else the configuration labelled
    ``random``, else the one configuration whose runs use the random proposer (a grid's
    ``proposer = "random"``, or a store's runs labelled by it); None when there is none or several."""
    if options.control is not None:
        if options.control not in configs:
            raise GridError(f"--control {options.control!r}: no configuration of that name for {problem} "
                            f"(have: {', '.join(configs)})")
        return options.control
    if "random" in configs:
        return "random"
    randoms = [label for label, outcomes in configs.items()
               if label.startswith("random ") or any(o.cell.options.get("proposer") == "random" for o in outcomes)]
    return randoms[0] if len(randoms) == 1 else None


def comparison_table(label: str, configs: dict[str, list[Outcome]], planned: int,
                     refs: dict[int, list[Reference]], options: TableOptions = TableOptions()) -> NotedTable:
    """One problem's table: a row per configuration, then the references, with the notes that say
    what the cells are."""
    rows = [config_stats(c, outcomes, planned, options) for c, outcomes in configs.items()]
    some = next((o for outcomes in configs.values() for o in outcomes), None)
    direction = some.problem.direction if some else Direction.MINIMIZE
    control = control_label(configs, options, label)
    control_row = next((r for r in rows if r.label == control), None)
    if control_row is not None:
        _test_against(rows, control_row, direction, options)
    budget_label, target_label = options.budget_label(), options.target_label()
    vs = f"vs {control} (Holm p)"
    header = ["configuration", "runs", "solved", "aRT to optimum", target_label, "steps to optimum", "best", "gap %",
              vs if control_row else None, f"best at {budget_label}" if budget_label else None,
              f"{vs} at {budget_label}" if control_row and budget_label else None,
              "unique proposed", "valid %", "calls", "tokens", "cost (all runs)", "wall s"]
    table: Table = [[h for h in header if h is not None]]
    for r in rows:
        solved = "-"
        if r.solvable and r.done:
            lo, hi = wilson(r.solved, len(r.done)) or (0.0, 0.0)
            solved = f"{r.solved}/{len(r.done)} ({100 * lo:.0f} to {100 * hi:.0f}%)"
        fmt = {c: f for c, (_, f) in NUMERIC.items()}
        cells: list[str | None] = [
            r.label,
            f"{len(r.done)}/{r.planned}" + (f" (+{r.partial} partial)" if r.partial else ""),
            solved,
            _art_cell(r.art_optimum) if r.solvable else "-",
            (_art_cell(r.art_target) if r.art_target else "-") if target_label else None,
            format_summary(r.columns["steps to optimum"], fmt["steps to optimum"]),
            format_summary(r.columns["best"], fmt["best"]),
            format_summary(r.columns["gap %"], fmt["gap %"]),
            ("control" if r is control_row else format_comparison(r.versus, options.alpha)) if control_row else None,
            format_summary(r.columns.get("budget"), "{:.4g}") if budget_label else None,
            (("control" if r is control_row else format_comparison(r.versus_budget, options.alpha))
             if control_row and budget_label else None),
            *(format_summary(r.columns[c], fmt[c]) for c in ("unique proposed", "valid %", "calls", "tokens")),
            _dollars(r.done) if r.done else "-",
            format_summary(r.columns["wall s"], fmt["wall s"]),
        ]
        table.append([c for c in cells if c is not None])
    optimum_of = {o.cell.seed: getattr(o.problem, "optimum", None) for outs in configs.values() for o in outs}
    width = len(table[0])
    for ref in reference_rows(refs, optimum_of, direction):
        table.append(_reference_row(ref, table[0])[:width])
    return NotedTable(_drop_empty_columns(table), _notes(rows, control_row, options))


def _reference_row(cells: dict[str, str], header: list[str]) -> list[str]:
    return [cells.get(h, "-") for h in header]


def _notes(rows: list[ConfigStats], control: ConfigStats | None, options: TableOptions) -> list[str]:
    notes = ["cells: median [interquartile range] (95% bootstrap CI of the mean) over finished runs; "
             "solved: runs (95% Wilson interval)"]
    if any(r.solvable for r in rows) or options.target_label():
        notes.append("aRT (COCO's average runtime): scored solutions summed over all runs, a successful run up to "
                     "its first success and an unsuccessful one in full, divided by the successful runs (shown in "
                     "brackets); inf when none succeeded")
    if control is not None:
        tests = {c.test for r in rows for c in (r.versus, r.versus_budget) if c is not None}
        paired = ("Wilcoxon signed-rank test of the best values, paired by seed (a seed fixes the instance and the "
                  "starting points)")
        unpaired = "Mann-Whitney U test of the best values (where the rows ran different seeds, runs do not pair)"
        used = {"Wilcoxon signed-rank": paired, "Mann-Whitney U": unpaired}
        described = "; ".join(used[t] for t in sorted(tests, reverse=True)) or "no values to test"
        notes.append(f"vs {control.label}: two-sided {described}; p Holm-corrected over the rows; "
                     f"alpha = {options.alpha:g}")
    if options.budget is not None:
        axis, amount = options.budget
        notes.append(f"best at {options.budget_label()}: the best value among solutions scored within {amount:g} "
                     f"{_AXIS_WORDS[axis]} (a run that stopped sooner counts with what it reached)")
    counts = [len(r.done) for r in rows if r.done]
    if counts and min(counts) < SMALL_N:
        notes.append(f"n = {min(counts)} runs is small: the intervals are wide and a test can miss a real "
                     f"difference ({SMALL_N} or more recommended)")
    return notes


def reference_rows(refs: dict[int, list[Reference]], optimum_of: dict[int, float | None],
                   direction: Direction) -> list[dict[str, str]]:
    """The references over seeds, as cells by column name."""
    by_name: dict[str, list[tuple[int, Reference]]] = {}
    for seed, rs in refs.items():
        for r in rs:
            by_name.setdefault(r.name, []).append((seed, r))
    rows = []
    for name, items in by_name.items():
        gaps = [gap_pct(r.value, optimum_of.get(s), direction) for s, r in items]
        rows.append({"configuration": f"{name} (reference)", "runs": f"{len(items)}",
                     "best": format_summary(summarize([r.value for _, r in items]), "{:.4g}"),
                     "gap %": format_summary(summarize(gaps), "{:.2f}"),
                     "wall s": format_summary(summarize([r.seconds for _, r in items]), "{:.2g}")})
    return rows


def tables(collected: Collected, options: TableOptions = TableOptions()) -> dict[str, NotedTable]:
    """One table per problem label: configurations, then references."""
    out: dict[str, NotedTable] = {}
    grid = collected.grid
    for plabel in grid.problems:
        outcomes = [o for o in collected.outcomes if o.cell.problem == plabel]
        if not outcomes:
            continue
        configs = {c: [o for o in outcomes if o.cell.config == c] for c in grid.configs}
        configs = {c: outs for c, outs in configs.items() if outs}
        out[plabel] = comparison_table(plabel, configs, len(grid.seeds), collected.references.get(plabel, {}), options)
    return out


def _drop_empty_columns(rows: Table) -> Table:
    keep = [i for i in range(len(rows[0])) if i == 0 or any(r[i] not in ("-", "") for r in rows[1:])]
    return [[r[i] for i in keep] for r in rows]


def _dollars(outcomes: list[Outcome]) -> str:
    usages = [o.result.usage for o in outcomes if o.result]
    total = sum(u.cost_usd for u in usages)
    unpriced = sum(u.unpriced_calls for u in usages)
    return f">=${total:.4f}" if unpriced else f"${total:.4f}"


# --- the command ----------------------------------------------------------------------------
