"""The numbers behind ``llmopt plot``'s figures, without matplotlib: best-so-far curves by step and
by spend, the fixed-target ECDF's hits, the overfitting figure's training and validation scores.
Every function reads :class:`llmopt.experiments.compare.Outcome`s as the one read path gives them."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from llmopt.experiments.compare import Collected, Outcome
from llmopt.history import SolutionHistory
from llmopt.problem import Direction, gap_ladder

_GRID_POINTS = 200  # points of a spend axis (tokens, usd, seconds)


def step_curve(outcome: "Outcome", last_step: int) -> np.ndarray:
    """Best-so-far after each step 0..last_step (carried forward past the run's own end)."""
    out = np.full(last_step + 1, np.nan)
    for step, value in outcome.result.history.best_so_far():
        if value is not None and step <= last_step:
            out[step] = value
    return _carry_forward(out)


def _carry_forward(values: np.ndarray) -> np.ndarray:
    last = np.nan
    for i, v in enumerate(values):
        if math.isnan(v):
            values[i] = last
        else:
            last = v
    return values


def spend_curve(outcome: "Outcome", axis: str, xs: np.ndarray) -> np.ndarray:
    """Best-so-far at each amount ``xs`` of ``axis`` spent (NaN before the first scored solution; a
    run that ended sooner keeps its final value)."""
    spend = outcome.spend
    if spend is None or not len(spend.values):
        return np.full(len(xs), np.nan)
    best = np.minimum.accumulate(spend.values) if outcome.problem.direction is Direction.MINIMIZE \
        else np.maximum.accumulate(spend.values)
    index = np.searchsorted(spend.axis(axis), xs, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)], np.nan)


def x_points(outcomes: list["Outcome"], x_of: str) -> np.ndarray:
    if x_of == "step":
        return np.arange(max(o.result.steps for o in outcomes) + 1, dtype=float)
    if x_of == "evals":
        return np.arange(1, max(o.evaluations() for o in outcomes) + 1, dtype=float)
    top = max((o.spend.total[x_of] for o in outcomes if o.spend is not None), default=0.0)
    return np.linspace(0.0, top, _GRID_POINTS) if top > 0 else np.zeros(1)


def seeds_plotted(collected: "Collected", label: str) -> list[int]:
    """The seeds of a problem's runs that are in the store (a grid may plan more than were run)."""
    return sorted({o.cell.seed for o in collected.outcomes if o.cell.problem == label and o.result is not None})


def targets_of(outcome: "Outcome", best_known: float | None) -> list[tuple[str, float]]:
    """The run's ladder of targets: its problem's (:meth:`Problem.targets`), else gaps to the best
    value any run of the same instance found."""
    ladder = list(outcome.problem.targets())
    if not ladder and best_known is not None:
        ladder = [(f"{name} (to the best found)", value) for name, value in gap_ladder(best_known,
                                                                                       outcome.problem.direction)]
    return ladder


def ecdf_points(outcomes: list["Outcome"], best_known: dict[int, float | None]) -> tuple[np.ndarray, int]:
    """Evaluations at which each (run, target) pair was first reached (sorted; unreached pairs left
    out), and the number of pairs: COCO's fixed-target runtime ECDF."""
    hits: list[float] = []
    pairs = 0
    for o in outcomes:
        for _, target in targets_of(o, best_known.get(o.cell.seed)):
            pairs += 1
            hit = o.evals_to_target(target)
            if hit is not None:
                hits.append(float(hit))
    return np.sort(np.array(hits)), pairs


def overfitting_curves(history: SolutionHistory, rows: Sequence[Any]) -> dict[str, list[float]]:
    """Per validation step (ascending): ``step``; ``training`` and ``validation``, the two scores of the
    top solution by training score among those validated there (ties: the earlier trial); and
    ``best_validation``, the best validation score of that step's solutions (NaN: none scored)."""
    direction = history.direction
    sign = 1.0 if direction is Direction.MINIMIZE else -1.0
    by_step: dict[int, list[Any]] = {}
    for row in rows:
        by_step.setdefault(int(row.step), []).append(row)
    out: dict[str, list[float]] = {"step": [], "training": [], "validation": [], "best_validation": []}
    for step in sorted(by_step):
        scored = [(r, history.get(r.number)) for r in by_step[step]]
        scored = [(r, t) for r, t in scored if t is not None and t.value is not None]
        if not scored:
            continue
        top, trial = min(scored, key=lambda rt: (sign * float(rt[1].value), rt[1].number))  # type: ignore[arg-type]
        values = [float(r.value) for r in by_step[step] if r.value is not None]
        out["step"].append(float(step))
        out["training"].append(float(trial.value))  # type: ignore[arg-type]
        out["validation"].append(math.nan if top.value is None else float(top.value))
        out["best_validation"].append((min(values) if sign > 0 else max(values)) if values else math.nan)
    return out


def best_known_by_seed(outcomes: Sequence[Outcome]) -> dict[int, float | None]:
    """The best value any of ``outcomes`` found, per seed (an instance): the ECDF's ladder where the
    problem has none of its own."""
    best_known: dict[int, float | None] = {}
    for o in outcomes:
        best = o.best()
        if best is None:
            continue
        old = best_known.get(o.cell.seed)
        better = old is None or (best < old if o.problem.direction is Direction.MINIMIZE else best > old)
        best_known[o.cell.seed] = best if better else old
    return best_known
