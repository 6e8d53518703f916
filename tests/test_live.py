"""Opt-in: a hosted model for real (``pytest --live``, with OPENAI_API_KEY or LLMOPT_LIVE_MODEL set)."""

from __future__ import annotations

import os

import pytest

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore
from problems.linear_regression.problem import LinearRegression

pytestmark = pytest.mark.live


def test_two_steps_on_a_hosted_model(tmp_path) -> None:
    model = os.environ.get("LLMOPT_LIVE_MODEL", "openai/gpt-4o-mini")
    store = RunStore(tmp_path / "live.db")
    opt = Optimizer(LinearRegression(), LLMProposer(LLM.from_model(model, max_tokens=256)), store=store,
                    budget=Budget(max_steps=2, max_usd=0.05, stop_when_solved=False))
    result = opt.run()
    assert result.usage.calls >= 16 and result.usage.failed_calls == 0, result.stop_detail
    assert result.counts["COMPLETE"] > 5  # a real model writes parseable pairs
    assert result.usage.cost_usd > 0 or result.usage.unpriced_calls == result.usage.calls
