"""Novelty filtering (``--novelty-threshold T``): a proposal too similar to a solution already scored is
rejected before it costs an evaluation, for any proposer.

ShinkaEvolve rejects a candidate program whose embedding is too close to one in its archive; we
compare texts, which needs no model and is exact to replay: the similarity of two solutions is
rapidfuzz's normalized Indel similarity (``fuzz.ratio / 100``: 1 for equal texts, 0 for texts with
nothing in common) of the texts their problem gives for the purpose
(:meth:`llmopt.problem.Problem.similarity_text`: the encoded text by default, a program without its
comments and blank lines). A candidate whose similarity to a scored (COMPLETE) solution of the run,
or to one pending in the same step, is at least T is recorded as a DUPLICATE of the most similar one,
its ``error`` saying so and its metrics holding ``similarity``: every rule for duplicates (counts,
redraw rounds, the proposers that read a duplicate as its twin's value) applies to it.

The rule reads the history alone (the texts of its COMPLETE trials, in order) and the step's pending
candidates, so a resumed run rejects exactly what the uninterrupted run did; the cache here is only
a memo of texts already computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from llmopt.history import SolutionHistory, Trial, TrialState

#: The metric a novelty-rejected trial records (its similarity to ``duplicate_of``).
SIMILARITY = "similarity"


def check_threshold(threshold: float | None) -> None:
    """Refuse a threshold outside (0, 1] in one line (None: no filtering)."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0 < threshold <= 1:
        raise ValueError(f"novelty threshold must be a number in (0, 1] (1: reject only texts that compare equal), "
                         f"got {threshold!r}")


@dataclass(frozen=True)
class Similar:
    """Why a candidate is rejected: the trial it is most similar to, and how similar."""

    number: int
    similarity: float
    threshold: float

    @property
    def error(self) -> str:
        return (f"too similar to #{self.number} (similarity {self.similarity:.2f} >= novelty threshold "
                f"{self.threshold:g})")


def similarity(a: str, b: str) -> float:
    """The normalized Indel similarity of two texts, in [0, 1] (rapidfuzz's ``fuzz.ratio`` / 100)."""
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) / 100.0


def most_similar(text: str, others: Iterable[tuple[int, str]], threshold: float) -> Similar | None:
    """The first of ``others`` (number, text) most similar to ``text``, if its similarity reaches
    ``threshold``; None otherwise. Ties go to the earliest (the first scored), so the answer depends
    only on the order of the history."""
    from rapidfuzz import fuzz, process

    pairs = list(others)
    if not pairs:
        return None
    found = process.extractOne(text, [t for _, t in pairs], scorer=fuzz.ratio, score_cutoff=threshold * 100.0 - 1e-9)
    if found is None:
        return None
    _, score, index = found
    return Similar(pairs[index][0], round(score / 100.0, 6), threshold)


class NoveltyFilter:
    """The run's novelty rule (``threshold`` None: off, every call answers None)."""

    def __init__(self, threshold: float | None) -> None:
        check_threshold(threshold)
        self.threshold = None if threshold is None else float(threshold)
        self._texts: dict[int, str] = {}  # similarity text by trial number (a memo)
        self._seen = 0  # trials of the history already read into _scored
        self._scored: list[int] = []  # COMPLETE trial numbers, in history order

    def config(self) -> dict[str, Any]:
        """What the run records (nothing when off, so runs without the filter keep their config)."""
        return {} if self.threshold is None else {"novelty_threshold": self.threshold}

    def _text(self, problem: Any, number: int, solution: Any) -> str:
        if number not in self._texts:
            self._texts[number] = str(problem.similarity_text(solution))
        return self._texts[number]

    def _catch_up(self, history: SolutionHistory) -> None:
        for trial in history.trials[self._seen:]:
            if trial.state is TrialState.COMPLETE and trial.solution is not None:
                self._scored.append(trial.number)
        self._seen = len(history)

    def similar(self, problem: Any, solution: Any, history: SolutionHistory,
                pending: Iterable[Any]) -> Similar | None:
        """The scored or pending solution ``solution`` is too similar to, if any (``pending``: the
        step's candidates, with ``number`` and ``solution``)."""
        if self.threshold is None:
            return None
        self._catch_up(history)
        others = [(n, self._text(problem, n, history.get(n).solution)) for n in self._scored]  # type: ignore[union-attr]
        others += [(c.number, self._text(problem, c.number, c.solution)) for c in pending]
        return most_similar(str(problem.similarity_text(solution)), others, self.threshold)


def too_similar(trial: Trial) -> bool:
    """Whether a trial was rejected by novelty filtering (a DUPLICATE that records its similarity)."""
    return trial.state is TrialState.DUPLICATE and SIMILARITY in trial.metrics


def similar_count(trials: Iterable[Trial]) -> int:
    """How many of ``trials`` novelty filtering rejected."""
    return sum(1 for t in trials if too_similar(t))
