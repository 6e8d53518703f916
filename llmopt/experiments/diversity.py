"""How diverse a run's search was, from its stored trials alone: the measures of the compare tables'
diversity columns and of the population figures (:mod:`llmopt.experiments.plot_populations`).

* Novelty filtering's rejections: :func:`llmopt.novelty.similar_count`.
* A MAP-Elites run's archive: each trial made by a MAP-Elites proposer records where it landed,
  ``origin = {"cell": [parent cell], "child_cell": [its own cell], "features": [its feature values]}``,
  and the run's proposer config records the archive's ``features`` (names), ``ranges`` ([low, high]
  per feature) and ``bins`` (per feature, or one count for all). The archive is the best scored
  trial per child cell; its **coverage** is the occupied cells over all cells, and its **QD-score**
  the sum over occupied cells of the elite's improvement on an offset, clipped at 0, so that higher
  is better in both directions: for minimization ``max(0, offset - value)``, for maximization
  ``max(0, value - offset)``, the offset being the worst value of the run's starting solutions
  (of all its scored solutions when it had none). A starting solution records no cell, so it counts
  in the archive only through the proposals that landed in its cell.
* An island run's islands: each trial of an islands proposer records ``origin = {"island": i}``;
  :func:`island_curves` replays the database from the trials and the recorded settings, as the
  proposer itself rebuilds it, and gives each island's best by step and the steps of the resets.

Everything here is a pure function of trials (anything with ``state``, ``value``, ``step``,
``source`` and ``metrics["origin"]``) and of the recorded proposer config: reading rebuilds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction
from llmopt.proposers.archive import qd_score as archive_qd_score
from llmopt.proposers.archive import stored_archive
from llmopt.proposers.islands import RESET_EVERY, Island, best_member, build_islands

Cell = tuple[int, ...]


@dataclass(frozen=True)
class ArchiveSpec:
    """A MAP-Elites archive's grid: one name, range and bin count per feature."""

    features: tuple[str, ...]
    bins: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...] = ()

    @property
    def cells(self) -> int:
        return math.prod(self.bins)

    @classmethod
    def of_config(cls, proposer: dict[str, Any] | None) -> "ArchiveSpec | None":
        """The archive a recorded proposer config describes (``features``, ``bins``, ``ranges``; None:
        not a MAP-Elites proposer's config, or one without bins)."""
        if not isinstance(proposer, dict) or proposer.get("bins") is None:
            return None
        names = [str(f) for f in proposer.get("features") or ()]
        bins = proposer["bins"]
        if isinstance(bins, (int, float)):
            bins = [int(bins)] * max(len(names), 1)
        ranges = tuple((float(lo), float(hi)) for lo, hi in proposer.get("ranges") or ())
        names = names or [f"feature {i + 1}" for i in range(len(bins))]
        if len(bins) != len(names) or any(int(b) < 1 for b in bins):
            return None
        return cls(tuple(names), tuple(int(b) for b in bins), ranges)


def _origin(trial: Trial) -> dict[str, Any]:
    origin = trial.metrics.get("origin") if isinstance(trial.metrics, dict) else None
    return origin if isinstance(origin, dict) else {}


def child_cell(trial: Trial) -> Cell | None:
    """The archive cell a trial landed in (None: it records none)."""
    cell = _origin(trial).get("child_cell")
    return tuple(int(i) for i in cell) if isinstance(cell, (list, tuple)) and cell else None


def has_cells(trials: Iterable[Trial]) -> bool:
    return any(child_cell(t) is not None for t in trials)


def archive(trials: Iterable[Trial], direction: Direction | str) -> dict[Cell, Trial]:
    """The elite of each cell: the best scored trial that landed there (ties: the earlier); the
    proposer's own rule (:func:`llmopt.proposers.archive.stored_archive`), so readers and the
    proposer agree cell for cell."""
    return stored_archive(trials, direction)


def coverage(trials: Iterable[Trial], spec: ArchiveSpec, direction: Direction | str = Direction.MINIMIZE) -> float:
    """Occupied cells over all cells of ``spec``, in [0, 1] (cells outside the grid are not counted)."""
    inside = {c: t for c, t in archive(trials, direction).items()
              if len(c) == len(spec.bins) and all(0 <= i < b for i, b in zip(c, spec.bins))}
    return len(inside) / spec.cells


def qd_offset(trials: Sequence[Trial], direction: Direction | str) -> float | None:
    """The worst value of the starting solutions (of every scored solution if there were none)."""
    direction = Direction(direction)
    scored = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    pool = [float(t.value) for t in scored if t.source == "start"] or [float(t.value) for t in scored]  # type: ignore[arg-type]
    if not pool:
        return None
    return max(pool) if direction is Direction.MINIMIZE else min(pool)


def qd_score(trials: Sequence[Trial], direction: Direction | str, offset: float | None = None) -> float | None:
    """The sum over occupied cells of the elite's improvement on ``offset`` (default :func:`qd_offset`),
    each clipped at 0: higher is better whatever the direction (None: nothing scored)."""
    direction = Direction(direction)
    offset = qd_offset(trials, direction) if offset is None else offset
    if offset is None:
        return None
    return archive_qd_score(archive(trials, direction), direction, offset)


def archive_grid(trials: Iterable[Trial], direction: Direction | str, bins: Sequence[int] | None = None,
                 dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The archive's best value per cell over two features (``dims``), NaN where empty; with more
    features, each shown cell holds the best over the others. ``bins`` None: as many as the trials
    reach. One feature is drawn as a single row."""
    direction = Direction(direction)
    elites = archive(trials, direction)
    width = max((len(c) for c in elites), default=1)
    shape = list(bins) if bins is not None else [max((c[i] for c in elites if len(c) > i), default=0) + 1
                                                  for i in range(width)]
    rows = shape[dims[0]] if len(shape) > dims[0] else 1
    cols = shape[dims[1]] if len(shape) > dims[1] else 1
    grid = np.full((rows, cols), np.nan)
    for cell, t in elites.items():
        r = cell[dims[0]] if len(cell) > dims[0] else 0
        c = cell[dims[1]] if len(cell) > dims[1] else 0
        if 0 <= r < rows and 0 <= c < cols:
            value, old = float(t.value), grid[r, c]  # type: ignore[arg-type]
            if math.isnan(old) or direction.better(value, old):
                grid[r, c] = value
    return grid


def island_of(trial: Trial) -> int | None:
    island = _origin(trial).get("island")
    return int(island) if isinstance(island, (int, float)) and not isinstance(island, bool) else None


def has_islands(trials: Iterable[Trial]) -> bool:
    return any(island_of(t) is not None for t in trials)


@dataclass(frozen=True)
class IslandCurves:
    """Each island's best value as each step ended, ``{island: [(step, best), ...]}`` (an island
    with no solution yet has no point), and the steps after which the worse islands were reset."""

    curves: dict[int, list[tuple[int, float]]]
    resets: tuple[int, ...]


def island_curves(history: SolutionHistory, proposer: Mapping[str, Any], seed: int) -> IslandCurves:
    """The islands' database replayed from a run's trials (the proposer's own rebuild,
    :func:`llmopt.proposers.islands.build_islands`) with the settings the run recorded (``proposer``:
    its proposer config; ``seed``: the run's): every island starts with the starting solutions, gains
    the solutions proposed from it, and a reset island jumps to its founder's best, as the proposer
    saw them. Without a recorded island count, the islands the trials name."""
    count = proposer.get("islands")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        count = 1 + max((i for t in history if (i := island_of(t)) is not None), default=0)
    reset_every = proposer.get("reset_every", RESET_EVERY)
    reset_every = reset_every if isinstance(reset_every, int) and not isinstance(reset_every, bool) else RESET_EVERY
    trials = {t.number: t for t in history}
    out: dict[int, list[tuple[int, float]]] = {}

    def observe(step: int, islands: list[Island]) -> None:
        for i, island in enumerate(islands):
            best = best_member(island, trials, history.direction)
            if best is not None:
                out.setdefault(i, []).append((step, float(best.value)))  # type: ignore[arg-type]

    last = max((t.step for t in history), default=-1)
    _, resets = build_islands(history, last + 1, count, max(0, reset_every), int(seed), observe)
    return IslandCurves(dict(sorted(out.items())), tuple(r.step for r in resets))
