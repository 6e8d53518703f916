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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from llmopt.history import Trial
from llmopt.problem import Direction


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
