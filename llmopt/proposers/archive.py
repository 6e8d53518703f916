"""A MAP-Elites archive as a pure function of trials: the best solution in each cell of a grid
over a problem's features (:meth:`~llmopt.problem.Problem.features`).

The grid (:class:`Grid`) cuts each feature's declared range into ``bins`` equal cells, as pyribs'
``GridArchive`` does: a value is placed by ``floor(bins * (value - low) / (high - low))``, clipped
to the first and last cell (so ``high`` itself is in the last). The archive (:func:`build`) is
made by adding scored trials in number order: a trial takes its cell if the cell is empty or it
scores strictly better than the trial there (a tie keeps the earlier one). Nothing else goes in,
so the archive after any prefix of a run's trials is the same in the run, in a resumed run and in
a reader of the store.

Readers of stored runs use :func:`coverage` and :func:`qd_score` on what the proposer recorded
with each trial (its ``origin``: ``child_cell`` and ``features``) and the grid its config recorded
(:meth:`Grid.from_config`), without rebuilding a problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from llmopt.history import Trial
from llmopt.problem import Direction

Cell = tuple[int, ...]
#: Most cells a grid may have (bins ** dimensions): an archive is a dict, but a coverage of 1e-9 says nothing.
MAX_CELLS = 1_000_000


@dataclass(frozen=True)
class Grid:
    """Feature names, their (low, high) ranges and bins per feature."""

    names: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    bins: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.names or not len(self.names) == len(self.ranges) == len(self.bins):
            raise ValueError(f"a grid needs as many ranges and bins as features: {self.names}, {self.ranges}, "
                             f"{self.bins}")
        for name, (low, high) in zip(self.names, self.ranges):
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"feature {name!r}: its range must be finite with low < high, got ({low}, {high})")
        if any(b < 1 for b in self.bins):
            raise ValueError(f"bins must be >= 1, got {list(self.bins)}")
        if math.prod(self.bins) > MAX_CELLS:
            raise ValueError(f"the grid has {math.prod(self.bins)} cells (bins {list(self.bins)}): at most {MAX_CELLS}")

    @property
    def cells(self) -> int:
        return math.prod(self.bins)

    def cell(self, values: Sequence[float]) -> Cell:
        """The cell of a point in feature space (values outside a range go to its edge cell)."""
        out = []
        for v, (low, high), bins in zip(values, self.ranges, self.bins):
            v = float(v) if math.isfinite(float(v)) else low
            out.append(min(max(int(math.floor(bins * (v - low) / (high - low))), 0), bins - 1))
        return tuple(out)

    def to_config(self) -> dict[str, Any]:
        return {"features": list(self.names), "ranges": [list(r) for r in self.ranges], "bins": list(self.bins)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Grid":
        """The grid a MAP-Elites run recorded (its proposer config)."""
        return cls(tuple(config["features"]), tuple((float(lo), float(hi)) for lo, hi in config["ranges"]),
                   tuple(int(b) for b in config["bins"]))


def better(direction: Direction, challenger: Trial, holder: Trial | None) -> bool:
    """Whether ``challenger`` takes a cell ``holder`` holds (strictly better; an empty cell: yes)."""
    return holder is None or direction.better(float(challenger.value), float(holder.value))  # type: ignore[arg-type]


def add(archive: dict[Cell, Trial], cell: Cell, trial: Trial, direction: Direction) -> bool:
    """Put ``trial`` in ``cell`` if it is better than the cell's elite; whether it went in."""
    if not better(direction, trial, archive.get(cell)):
        return False
    archive[cell] = trial
    return True


def build(trials: Iterable[Trial], cell_of: Callable[[Trial], Cell | None], direction: Direction) -> dict[Cell, Trial]:
    """The archive of ``trials`` (scored ones, by number; ``cell_of`` None: left out)."""
    archive: dict[Cell, Trial] = {}
    for trial in sorted((t for t in trials if t.ok), key=lambda t: t.number):
        cell = cell_of(trial)
        if cell is not None:
            add(archive, cell, trial, direction)
    return archive


def ranked(archive: Mapping[Cell, Trial], direction: Direction) -> list[tuple[Cell, Trial]]:
    """The archive's cells, best elite first (ties: the earlier trial first)."""
    sign = 1.0 if direction is Direction.MINIMIZE else -1.0
    return sorted(archive.items(), key=lambda item: (sign * float(item[1].value), item[1].number))  # type: ignore[arg-type]


def stored_archive(trials: Iterable[Trial], direction: Direction | str) -> dict[Cell, Trial]:
    """The archive of a stored MAP-Elites run from what its trials recorded (``origin["child_cell"]``),
    for readers that hold no problem. Trials without a recorded cell (the starting solutions,
    suggestions) are not in it."""
    def cell_of(trial: Trial) -> Cell | None:
        cell = (trial.origin or {}).get("child_cell")
        return tuple(int(c) for c in cell) if isinstance(cell, (list, tuple)) else None

    return build(trials, cell_of, Direction(direction))


def coverage(archive: Mapping[Cell, Trial], grid: Grid) -> float:
    """Share of the grid's cells that hold an elite."""
    return len(archive) / grid.cells


def qd_score(archive: Mapping[Cell, Trial], direction: Direction | str, offset: float) -> float:
    """The QD-score: the sum over occupied cells of how much better the elite is than ``offset``
    (a value no elite is worse than, e.g. the worst score of any trial in the runs compared), so
    each term is >= 0 and a new cell never lowers it (pyribs' ``qd_score_offset``)."""
    sign = 1.0 if Direction(direction) is Direction.MAXIMIZE else -1.0
    return float(sum(max(sign * (float(t.value) - offset), 0.0) for t in archive.values()))  # type: ignore[arg-type]
