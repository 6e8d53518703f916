"""Overfitting watch: what a run's validation scores say (the OPRO paper's Section 4, Figure 11).

Every K steps the optimizer scores its top solutions (by training score) on the problem's
validation split and records one row per (step, trial): ``Optimizer(validate_every=K)``. From
those rows, for a live run and for a stored one alike:

* :func:`evaluations`: per evaluation step, the best validation score of that evaluation and the
  best so far (the curve of the paper's Figure 11 and of ``llmopt show``);
* :func:`stalled`: whether the best validation score has not improved in ``patience``
  evaluations (``--early-stop validation --patience P``);
* :func:`chosen`: the run's pick, the solution best on validation (ties: the better training
  score, then the earlier trial), which ``llmopt evaluate --run`` scores on the test split.

Rows are anything with ``step``, ``number``, ``value`` (None: it could not be scored) and
``error``, as :class:`llmopt.store.ValidationRecord`.

When a run validates is :class:`ValidationScheduler`'s business (the optimizer only tells it that a
step finished); what it validates with is :class:`ValidationSettings`, recorded with the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from llmopt.history import SolutionHistory, Trial
from llmopt.problem import Direction, Problem
from llmopt.scoring import evaluation, failed_calls


@dataclass(frozen=True)
class ValidationPoint:
    """One evaluation (step ``step``): its best validation score and trial, and the best so far."""

    step: int
    trials: int  # how many solutions were validated at this step
    best: float | None  # this evaluation's best validation score (None: none could be scored)
    best_number: int | None
    best_so_far: float | None
    best_so_far_step: int | None  # the evaluation step where best_so_far was first reached


def _better(a: float, b: float | None, direction: Direction) -> bool:
    return b is None or Direction(direction).better(a, b)


def evaluations(rows: Iterable[Any], direction: Direction | str) -> list[ValidationPoint]:
    """Per evaluation step (ascending), its best validation score and the best so far."""
    direction = Direction(direction)
    by_step: dict[int, list[Any]] = {}
    for row in rows:
        by_step.setdefault(int(row.step), []).append(row)
    out: list[ValidationPoint] = []
    so_far: float | None = None
    so_far_step: int | None = None
    for step in sorted(by_step):
        best: float | None = None
        best_number: int | None = None
        for row in sorted(by_step[step], key=lambda r: r.number):
            if row.value is not None and _better(float(row.value), best, direction):
                best, best_number = float(row.value), int(row.number)
        if best is not None and _better(best, so_far, direction):
            so_far, so_far_step = best, step
        out.append(ValidationPoint(step, len(by_step[step]), best, best_number, so_far, so_far_step))
    return out


def stalled(points: Sequence[ValidationPoint], patience: int) -> bool:
    """Whether the best validation score has not improved in the last ``patience`` evaluations
    (an evaluation that scored nothing counts as one without improvement)."""
    if not points:
        return False
    improved = max((i for i, p in enumerate(points) if p.best_so_far_step == p.step and p.best is not None),
                   default=-1)
    return len(points) - 1 - improved >= patience


def validation_scores(rows: Iterable[Any]) -> dict[int, float]:
    """Each validated trial's validation score (its first scored row: a trial is scored once)."""
    out: dict[int, float] = {}
    for row in rows:
        if row.value is not None and int(row.number) not in out:
            out[int(row.number)] = float(row.value)
    return out


def chosen_number(rows: Iterable[Any], training: Mapping[int, float | None], direction: Direction | str) -> int | None:
    """The trial best on validation; ties: the better training score, then the earlier trial (None:
    no trial has a validation score)."""
    sign = 1.0 if Direction(direction) is Direction.MINIMIZE else -1.0
    scores = validation_scores(rows)
    if not scores:
        return None

    def rank(number: int) -> tuple[float, float, int]:
        train = training.get(number)
        return sign * scores[number], sign * train if train is not None else float("inf"), number

    return min(scores, key=rank)


def chosen(rows: Iterable[Any], trials: Iterable[Trial], direction: Direction | str) -> Trial | None:
    """The trial of :func:`chosen_number` among ``trials`` (None: nothing was validated)."""
    by_number = {t.number: t for t in trials}
    number = chosen_number(rows, {n: t.value for n, t in by_number.items()}, direction)
    return None if number is None else by_number.get(number)


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


@dataclass(frozen=True)
class ValidationSettings:
    """``Optimizer(validate_every=, validate_top=, validation_patience=)``: every ``every`` steps
    (None: never) score the ``top`` solutions by training score (None: all) on the validation split;
    stop once the best validation score has not improved in ``patience`` evaluations (None: never)."""

    every: int | None = None
    top: int | None = 3
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.every is None:
            if self.patience is not None:
                raise ValueError("validation_patience needs validate_every (validation scores to watch)")
            return
        if not _positive(self.every):
            raise ValueError(f"validate_every must be an integer >= 1 (steps between validations), got {self.every!r}")
        if self.top is not None and not _positive(self.top):
            raise ValueError(f"validate_top must be an integer >= 1 or None (all), got {self.top!r}")
        if self.patience is not None and not _positive(self.patience):
            raise ValueError(f"validation_patience must be an integer >= 1 (evaluations), got {self.patience!r}")

    def check(self, problem: Problem) -> None:
        """Refuse, before anything is spent, to validate a problem that has no validation split."""
        if self.every is not None and not problem.has_validation:
            raise ValueError(f"problem {problem.name!r} has no validation split to validate on "
                             "(prompt optimization: --validation-fraction F gives the task a validation split)")

    def config(self) -> dict[str, Any]:
        return {"every": self.every, "top": self.top, "patience": self.patience}


#: ``record(step, number, value, error)`` stores one validation row and returns it.
RecordRow = Callable[[int, int, "float | None", "str | None"], Any]
#: ``account(number, model, completion, item)`` accounts one validation call of trial ``number``.
AccountCall = Callable[[int, str, Any, int], None]


class ValidationScheduler:
    """Validates each finished step that is due (every ``settings.every`` steps, step 0 included),
    in order; a step whose validation a kill cut short is finished first. A trial validated at an
    earlier step keeps its score (no new calls). It stops, leaving the rest due, once
    ``out_of_spend()`` says a call, token, dollar or time limit is used up (a resume with a larger
    budget does the rest first)."""

    def __init__(self, settings: ValidationSettings, problem: Problem, history: SolutionHistory, *,
                 record: RecordRow, account: AccountCall, out_of_spend: Callable[[], bool]) -> None:
        settings.check(problem)
        self.settings, self.problem, self.history = settings, problem, history
        self._record, self._account, self._out_of_spend = record, account, out_of_spend
        self.rows: list[Any] = []  # every validation row, in recording order
        self._validated: dict[int, Any] = {}  # trial number -> its first row (scored once)
        self._due: list[int] = []  # finished steps whose validation is not known to be complete

    def load(self, rows: Iterable[Any], finished_steps: Iterable[int]) -> None:
        """A resumed run's rows; each finished step that was due is checked again (a kill may
        have cut its validation short)."""
        for row in rows:
            self._add(row)
        if self.settings.every is not None:
            self._due = [s for s in finished_steps if s % self.settings.every == 0]

    def validated(self, number: int) -> bool:
        """Whether trial ``number`` has a validation row (so its validation calls count)."""
        return number in self._validated

    def step_finished(self, step: int) -> None:
        if self.settings.every is not None and step % self.settings.every == 0:
            self._due.append(step)
        self.run_due()

    def run_due(self) -> None:
        while self._due:
            step = self._due[0]
            done = {row.number for row in self.rows if row.step == step}
            for trial in self._targets(step):
                if trial.number in done:
                    continue
                if self._out_of_spend():
                    return
                self._validate(step, trial)
            self._due.pop(0)

    def stall(self) -> str | None:
        """Why the run should stop on validation (its patience ran out); None to go on."""
        patience = self.settings.patience
        if patience is None:
            return None
        points = evaluations(self.rows, self.problem.direction)
        if not stalled(points, patience):
            return None
        last = points[-1]
        best = "no validation score yet" if last.best_so_far is None else \
            f"best {last.best_so_far:.6g} at step {last.best_so_far_step}"
        return f"validation accuracy has not improved in {patience} evaluations ({best})"

    def sorted_rows(self) -> tuple[Any, ...]:
        return tuple(sorted(self.rows, key=lambda r: (r.step, r.number)))

    def _add(self, row: Any) -> None:
        self.rows.append(row)
        self._validated.setdefault(row.number, row)

    def _targets(self, step: int) -> list[Trial]:
        """The solutions validated after ``step``: the top ``settings.top`` by training score (all
        if None) among the trials of steps up to ``step``, best first."""
        upto = SolutionHistory(self.problem.direction, (t for t in self.history if t.step <= step))
        return upto.top_k(len(upto) if self.settings.top is None else self.settings.top)[::-1]

    def _validate(self, step: int, trial: Trial) -> None:
        known = self._validated.get(trial.number)
        if known is not None:  # scored at an earlier evaluation: the same score, no new calls
            value, error = known.value, known.error
        else:
            value, error = self._score(trial)
        self._add(self._record(step, trial.number, value, error))

    def _score(self, trial: Trial) -> tuple[float | None, str | None]:
        done, value, error = evaluation(lambda: self.problem.evaluate_validation(trial.solution), "validation")
        if done is None:  # recorded as the trial's validation error, not a dead run
            return None, error
        for item, model, completion in done.calls:
            self._account(trial.number, model, completion, item)
        error = failed_calls(done, "validation")
        if error is None and not math.isfinite(value):  # type: ignore[arg-type]
            error = f"validation score is {value!r}, not a finite number"
        return (None, error) if error is not None else (value, None)
