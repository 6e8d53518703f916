"""A hosted model without its API key is refused before anything is created or called (exit 2,
one line naming the variable); a server of one's own needs no key; a run whose every call failed
exits non-zero from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from datadir import data_dir
from fakes import linreg_script, scripted_llm
from openai_server import OpenAIServer

from llmopt import LLM, Budget, LLMProposer, Optimizer, StopReason
from llmopt.cli import main
from llmopt.cli.run_options import run_parser
from llmopt.experiments.runs import prepare_run
from llmopt.llm import client as llm_module
from problems.linear_regression.problem import LinearRegression

DATA = str(data_dir())
PROVIDER_VARIABLES = ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
                      "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL", "OLLAMA_API_BASE")


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def litellm_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every request that would reach litellm (it fails, as a call without a key would)."""
    calls: list[dict] = []

    async def backend(request: dict) -> None:
        calls.append(request)
        raise RuntimeError("AuthenticationError: no API key")

    monkeypatch.setattr("llmopt.llm.client.litellm_backend", backend)
    return calls


@pytest.mark.parametrize("model, variable", [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                             ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY")])
def test_a_missing_key_is_one_line_before_any_store_or_call(tmp_path: Path, capsys, litellm_calls: list,
                                                            model: str, variable: str) -> None:
    store = tmp_path / "runs.db"
    code = main(["run", "linreg", "--model", model, "--steps", "1", "--store", str(store), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"llmopt: error: {model} needs {variable} in the environment (or --api-key-env NAME)"
    assert not store.exists() and litellm_calls == []


def test_the_scorer_model_is_checked_too(tmp_path: Path, capsys, litellm_calls: list) -> None:
    store = tmp_path / "p.db"
    with OpenAIServer(linreg_script) as server:
        code = main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "2", "--steps", "1",
                     "--model", "openai/opt", "--api-base", server.api_base, "--scorer", "openai/gpt-4o-mini",
                     "--store", str(store), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "openai/gpt-4o-mini needs OPENAI_API_KEY in the environment (or --scorer-api-key-env NAME)" in err
        assert not store.exists() and server.requests == [] and litellm_calls == []
        code = main(["evaluate", "--task", "bbh/navigate", "--data-dir", DATA, "--max-examples", "2",
                     "--scorer", "openai/gpt-4o-mini", "--store", str(store)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "needs OPENAI_API_KEY in the environment (or --scorer-api-key-env NAME)" in err
        assert not store.exists() and litellm_calls == []


def test_a_server_of_ones_own_runs_without_a_key(tmp_path: Path, capsys) -> None:
    """openai/<name> at an api_base: nothing to check, and the call goes out with a placeholder key
    (the OpenAI client would not send it without one)."""
    store = tmp_path / "runs.db"
    with OpenAIServer(linreg_script) as server:
        code = main(["run", "linreg", "--model", "openai/served", "--api-base", server.api_base, "--steps", "1",
                     "--proposals", "3", "--max-rounds", "1", "--structured", "off", "--store", str(store),
                     "--quiet"])
        out = capsys.readouterr().out
        assert code == 0 and "max_steps" in out and "0 failed" in out, out
        assert len(server.requests) == 3 and server.replies == 3
        assert all({k.lower(): v for k, v in h.items()}["authorization"] == "Bearer no-key" for h in server.headers)


def test_which_models_need_which_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    missing_credentials = llm_module.missing_credentials
    assert missing_credentials("openai/gpt-4o-mini") == ["OPENAI_API_KEY"]
    assert missing_credentials("gpt-4o-mini") == ["OPENAI_API_KEY"]  # litellm's default provider
    assert missing_credentials("anthropic/claude-3-5-haiku-latest") == ["ANTHROPIC_API_KEY"]
    assert missing_credentials("openai/served", api_base="http://127.0.0.1:8080/v1") == []
    assert missing_credentials("ollama/llama3.1") == []  # a local server (OLLAMA_API_BASE is no credential)
    assert missing_credentials("local/smollm2") == []  # the embedded model
    assert missing_credentials("bedrock/anthropic.claude-v2") == []  # AWS's credential chain (~/.aws, roles)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")  # the server named the provider's way
    assert missing_credentials("openai/served") == []
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert missing_credentials("openai/gpt-4o-mini") == []
    monkeypatch.delenv("OPENAI_API_KEY")
    LLM.from_model("openai/gpt-4o-mini", api_key="sk-given").check_credentials()  # a key given: fine
    LLM.from_model("local/smollm2").check_credentials()
    scripted_llm()[0].check_credentials()  # a test backend calls nothing
    message = r"openai/gpt-4o-mini needs OPENAI_API_KEY in the environment \(or LLM.from_model\(\.\.\., api_key="
    with pytest.raises(llm_module.MissingCredentials, match=message) as caught:
        LLM.from_model("openai/gpt-4o-mini").check_credentials()
    assert caught.value.variables == ("OPENAI_API_KEY",)


def test_router_deployments_without_their_own_key_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def router(*params: dict) -> LLM:
        return LLM.from_router({"model_list": [{"model_name": "g", "litellm_params": p} for p in params]}, "g")

    keyed = {"model": "openai/gpt-4o-mini", "api_key": "os.environ/ROUTER_KEY"}
    served = {"model": "openai/served", "api_base": "http://127.0.0.1:8080/v1"}
    bare = {"model": "anthropic/claude-3-5-haiku-latest"}
    router(keyed, served).check_credentials()  # a named key (validate() checks the variable), a server
    message = (r"<router config>: model_list\[2\] \(anthropic/claude-3-5-haiku-latest\) needs ANTHROPIC_API_KEY in "
               r"the environment \(or api_key: os.environ/NAME in the router file\)")
    with pytest.raises(llm_module.MissingCredentials, match=message):
        router(keyed, served, bare).check_credentials()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    router(keyed, served, bare).check_credentials()


def test_reading_a_stored_run_back_needs_no_key() -> None:
    """compare --no-run and plot only read: the same cell prepared for reading is not refused."""
    args = run_parser("linreg").parse_args(["--model", "openai/gpt-4o-mini", "--quiet"])
    prepare_run(args, calls=False)
    with pytest.raises(Exception, match="needs OPENAI_API_KEY"):
        prepare_run(args)


def test_a_run_whose_every_call_failed_exits_non_zero(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CRED_TEST_KEY", "sk-cred-test-0000")
    store = tmp_path / "runs.db"
    with OpenAIServer(linreg_script, plan=lambda i: "500") as server:
        code = main(["run", "linreg", "--model", "openai/m", "--api-base", server.api_base, "--api-key-env",
                     "CRED_TEST_KEY", "--num-retries", "0", "--steps", "3", "--structured", "off", "--store",
                     str(store), "--quiet"])
        captured = capsys.readouterr()
        assert server.injected["500"] == len(server.requests) > 0
    assert code == 1
    assert "llm_failure" in captured.out  # the summary still says it
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("llmopt: error: run linreg-llm-seed0 stopped by llm_failure: every call of a round "
                           "failed: ") and "injected 500" in last


def test_the_python_api_still_returns_the_failed_run() -> None:
    llm, backend = scripted_llm(fail=lambda request: RuntimeError("no route to host"))
    result = Optimizer(LinearRegression(seed=0), LLMProposer(llm), budget=Budget(max_steps=3)).run()
    assert result.stop_reason is StopReason.LLM_FAILURE and "no route to host" in result.stop_detail
    assert result.steps == 1 and len(backend.requests) == 8
