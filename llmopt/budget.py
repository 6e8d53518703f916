"""A run's limits (:class:`Budget`) and the reasons a run stops (:class:`StopReason`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
