"""Scoring one solution the way a run records it, for training and validation alike: what a
problem's evaluate raises, or a value that is no number, is one error line (a failed trial, not a
dead run), and a score with failed calls is refused (a partial score would be biased; the
answered calls are cached for a re-score). Racing's bar lives here too."""

from __future__ import annotations

from typing import Any, Callable

from llmopt.history import SolutionHistory
from llmopt.problem import Evaluation


def evaluation(compute: Callable[[], Any], what: str) -> tuple[Evaluation | None, float | None, str | None]:
    """``(evaluation, value, None)`` from ``compute()`` (a problem's evaluate, a future's result; a
    plain number from a user's evaluate() becomes an Evaluation), or ``(None, None, error)``."""
    try:
        done = compute()
        if not isinstance(done, Evaluation):  # a plain number from a user's evaluate()
            done = Evaluation(float(done))
        value = float(done.value)
    except Exception as exc:
        return None, None, f"{what} raised {type(exc).__name__}: {exc}"[:2000]
    return done, value, None


def failed_calls(done: Evaluation, role: str) -> str | None:
    """One line for the calls of ``done`` that failed (None: every call was answered)."""
    failed = [c for _, _, c in done.calls if not c.ok]
    if not failed:
        return None
    return f"{len(failed)} of {len(done.calls)} {role} calls failed: {failed[0].error}"[:2000]


def race_bar(history: SolutionHistory, race: int | None, step: int) -> float | None:
    """With ``race=k``: the k-th best value of the steps before ``step`` (None: fewer than k scored,
    or no racing). Fixed for the step, so a step resumed half-scored, or scored on an executor,
    races against the same bar."""
    if race is None:
        return None
    ranked = SolutionHistory(history.direction, (t for t in history if t.step < step)).top_k(race)
    return float(ranked[0].value) if len(ranked) == race else None  # type: ignore[arg-type]
