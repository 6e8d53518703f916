"""What calls cost: one :class:`Completion` per sample, and :class:`Usage`, their running total."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Completion:
    """One sample: the reply text or the error, with its accounting."""

    seed: int
    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: no known price (or no call made)
    latency_s: float = 0.0
    cache_hit: bool = False
    finish_reason: str | None = None
    cache_key: str | None = None
    deployment: str | None = None  # a router's call: the api_base of the deployment that served it (not stored)
    choice: int = 0  # index among the n choices of one request; choices > 0 carry no tokens and are no call
    cached_tokens: int = 0  # of prompt_tokens, those the provider's prompt cache served (billed at its cached rate)

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class Usage:
    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # known prices only
    unpriced_calls: int = 0  # successful calls whose price litellm does not know
    spent_usd: float = 0.0  # known prices of live (not cached) calls
    cached_prompt_tokens: int = 0  # prompt tokens served from a provider's prompt cache

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, c: Completion) -> "Usage":
        priced, call = c.cost_usd is not None, int(c.choice == 0)
        return Usage(
            calls=self.calls + call,
            cache_hits=self.cache_hits + int(c.cache_hit) * call,
            failed_calls=self.failed_calls + int(not c.ok) * call,
            prompt_tokens=self.prompt_tokens + c.prompt_tokens,
            completion_tokens=self.completion_tokens + c.completion_tokens,
            cost_usd=self.cost_usd + (c.cost_usd or 0.0),
            unpriced_calls=self.unpriced_calls + int(c.ok and not priced) * call,
            spent_usd=self.spent_usd + (0.0 if c.cache_hit else (c.cost_usd or 0.0)),
            cached_prompt_tokens=self.cached_prompt_tokens + c.cached_tokens,
        )

    def dollars(self) -> float:
        """Dollars of the calls with a known price: the exact cost when ``unpriced_calls`` is 0,
        else a lower bound (a model without a known price is never counted as free)."""
        return self.cost_usd

    def format_dollars(self) -> str:
        """The cost for display: ``$0.0123``, or ``>=$0.0123 (40 unpriced)`` when it is a lower bound."""
        text = f"${self.cost_usd:.4f}"
        return f">={text} ({self.unpriced_calls} unpriced)" if self.unpriced_calls else text
