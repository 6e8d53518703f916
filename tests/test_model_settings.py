"""Every model setting is the model's config and recorded with the run; none is a process global,
and no option the user gave is silently replaced (issue 26).

No model is loaded here: the embedded engine's llama.cpp object is a stand-in that answers with
the thread count of the engine it belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.cli import main
from llmopt.cli.run_options import run_parser
from llmopt.experiments import functions
from llmopt.experiments.runs import UsageError, prepare_run
from llmopt.llm import LLM, LLMConfig, LLMConfigError, MemoryCache
from llmopt.llm import embedded as local
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model's weights are looked up as ever; the probe in a child process is skipped."""
    monkeypatch.setattr(local, "check_runs", lambda path, n_threads, *a, **k: None)


class _ThreadsLlama:
    """Answers every chat with the thread count of its engine (what a call reached)."""

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
        return {"choices": [{"message": {"content": f"threads={self.n_threads}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def test_threads_is_a_setting_of_the_embedded_model_only() -> None:
    assert LLMConfig(model="local/smollm2", threads=4).threads == 4
    assert LLMConfig(model="local/smollm2").to_dict().get("threads") is None  # 1: recorded as runs before it were
    assert LLMConfig(model="local/smollm2", threads=4).to_dict()["threads"] == 4
    with pytest.raises(LLMConfigError, match=r"^threads applies to the embedded model \(local/\.\.\.\) only, "
                                             r"not to 'openai/x' \(got threads=2\)$"):
        LLMConfig(model="openai/x", threads=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(LLMConfigError, match="^threads must be a whole number >= 1"):
            LLMConfig(model="local/smollm2", threads=bad)


def test_the_thread_count_is_recorded_with_the_run(tmp_path: Path) -> None:
    llm = ScriptedLLM(lambda prompt: "w=3, b=5", model="local/smollm2", threads=2)
    with RunStore(tmp_path / "runs.db") as store:
        opt = Optimizer(LinearRegression(seed=0), LLMProposer(llm), seed=0, budget=Budget(max_steps=1),
                        store=store, name="run")
        assert opt.config()["proposer"]["llm"]["threads"] == 2
        opt.run()
        assert store.get_run("run").config["proposer"]["llm"]["threads"] == 2


def test_local_threads_reaches_the_embedded_models_config_only(no_probe: None) -> None:
    args = run_parser("linreg").parse_args(["--local-threads", "3", "--structured", "off"])
    assert prepare_run(args, calls=False)[1].llm.config.threads == 3
    hosted = run_parser("linreg").parse_args(["--model", "openai/x", "--local-threads", "3"])
    assert prepare_run(hosted, calls=False)[1].llm.config.threads == 1  # the flag is the embedded model's


def test_two_embedded_models_with_other_threads_do_not_interfere(no_probe: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a module global held one thread count per process: the last LLM built set it for
    every engine made afterwards, and a call did not say which it wanted."""
    monkeypatch.setattr(local._Engine, "llama", lambda self: _ThreadsLlama(self.n_threads))
    one, three = LLM.from_model("local/smollm2", threads=1), LLM.from_model("local/smollm2", threads=3)
    one.validate()
    three.validate()
    messages = [{"role": "user", "content": "Give two integers."}]
    for llm, want in ((three, "threads=3"), (one, "threads=1"), (three, "threads=3")):
        assert [c.text for c in llm.complete(messages, [0, 1])] == [want, want]
    assert local.engine("smollm2", 1) is not local.engine("smollm2", 3)
    assert (local.engine("smollm2", 1).n_threads, local.engine("smollm2", 3).n_threads) == (1, 3)
    # Not in the cache key: llama.cpp's logits do not depend on the thread count (LLMConfig's docstring).
    cache = MemoryCache()
    assert one.with_cache(cache).complete(messages, [7])[0].text == "threads=1"
    assert three.with_cache(cache).complete(messages, [7])[0].cache_hit


def test_evoprompt_refuses_a_temperature_it_would_replace(no_probe: None, tmp_path: Path, capsys) -> None:
    """EvoPrompt's calls sample at --evolution-temperature: a --temperature was silently dropped."""
    for value in ("0.7", "1.0"):  # also the default's value, given explicitly
        args = run_parser("linreg", proposer="evoprompt-ga").parse_args(["--proposer", "evoprompt-ga", "--temperature",
                                                                           value])
        with pytest.raises(UsageError, match=r"^--temperature does not apply to evoprompt-ga: its calls sample at "
                                             r"--evolution-temperature$"):
            prepare_run(args, calls=False)
    store = tmp_path / "runs.db"
    assert main(["run", "linreg", "--proposer", "evoprompt-de", "--temperature", "0.7", "--store", str(store),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--temperature does not apply to evoprompt-de" in err and len(err.strip().splitlines()) == 1
    assert not store.exists()
    given = prepare_run(run_parser("linreg", proposer="evoprompt-ga").parse_args(
        ["--proposer", "evoprompt-ga", "--evolution-temperature", "0.3"]), calls=False)[1]
    assert given.llm.config.temperature == 0.3
    default = prepare_run(run_parser("linreg").parse_args(["--structured", "off"]), calls=False)[1]
    assert default.llm.config.temperature == 1.0  # not given: the model's default, as before
    with pytest.raises(ValueError, match="^llm_settings temperature does not apply to evoprompt-ga"):
        functions.make_proposer("evoprompt-ga", "local/smollm2", LinearRegression(seed=0), temperature=0.7)
