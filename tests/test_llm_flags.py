"""One home for each idea of the LLM door: the model flags written once (llmopt/llm/flags.py) for
the optimizer and the scorer, one reply cache for both, and one price lookup for replies and for
the estimate made before a run."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from datadir import data_dir
from fakes import litellm_mock_backend, scripted_llm
from openai_server import OpenAIServer

from llmopt import LLM, LLMConfigError
from llmopt.cli import main
from llmopt.cli.model_options import add_model_arguments
from llmopt.cli.run_options import cell_argv, run_parser
from llmopt.experiments.grid import Cell
from llmopt.llm import MemoryCache, cache_key
from llmopt.llm._litellm import token_cost
from llmopt.llm.flags import key_hint, llm_from_args
from llmopt.proposers import LLMProposer
from problems.prompt_optimization.cli import estimate
from problems.prompt_optimization.data import Example, Task
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer

ROOT = Path(__file__).resolve().parents[1]
DATA = str(data_dir())
KEY_ENV = "LLMOPT_TEST_FLAGS_KEY"


def options(parser: argparse.ArgumentParser, shown_only: bool = True) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings
            if not (shown_only and a.help == argparse.SUPPRESS)}


def both() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser.add_argument_group("optimizer"))
    add_model_arguments(parser.add_argument_group("scorer"), "scorer-", role="scorer", temperature=None,
                        max_output_tokens=64, local_threads=False,
                        hidden_aliases={"num-retries": ["--scorer-retries"],
                                        "max-output-tokens": ["--scorer-max-tokens"]})
    return parser


# --- one set of flags, two prefixes ------------------------------------------------------------

def test_both_prefixes_make_the_same_options() -> None:
    names = options(both())
    plain = {o[2:] for o in names if not o.startswith("--scorer") and o not in ("-h", "--help")}
    assert plain == {"model", "local-threads", "api-base", "router", "api-key-env", "temperature",
                     "max-output-tokens", "concurrency", "num-retries", "timeout"}
    scorer = {o[len("--scorer-"):] for o in names if o.startswith("--scorer-")}
    # the scorer: every option of the optimizer but its temperature (always 0) and the process's threads
    assert scorer == plain - {"model", "temperature", "local-threads"} and "--scorer" in names


def test_the_commands_use_the_shared_flags() -> None:
    """`llmopt run prompt` has the optimizer's model flags and the scorer's, consistently named."""
    names = options(run_parser("prompt"))
    for option in ("api-base", "router", "api-key-env", "max-output-tokens", "concurrency", "num-retries", "timeout"):
        assert f"--{option}" in names and f"--scorer-{option}" in names, option
    assert {"--model", "--optimizer", "--scorer", "--local-threads", "--structured", "--no-cache"} <= names
    assert "--scorer-retries" not in names and "--scorer-max-tokens" not in names  # hidden: not in --help
    assert {"--scorer-retries", "--scorer-max-tokens"} <= options(run_parser("prompt"), shown_only=False)


def test_old_scorer_flag_names_still_work() -> None:
    parser = run_parser("prompt")
    args = parser.parse_args(["--task", "gsm8k", "--scorer-retries", "5", "--scorer-max-tokens", "7"])
    assert (args.scorer_num_retries, args.scorer_max_output_tokens) == (5, 7)
    args = parser.parse_args(["--task", "gsm8k"])  # absent: the new options' defaults, untouched by the aliases
    assert (args.scorer_num_retries, args.scorer_max_output_tokens, args.max_output_tokens) == (3, 64, 512)
    args = parser.parse_args(["--task", "gsm8k", "--scorer-num-retries", "2", "--scorer-max-output-tokens", "9"])
    assert (args.scorer_num_retries, args.scorer_max_output_tokens) == (2, 9)
    with pytest.raises(SystemExit):
        parser.parse_args(["--task", "gsm8k", "--scorer-retries", "-1"])  # the option's own check
    # a grid written with the old names still parses (grid keys are flags without dashes)
    cell = Cell("g", "prompt", "c", 0, "prompt", {"task": "gsm8k", "scorer-retries": 4, "scorer-max-tokens": 8})
    args = parser.parse_args(cell_argv(cell, parser))
    assert (args.scorer_num_retries, args.scorer_max_output_tokens) == (4, 8)


def test_an_unknown_alias_target_is_refused() -> None:
    with pytest.raises(ValueError, match="no option 'temperature' to alias"):
        add_model_arguments(argparse.ArgumentParser(), "scorer-", temperature=None,
                            hidden_aliases={"temperature": ["--scorer-temp"]})


def test_llm_from_args_builds_the_same_llm_for_optimizer_and_scorer(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-flags-test-key-0000")
    common = {"api-base": "http://127.0.0.1:9/v1", "api-key-env": KEY_ENV, "max-output-tokens": "100",
              "concurrency": "3", "num-retries": "1", "timeout": "9"}
    argv = ["--model", "openai/x", "--temperature", "0"] + [w for k, v in common.items() for w in (f"--{k}", v)]
    argv += ["--scorer", "openai/x"] + [w for k, v in common.items() for w in (f"--scorer-{k}", v)]
    args = both().parse_args(argv)
    optimizer, scorer = llm_from_args(args), llm_from_args(args, "scorer-", temperature=0.0)
    assert optimizer.config == scorer.config
    assert optimizer.config.max_tokens == 100 and optimizer.config.timeout_s == 9.0
    assert optimizer.api_key == scorer.api_key == "sk-flags-test-key-0000"
    # a router file: the same for both too
    router = tmp_path / "router.json"
    router.write_text(json.dumps({"model_list": [{"model_name": "g", "litellm_params": {
        "model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-in-the-router-file"}}]}))
    args = both().parse_args(["--model", "g", "--router", str(router), "--temperature", "0",
                              "--scorer", "g", "--scorer-router", str(router)])
    optimizer, scorer = llm_from_args(args), llm_from_args(args, "scorer-", temperature=0.0)
    assert (optimizer.config.max_tokens, scorer.config.max_tokens) == (512, 64)  # their own defaults
    assert optimizer.config == replace(scorer.config, max_tokens=512)
    assert llm_from_args(args).config.router is not None


@pytest.mark.parametrize("prefix", ["", "scorer-"])
def test_bad_flags_name_their_own_prefix(prefix: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLMOPT_TEST_UNSET", raising=False)
    model = "--model" if not prefix else "--scorer"
    args = both().parse_args([model, "openai/x", f"--{prefix}api-key-env", "LLMOPT_TEST_UNSET"])
    with pytest.raises(LLMConfigError, match=f"^--{prefix}api-key-env LLMOPT_TEST_UNSET: that environment "
                                             "variable is not set$"):
        llm_from_args(args, prefix)
    args = both().parse_args([model, "g", f"--{prefix}router", "r.json", f"--{prefix}api-key-env", "X"])
    with pytest.raises(LLMConfigError, match=f"--{prefix}api-key-env does not apply with --{prefix}router"):
        llm_from_args(args, prefix)
    assert key_hint(prefix) == f"--{prefix}api-key-env NAME"


# --- one cache ---------------------------------------------------------------------------------

QUESTIONS = [Example(f"toy:{i}", f"Is {i} even?", "Yes" if i % 2 == 0 else "No") for i in range(4)]


def test_the_scorer_asks_through_the_llms_own_key_and_cache() -> None:
    """No key of its own: a scorer call's key is the LLM's key of the full request, which carries
    all that tells two calls apart (the instruction in its position, the question, the model)."""
    llm, backend = scripted_llm(lambda p, s: "Yes", model="fake/scorer", temperature=0.0)
    scorer = Scorer(llm, "Q_begin")
    assert isinstance(scorer.llm.cache, MemoryCache)  # no store yet: the door's in-memory cache
    result = scorer.score("Think.", QUESTIONS, "bool")
    expected = [cache_key(scorer.llm.request(scorer.messages("Think.", ex), 0)) for ex in QUESTIONS]
    assert [c.cache_key for c in result.completions] == expected
    assert all(scorer.llm.cache.get(k) is not None for k in expected)
    assert scorer.score("Think.", QUESTIONS, "bool").completions[0].cache_hit and len(backend.requests) == 4
    other = Scorer(llm.with_cache(scorer.llm.cache), "Q_end")  # same cache, other position: other requests
    assert not any(c.cache_hit for c in other.score("Think.", QUESTIONS, "bool").completions)


def serve(prompt: str, seed: int) -> str:
    return "<INS>Answer.</INS>" if "<INS>" in prompt else "The answer is Yes."


def test_a_scorer_call_is_served_from_the_stores_cache_table_on_a_second_run(tmp_path: Path, capsys,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-flags-test-key-0000")
    store = tmp_path / "p.db"
    with OpenAIServer(serve) as server:
        argv = ["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "3", "--steps", "0",
                "--store", str(store), "--quiet", "--model", "openai/opt", "--api-base", server.api_base,
                "--api-key-env", KEY_ENV, "--structured", "off", "--scorer", "openai/scorer",
                "--scorer-api-base", server.api_base, "--scorer-api-key-env", KEY_ENV,
                "--scorer-retries", "0"]  # an old name, still working
        assert main([*argv, "--name", "first"]) == 0
        assert re.search(r"  scorer +3 \(0 cached, 0 failed\)", capsys.readouterr().out)
        asked = len(server.requests)
        assert asked == 3
        assert main([*argv, "--name", "second"]) == 0  # another run, same store: nothing asked again
        assert re.search(r"  scorer +3 \(3 cached, 0 failed\)", capsys.readouterr().out)
        assert len(server.requests) == asked
    with sqlite3.connect(store) as db:
        cached = {k: m for k, m in db.execute("SELECT key, model FROM cache")}
        calls = db.execute("SELECT r.name, c.role, c.cache_key, c.cache_hit FROM calls c JOIN runs r "
                           "ON r.id = c.run_id ORDER BY r.name, c.item").fetchall()
    assert [(name, role, hit) for name, role, _, hit in calls] == \
        [("first", "scorer", 0)] * 3 + [("second", "scorer", 1)] * 3
    assert {k for *_, k, _ in calls} <= set(cached) and {cached[k] for *_, k, _ in calls} == {"openai/scorer"}


# --- one price lookup --------------------------------------------------------------------------

def test_a_reply_and_the_estimate_are_priced_by_the_same_lookup() -> None:
    llm = LLM.from_model("openai/gpt-4o-mini", temperature=0.0,
                         backend=litellm_mock_backend(lambda p, s: "The answer is Yes, I am quite sure."))
    [reply] = llm.complete([{"role": "user", "content": "Is 2 even?"}], [0])
    assert reply.cost_usd is not None and reply.cost_usd > 0
    assert llm.token_cost(reply.prompt_tokens, reply.completion_tokens) == pytest.approx(reply.cost_usd)
    assert LLM.from_model("local/smollm2").token_cost(1000, 100) == 0.0  # the embedded model: free
    assert LLM.from_model("openai/my-own-server-model").token_cost(1000, 100) is None  # unknown, never $0

    problem = PromptOptimization(Task("toy", "bool", tuple(QUESTIONS), ()), Scorer(llm))
    optimizer = LLMProposer(LLM.from_model("openai/gpt-4o"))
    rows = estimate(problem, optimizer, steps=2, proposals=2, max_rounds=1)
    assert [r.role for r in rows] == ["scorer", "optimizer"]
    for r, model in zip(rows, ("openai/gpt-4o-mini", "openai/gpt-4o")):
        assert r.usd == token_cost(model, r.prompt_tokens, r.completion_tokens) and r.usd > 0


def test_a_router_group_is_priced_by_its_dearest_deployment() -> None:
    def deployment(model: str, **price: float) -> dict:
        return {"model_name": "g", "litellm_params": {"model": model, "api_base": "http://127.0.0.1:9/v1",
                                                      "api_key": "sk-router-key-000", **price}}

    llm = LLM.from_router({"model_list": [deployment("openai/gpt-4o-mini"),
                                          deployment("openai/own", input_cost_per_token=1e-3,
                                                     output_cost_per_token=2e-3)]}, "g")
    assert llm.token_cost(1000, 100) == pytest.approx(max(1.2, token_cost("openai/gpt-4o-mini", 1000, 100)))
    unpriced = LLM.from_router({"model_list": [deployment("openai/gpt-4o-mini"), deployment("openai/nobody")]}, "g")
    assert unpriced.token_cost(1000, 100) is None


def test_pricing_is_looked_up_in_one_place() -> None:
    """litellm's price functions are called in llmopt/llm/_litellm.py only."""
    pattern = re.compile(r"\b(completion_cost|cost_per_token|response_cost)\s*\(|\.get\(\s*[\"']response_cost")
    found = [str(p.relative_to(ROOT)) for folder in ("llmopt", "problems", "baselines")
             for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert found == ["llmopt/llm/_litellm.py"]
