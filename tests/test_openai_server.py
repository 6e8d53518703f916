"""Through litellm over real HTTP: `openai/<name>` + api_base against a loopback server."""

from __future__ import annotations

import time

import pytest
from openai_server import OpenAIServer

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore, StopReason, TrialState
from problems.linear_regression.problem import LinearRegression

SECRET = "sk-llmopt-TEST-SECRET-0123456789"


@pytest.fixture()
def server(linreg_server) -> OpenAIServer:
    return linreg_server


def optimizer(server: OpenAIServer, store: RunStore, name: str, steps: int = 2, **llm_kw) -> Optimizer:
    llm = LLM.from_model("openai/scripted-model", api_base=server.api_base, api_key=SECRET, **llm_kw)
    return Optimizer(LinearRegression(seed=2), LLMProposer(llm), seed=2, store=store, name=name,
                     budget=Budget(max_steps=steps, stop_when_solved=False))


def test_opro_over_http_forwards_sampling_parameters(server: OpenAIServer, tmp_path) -> None:
    store = RunStore(tmp_path / "r.db")
    result = optimizer(server, store, "http", temperature=0.7, max_tokens=64).run()
    assert result.stop_reason is StopReason.MAX_STEPS and result.counts["COMPLETE"] > 5
    assert len(server.requests) == result.usage.calls
    body = server.requests[0]
    assert body["model"] == "scripted-model" and body["temperature"] == 0.7 and body["max_tokens"] == 64
    assert len({r["seed"] for r in server.requests}) == len(server.requests)  # one seed per sample
    assert {k.lower(): v for k, v in server.headers[0].items()}["authorization"] == f"Bearer {SECRET}"
    assert result.usage.unpriced_calls == result.usage.calls  # a local model has no known price


def test_the_api_key_is_never_stored(server: OpenAIServer, tmp_path) -> None:
    path = tmp_path / "r.db"
    store = RunStore(path)
    server.faults = [(401, {})] * 40  # errors too must not leak it
    optimizer(server, store, "leak", steps=1, num_retries=0).run()
    server.faults = []
    optimizer(server, store, "ok", steps=1).run()
    store.close()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]  # the store, its journals and run locks (.llmopt-locks/r.db/)
    assert path in files and any(f.parent.name == "r.db" and f.parent.parent.name == ".llmopt-locks" for f in files)
    assert all(SECRET.encode() not in f.read_bytes() for f in files), files


def test_transient_errors_are_retried_by_litellm(server: OpenAIServer, tmp_path) -> None:
    server.faults = [(500, {}), (503, {}), (429, {"Retry-After": "1"})]
    store = RunStore(tmp_path / "r.db")
    started = time.monotonic()
    result = optimizer(server, store, "retry", steps=1, concurrency=1, num_retries=3).run()
    assert result.counts["FAILED"] == 0 and result.usage.failed_calls == 0
    assert len(server.requests) == result.usage.calls + 3  # the three faults, each retried
    assert time.monotonic() - started < 60


def test_exhausted_retries_are_failed_trials_then_llm_failure(server: OpenAIServer, tmp_path) -> None:
    server.faults = [(500, {})] * 1000
    store = RunStore(tmp_path / "r.db")
    result = optimizer(server, store, "down", steps=5, num_retries=1).run()
    assert result.stop_reason is StopReason.LLM_FAILURE and "500" in result.stop_detail
    assert result.counts["FAILED"] == 8 and len(server.requests) == 8 * 2  # one try and one retry each, no more
    assert all(t.state is not TrialState.COMPLETE for t in result.history if t.step > 0)
