"""A run's limits (:class:`Budget`), the reasons a run stops (:class:`StopReason`), and the stop
rules: pure functions of a budget and a :class:`Spent` snapshot of what the run has used, so the
optimizer only takes the snapshot and asks (:func:`stop_reason`, :func:`round_allowance`,
:func:`out_of_spend`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from llmopt.problem import Direction


class StopReason(str, enum.Enum):
    SOLVED = "solved"  # the problem's known optimum was proposed
    TARGET = "target"
    PATIENCE = "patience"
    VALIDATION = "validation"  # the best validation score stopped improving (early stopping)
    MAX_STEPS = "max_steps"
    MAX_EVALS = "max_evals"
    MAX_CALLS = "max_calls"
    MAX_TOKENS = "max_tokens"
    MAX_USD = "max_usd"
    MAX_SECONDS = "max_seconds"
    LLM_FAILURE = "llm_failure"  # every call of a round failed (after litellm's retries)
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Every limit of a run; ``None`` means no limit. The first one reached stops the run.

    Calls, tokens and dollars count every call of the run, cached or not, so a re-run served
    from the cache stops exactly where the original did. Token and dollar limits are checked
    before each round of calls, so a round may overshoot them by at most its own calls.
    """

    max_steps: int | None = 50
    max_evals: int | None = None
    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_seconds: float | None = None
    target: float | None = None
    patience: int | None = None
    stop_when_solved: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_evals", "max_calls", "max_tokens", "max_usd", "max_seconds", "patience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0 or value != value):
                raise ValueError(f"budget {name} must be a non-negative number or None, got {value!r}")
        hard = (self.max_steps, self.max_evals, self.max_calls, self.max_tokens, self.max_usd, self.max_seconds)
        if all(limit is None for limit in hard):
            raise ValueError("budget has no limit: set at least one of max_steps, max_evals, max_calls, "
                             "max_tokens, max_usd, max_seconds")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"budget patience must be >= 1, got {self.patience}")


@dataclass(frozen=True)
class Spent:
    """What a run has spent and reached so far: a snapshot, so the stop rules are pure functions of
    (budget, snapshot) and can be tested on numbers alone, without a run."""

    steps: int = 0
    evaluations: int = 0  # solutions scored, being scored, or whose scoring failed (a killed evaluation was paid for)
    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    uses_llm: bool = False  # whether the call, token and dollar limits apply at all
    best: float | None = None  # the best training score so far
    last_improvement: int = 0  # the step where the best score last changed
    solved_step: int | None = None  # the step where the problem's known optimum was proposed
    failure: str | None = None  # why every call of a round failed
    validation_stall: str | None = None  # why validation stopped improving (its patience ran out)


Stop = tuple[StopReason, str]


def last_improvement(best_so_far: Iterable[tuple[int, float | None]]) -> int:
    """The step where a best-so-far curve (``SolutionHistory.best_so_far()``) last changed (0: never)."""
    last, best = 0, None
    for step, value in best_so_far:
        if value is not None and value != best:
            last, best = step, value
    return last


def success(budget: Budget, spent: Spent, direction: Direction) -> Stop | None:
    """Stops for reaching the goal (solved, target) or for giving up on it (patience)."""
    if budget.stop_when_solved and spent.solved_step is not None:
        return StopReason.SOLVED, f"the optimum was proposed at step {spent.solved_step}"
    if budget.target is not None and spent.best is not None and not direction.better(budget.target, spent.best):
        return StopReason.TARGET, f"best {spent.best:g} reached target {budget.target:g}"
    if budget.patience is not None and spent.steps - spent.last_improvement >= budget.patience:
        return StopReason.PATIENCE, f"no improvement in {budget.patience} steps"
    return None


def exhausted(budget: Budget, spent: Spent) -> Stop | None:
    """The first hard limit used up; call, token and dollar limits only when the run calls a model."""
    checks = [
        (budget.max_steps, spent.steps, StopReason.MAX_STEPS, "steps"),
        (budget.max_evals, spent.evaluations, StopReason.MAX_EVALS, "evaluations"),
        (budget.max_calls, spent.calls, StopReason.MAX_CALLS, "LLM calls"),
        (budget.max_tokens, spent.tokens, StopReason.MAX_TOKENS, "tokens"),
        (budget.max_usd, spent.usd, StopReason.MAX_USD, "dollars"),
        (budget.max_seconds, spent.seconds, StopReason.MAX_SECONDS, "seconds"),
    ]
    for limit, used, reason, what in checks:
        if limit is None or used < limit or (reason in _LLM_LIMITS and not spent.uses_llm):
            continue
        return reason, f"{what} budget used: {used:.6g} of {limit:g}"
    return None


_LLM_LIMITS = (StopReason.MAX_CALLS, StopReason.MAX_TOKENS, StopReason.MAX_USD)


def stop_reason(budget: Budget, spent: Spent, direction: Direction) -> Stop | None:
    """The first rule that stops the run, success first, with a one-line explanation; None to go on."""
    if (found := success(budget, spent, direction)) is not None:
        return found
    if spent.validation_stall is not None:
        return StopReason.VALIDATION, spent.validation_stall
    if spent.failure is not None:
        return StopReason.LLM_FAILURE, f"every call of a round failed: {spent.failure}"
    return exhausted(budget, spent)


def spend_exhausted(budget: Budget, spent: Spent) -> StopReason | None:
    """Whether the token or dollar limit is used up (checked before each round of calls)."""
    if budget.max_tokens is not None and spent.tokens >= budget.max_tokens:
        return StopReason.MAX_TOKENS
    if budget.max_usd is not None and spent.usd >= budget.max_usd:
        return StopReason.MAX_USD
    return None


def round_allowance(budget: Budget, spent: Spent) -> int:
    """How many proposals the next round may draw before a limit is exceeded (0: none)."""
    allowance = 1 << 30
    if budget.max_evals is not None:
        allowance = min(allowance, int(budget.max_evals) - spent.evaluations)
    if spent.uses_llm:
        if budget.max_calls is not None:
            allowance = min(allowance, int(budget.max_calls) - spent.calls)
        if spend_exhausted(budget, spent) is not None:
            return 0
    if budget.max_seconds is not None and spent.seconds >= budget.max_seconds:
        return 0
    return allowance


def out_of_spend(budget: Budget, spent: Spent) -> bool:
    """Whether a limit on calls, tokens, dollars or time is used up: work that makes no new step
    (validating finished steps) stops there, and a resume with a larger budget does the rest."""
    if spent.uses_llm and ((budget.max_calls is not None and spent.calls >= budget.max_calls)
                           or spend_exhausted(budget, spent) is not None):
        return True
    return budget.max_seconds is not None and spent.seconds >= budget.max_seconds
