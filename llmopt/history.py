"""Trials and the append-only solution history shared by every problem."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Iterator

from llmopt.problem import Direction


class TrialState(str, enum.Enum):
    COMPLETE = "COMPLETE"  # decoded, new, scored
    INVALID = "INVALID"  # the reply did not decode; raw text and error kept
    DUPLICATE = "DUPLICATE"  # decoded to a solution already in the history; never re-scored
    FAILED = "FAILED"  # the LLM call or the scoring raised; error kept


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One proposal and what became of it. Immutable: the history only ever appends."""

    number: int
    step: int
    state: TrialState
    source: str  # "start", "user", "random", "llm:<model>", ...
    solution: Any = None
    text: str | None = None  # problem.encode(solution): the canonical stored form
    key: Hashable | None = None
    value: float | None = None
    raw: str | None = None  # the LLM's reply, verbatim
    error: str | None = None
    duplicate_of: int | None = None  # trial number of the first occurrence
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. how a raced score was cut short
    parents: tuple[int, ...] = ()  # trial numbers it was made from (an evolutionary operator's parents)

    @property
    def ok(self) -> bool:
        return self.state is TrialState.COMPLETE

    @property
    def origin(self) -> dict[str, Any] | None:
        """Where in a population the trial was made (``{"island": 3}``), as its proposer said; None: a
        proposer without populations. Kept in the stored metrics, so a resumed proposer reads it back."""
        return self.metrics.get("origin")


def with_origin(metrics: dict[str, Any] | None, origin: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's metrics with its proposal's origin (see :attr:`Trial.origin`) added, if it has one."""
    out = dict(metrics or {})
    if origin:
        out["origin"] = dict(origin)
    return out


def running_best(values: Iterable[float | None], direction: Direction | str) -> list[float | None]:
    """The best of ``values`` so far after each one (None entries are skipped: not scored; the
    result is None until the first number). The one best-so-far rule, for plain stored values
    too; :meth:`SolutionHistory.best_so_far` is it over a history."""
    direction = Direction(direction)
    out: list[float | None] = []
    best: float | None = None
    for value in values:
        if value is not None and (best is None or direction.better(value, best)):
            best = value
        out.append(best)
    return out


class SolutionHistory:
    """Every trial of a run, in order, with the queries the meta-prompt needs.

    Only COMPLETE trials are solutions: INVALID, DUPLICATE and FAILED ones are kept for the
    record but never shown to the LLM and never ranked.
    """

    def __init__(self, direction: Direction, trials: Iterable[Trial] = ()) -> None:
        self.direction = Direction(direction)
        self._trials: list[Trial] = []
        self._by_number: dict[int, Trial] = {}
        self._by_key: dict[Hashable, Trial] = {}
        self._best: Trial | None = None
        for trial in trials:
            self.append(trial)

    def append(self, trial: Trial) -> None:
        if trial.number in self._by_number:
            raise ValueError(f"trial number {trial.number} is already in the history")
        if trial.ok:
            if trial.key in self._by_key:
                raise ValueError(f"trial {trial.number} repeats key of trial {self._by_key[trial.key].number}")
            self._by_key[trial.key] = trial
            if self._best is None or self._rank(trial) < self._rank(self._best):
                self._best = trial
        self._trials.append(trial)
        self._by_number[trial.number] = trial

    def _rank(self, trial: Trial) -> tuple[float, int]:
        """Sort key: better values first, earlier trials first among ties."""
        value = float(trial.value)  # type: ignore[arg-type]
        return (value if self.direction is Direction.MINIMIZE else -value, trial.number)

    # --- queries -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._trials)

    def __getitem__(self, index: int) -> Trial:
        return self._trials[index]

    @property
    def trials(self) -> tuple[Trial, ...]:
        return tuple(self._trials)

    def completed(self) -> list[Trial]:
        return [t for t in self._trials if t.ok]

    def get(self, number: int) -> Trial | None:
        """The trial with this number, if recorded."""
        return self._by_number.get(number)

    def find(self, key: Hashable) -> Trial | None:
        """The COMPLETE trial with this key, if any."""
        return self._by_key.get(key)

    def best(self) -> Trial | None:
        return self._best

    def top_k(self, k: int) -> list[Trial]:
        """The k best COMPLETE trials, unique by key, ordered worst-to-best (best last)."""
        if k <= 0:
            return []
        ranked = sorted(self._by_key.values(), key=self._rank)[:k]
        return ranked[::-1]

    def best_so_far(self, by: str = "step") -> list[tuple[int, float | None]]:
        """The best value so far, as ``(x, best)`` pairs.

        ``by="step"``: one pair per step present in the history, the best after that step (None
        while nothing is scored yet). ``by="evaluation"``: one pair per scored (COMPLETE) trial,
        ``x`` counting them from 1 (starting points included), the best after that evaluation.
        """
        if by == "evaluation":
            values = running_best((float(t.value) for t in self._trials if t.ok), self.direction)  # type: ignore[arg-type]
            return list(enumerate(values, start=1))
        if by != "step":
            raise ValueError(f"best_so_far by {by!r}: expected 'step' or 'evaluation'")
        out: list[tuple[int, float | None]] = []
        bests = running_best((float(t.value) if t.ok else None for t in self._trials), self.direction)  # type: ignore[arg-type]
        for trial, best in zip(self._trials, bests):
            if out and out[-1][0] == trial.step:
                out[-1] = (trial.step, best)
            else:
                out.append((trial.step, best))
        return out

    def evaluated(self) -> int:
        """Solutions whose scoring was attempted: the scored ones and those whose scoring failed (a
        crashed or killed evaluation was paid for, so the evaluation budget counts it); an LLM call
        that failed or a reply that did not decode is not an evaluation."""
        return sum(1 for t in self._trials if t.state is TrialState.COMPLETE
                   or (t.state is TrialState.FAILED and t.text is not None))

    def counts(self) -> dict[str, int]:
        out = {state.value: 0 for state in TrialState}
        for trial in self._trials:
            out[trial.state.value] += 1
        return out
