"""The LLM door: per-seed caching, accounting, concurrency, and litellm itself (mock_response)."""

from __future__ import annotations

import asyncio

import pytest
from fakes import ScriptedBackend, litellm_mock_backend, scripted_llm

from llmopt import LLM, Budget, LLMConfigError, LLMProposer, Optimizer, RunStore
from llmopt.llm.client import cache_key
from problems.linear_regression.problem import LinearRegression

MESSAGES = [{"role": "user", "content": "propose a pair"}]


def test_cache_key_separates_seeds_and_ignores_the_api_key() -> None:
    llm = LLM.from_model("openai/x", api_key="sk-one")
    a, b = llm.request(MESSAGES, 1), llm.request(MESSAGES, 2)
    assert cache_key(a) != cache_key(b)
    assert cache_key(a) == cache_key(dict(a, api_key="sk-two"))
    assert cache_key(a) != cache_key(dict(a, temperature=0.5))
    assert cache_key(a) != cache_key(dict(a, api_base="http://127.0.0.1:9/v1"))


def test_eight_seeds_are_eight_samples_and_a_rerun_is_cached(tmp_path) -> None:
    store = RunStore(tmp_path / "r.db")
    backend = ScriptedBackend(lambda prompt, seed: f"[{seed % 97}, 1]")
    llm = LLM.from_model("fake/m", backend=backend, cache=store.cache())
    first = llm.complete(MESSAGES, list(range(8)))
    assert len({c.text for c in first}) == 8 and not any(c.cache_hit for c in first)
    again = llm.complete(MESSAGES, list(range(8)))
    assert [c.text for c in again] == [c.text for c in first] and all(c.cache_hit for c in again)
    assert len(backend.requests) == 8
    assert [c.completion_tokens for c in again] == [c.completion_tokens for c in first]


def test_concurrency_limit_is_respected() -> None:
    class Probe(ScriptedBackend):
        def __init__(self):
            super().__init__(lambda p, s: "[1, 2]", latency_s=0.02)
            self.now = self.peak = 0

        async def __call__(self, request):
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await super().__call__(request)
            finally:
                self.now -= 1

    for limit in (1, 3, 8):
        probe = Probe()
        LLM.from_model("fake/m", backend=probe, concurrency=limit).complete(MESSAGES, list(range(8)))
        assert probe.peak == limit


def test_complete_works_inside_a_running_event_loop() -> None:
    llm, _ = scripted_llm(lambda p, s: "[3, 4]")

    async def notebook_cell():
        return llm.complete(MESSAGES, [1, 2])

    assert [c.text for c in asyncio.run(notebook_cell())] == ["[3, 4]", "[3, 4]"]


def test_failed_calls_are_data_and_scrub_the_key() -> None:
    def fail(request):
        return PermissionError("401 for key sk-SECRET-123")

    llm = LLM.from_model("fake/m", api_key="sk-SECRET-123", backend=ScriptedBackend(fail=fail))
    [c] = llm.complete(MESSAGES, [0])
    assert c.text is None and "PermissionError" in c.error and "sk-SECRET-123" not in c.error


@pytest.mark.parametrize("kwargs, field", [({"temperature": 3}, "temperature"), ({"max_tokens": 0}, "max_tokens"),
                                          ({"concurrency": 0}, "concurrency"), ({"num_retries": -1}, "num_retries")])
def test_bad_llm_settings_are_refused(kwargs, field) -> None:
    with pytest.raises(LLMConfigError, match=field):
        LLM.from_model("openai/x", **kwargs)


def test_unknown_provider_is_refused_before_any_call() -> None:
    with pytest.raises(LLMConfigError, match="unknown model 'gpt-nonsense-9000'"):
        Optimizer(LinearRegression(), LLMProposer(LLM.from_model("gpt-nonsense-9000")))


def run_through_litellm(store: RunStore, name: str, model: str):
    llm = LLM.from_model(model, backend=litellm_mock_backend())
    opt = Optimizer(LinearRegression(seed=1), LLMProposer(llm), seed=1, store=store, name=name,
                    budget=Budget(max_steps=3, stop_when_solved=False))
    return opt.run()


def test_through_litellm_mock_response_calls_tokens_cost_and_cache(tmp_path) -> None:
    store = RunStore(tmp_path / "r.db")
    first = run_through_litellm(store, "first", "openai/gpt-4o-mini")
    u = first.usage
    assert u.calls >= 24 and u.cache_hits == 0 and u.failed_calls == 0
    assert u.prompt_tokens > 0 and u.completion_tokens > 0  # litellm's mock usage
    assert u.cost_usd > 0 and u.unpriced_calls == 0 and u.spent_usd == pytest.approx(u.cost_usd)
    rows = store.calls(store.get_run("first").id)
    assert len(rows) == u.calls and all(r.model == "openai/gpt-4o-mini" and r.cost_usd > 0 for r in rows)
    assert len({r.seed for r in rows}) == len(rows)
    assert sum(r.prompt_tokens + r.completion_tokens for r in rows) == u.tokens

    second = run_through_litellm(store, "second", "openai/gpt-4o-mini")  # same seed: all from the cache
    assert second.usage.cache_hits == second.usage.calls == u.calls
    assert second.usage.spent_usd == 0 and second.usage.cost_usd == pytest.approx(u.cost_usd)
    strip = lambda r: [(t.number, t.state, t.text, t.value, t.raw) for t in r.history]  # noqa: E731
    assert strip(first) == strip(second)


def test_unknown_price_is_recorded_as_unknown_not_zero(tmp_path) -> None:
    store = RunStore(tmp_path / "r.db")
    result = run_through_litellm(store, "local", "openai/my-local-model")
    assert result.usage.unpriced_calls == result.usage.calls > 0
    assert result.usage.dollars() == 0.0  # a number: the known part, a lower bound here
    assert result.usage.format_dollars() == f">=$0.0000 ({result.usage.calls} unpriced)"
    rows = store.calls(store.get_run("local").id)
    assert len(rows) == result.usage.calls and all(r.cost_usd is None for r in rows)
