"""The cost options (issue 17): several answers per reply, n choices per request, hotter redraws,
prompt caching's accounting, and racing the scorer; each recorded, resumable and accounted."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from fakes import many_script, scripted_llm
from harness import run_script, snapshot
from openai_server import OpenAIServer

from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.cli.run_options import cell_argv, run_parser
from llmopt.experiments.grid import grid_from_dict
from llmopt.experiments.report import steps_table
from llmopt.experiments.runs import prepare_run
from llmopt.history import TrialState
from llmopt.llm import LLM
from llmopt.llm._litellm import import_litellm, reply_cost
from llmopt.llm.backend import _reply
from llmopt.llm.cache import MemoryCache
from llmopt.llm.embedded import plain_message
from llmopt.llm.usage import Usage
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression
from problems.prompt_optimization.data import Example, Task
from problems.prompt_optimization.problem import PromptOptimization, race_looks
from problems.prompt_optimization.scorer import Scorer
from problems.tsp.instances import random_instance
from problems.tsp.problem import TravellingSalesman as TSP


def linreg_run(tmp_path: Path, name: str = "run", steps: int = 3, **cost) -> tuple[Optimizer, object]:
    llm, backend = scripted_llm(many_script)
    store = RunStore(tmp_path / "runs.db")
    opt = Optimizer(LinearRegression(seed=1), LLMProposer(llm, **cost), seed=1, store=store, name=name,
                    budget=Budget(max_steps=steps, stop_when_solved=False))
    return opt, backend


# --- several answers per reply -------------------------------------------------------------------

def test_per_call_asks_one_reply_for_k_answers_and_shares_its_call(tmp_path: Path) -> None:
    opt, backend = linreg_run(tmp_path, per_call=4)
    result = opt.run()
    prompts = [r["messages"][-1]["content"] for r in backend.requests]
    assert all("Give me 4 new pairs" in p and "Write the 4 pairs one after another" in p for p in prompts)
    proposals = [t for t in result.history if t.step > 0]
    # every reply served up to 4 trials; the calls are about a quarter of the proposals
    assert result.usage.calls == len(backend.requests)
    assert len(proposals) >= 3 * len(backend.requests) > 0
    store_calls = opt.store.calls(opt.run_record.id)
    assert len(store_calls) == result.usage.calls  # one row per call, at its first trial's number
    call_numbers = {c.number for c in store_calls}
    assert {t.number for t in proposals if t.number in call_numbers}  # calls sit on trial numbers
    short = [t for t in proposals if t.state is TrialState.INVALID and "held 3 of the 4 answers" in (t.error or "")]
    assert short  # the script leaves one answer out a fifth of the time: an INVALID trial, not a crash
    assert all(t.raw is not None for t in proposals)


def test_per_call_is_recorded_and_the_papers_protocol_is_unchanged(tmp_path: Path) -> None:
    paper = LLMProposer(ScriptedLLM(["[1, 2]"], cycle=True))
    assert "per_call" not in paper.config() and "per_call" not in paper.config()["metaprompt"]
    four = LLMProposer(ScriptedLLM(["[1, 2]"], cycle=True), per_call=4, redraw_temperature=1.5)
    assert four.config()["per_call"] == 4 and four.config()["redraw_temperature"] == 1.5
    assert "per_call" not in four.config()["metaprompt"] and four.per_call == 4  # recorded once, on the proposer
    with pytest.raises(ValueError, match="per_call must be in 1..64"):
        LLMProposer(ScriptedLLM(["x"]), per_call=0)


def test_structured_per_call_wraps_the_schema_and_decodes_each_item() -> None:
    problem = TSP(random_instance(5, 0))
    schema = problem.answers_schema(3)
    assert schema["properties"]["answers"]["items"] == problem.answer_schema()
    assert schema["properties"]["answers"]["minItems"] == schema["properties"]["answers"]["maxItems"] == 3
    reply = json.dumps({"answers": [{"trace": [0, 1, 2, 3, 4]}, {"trace": [0, 2, 1, 3, 4]}, {"trace": [9]}]})
    items = problem.split_answers(reply, 3)
    assert len(items) == 3
    assert problem.decode(items[0]) == (0, 1, 2, 3, 4)
    proposer = LLMProposer(ScriptedLLM([reply], cycle=True, model="local/x"), per_call=3, structured="on")
    proposer.prepare(problem)
    assert proposer._format["json_schema"]["schema"] == schema
    out = proposer.propose(problem, "prompt", [5, 6, 7], seed=0)
    assert [p.number for p in out] == [5, 6, 7]
    assert out[0].solution == (0, 1, 2, 3, 4) and out[1].solution == (0, 2, 1, 3, 4)
    assert out[2].error and out[2].error.startswith("ParseError")  # a bad item: INVALID, the others kept


def test_free_text_answers_may_span_lines() -> None:
    problem = TSP(random_instance(4, 0))
    reply = "Sure.\n<trace>0,1,\n2,3</trace>\nand\n<trace>0,2,1,3</trace>"
    assert [problem.decode(a) for a in problem.split_answers(reply, 5)] == [(0, 1, 2, 3), (0, 2, 1, 3)]


def test_per_call_meta_prompt_asks_for_k() -> None:
    problem = LinearRegression(seed=0)
    opt = Optimizer(problem, LLMProposer(ScriptedLLM(["[1, 2]"], cycle=True)))
    opt.start()
    one = build_meta_prompt(problem, opt.history, MetaPromptConfig())
    four = build_meta_prompt(problem, opt.history, MetaPromptConfig(), per_call=4)
    assert "Give me a new (w, b) pair" in one and "Give me 4 new pairs" in four
    assert one.split("\n\n")[:-1] == four.split("\n\n")[:-1]  # only the closing request differs


@pytest.mark.parametrize("kill_at", [5, 23, 61])
def test_per_call_and_n_resume_identically_after_a_kill(tmp_path: Path, reference_run, kill_at: int) -> None:
    options = ("--per-call", "4", "--samples-per-request", "2", "--redraw-temperature", "1.5")
    reference, _ = reference_run(*options)  # one uninterrupted run for the three kill points
    store = tmp_path / "runs.db"
    killed = run_script(store, *options, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_script(store, *options, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(store) == snapshot(reference)


def test_redraw_rounds_use_the_redraw_temperature(tmp_path: Path) -> None:
    opt, backend = linreg_run(tmp_path, steps=4, redraw_temperature=1.7)
    opt.run()
    temperatures = {r["temperature"] for r in backend.requests}
    assert temperatures == {1.0, 1.7}  # the script repeats itself: some steps needed a redraw round


# --- n choices per request -----------------------------------------------------------------------

def choices_llm(server: OpenAIServer) -> LLM:
    return LLM.from_model("openai/test", api_base=server.api_base, api_key="sk-test-0000000000", num_retries=0,
                          cache=MemoryCache())


def test_n_choices_are_one_request_billed_once_and_cached_one_by_one() -> None:
    with OpenAIServer(lambda prompt, seed: f"reply {seed}", honour_n=True) as server:
        llm = choices_llm(server)
        out = llm.complete_requests([([{"role": "user", "content": "a b c d"}], (10, 11, 12))])
        assert len(server.requests) == 1 and server.requests[0]["n"] == 3 and server.requests[0]["seed"] == 10
        assert [c.text for c in out] == ["reply 10", "reply 11", "reply 12"]
        assert [c.choice for c in out] == [0, 1, 2]
        assert out[0].prompt_tokens == 4 and out[0].completion_tokens == 6
        assert all(c.prompt_tokens == 0 == c.completion_tokens for c in out[1:])
        usage = Usage()
        for c in out:
            usage = usage.add(c)
        assert usage.calls == 1 and usage.prompt_tokens == 4
        again = llm.complete_requests([([{"role": "user", "content": "a b c d"}], (10, 11, 12))])
        assert len(server.requests) == 1 and all(c.cache_hit for c in again)
        assert [c.text for c in again] == [c.text for c in out]


def test_a_server_that_ignores_n_is_asked_the_rest_one_call_each() -> None:
    with OpenAIServer(lambda prompt, seed: f"reply {seed}") as server:  # llama.cpp's server ignores n
        out = choices_llm(server).complete_requests([([{"role": "user", "content": "x"}], (10, 11, 12))])
        assert [c.text for c in out] == ["reply 10", "reply 11", "reply 12"]
        assert len(server.requests) == 3 and server.requests[0]["n"] == 3
        assert [r.get("n") for r in server.requests[1:]] == [None, None]
        assert [c.choice for c in out] == [0, 0, 0]  # three calls, each billed


def test_a_run_with_n_records_one_call_per_request(tmp_path: Path) -> None:
    script = many_script
    with OpenAIServer(script, honour_n=True) as server:
        llm = LLM.from_model("openai/test", api_base=server.api_base, api_key="sk-test-0000000000", num_retries=0)
        store = RunStore(tmp_path / "runs.db")
        opt = Optimizer(LinearRegression(seed=1), LLMProposer(llm, samples_per_request=4), seed=1, store=store,
                        name="n", budget=Budget(max_steps=2, stop_when_solved=False))
        result = opt.run()
        assert result.usage.calls == len(server.requests)
        assert {r.get("n", 1) for r in server.requests} <= {1, 2, 3, 4} and max(r.get("n", 1) for r in server.requests) == 4
        calls = store.calls(opt.run_record.id)
        assert sum(1 for c in calls if c.choice == 0) == len(server.requests)
        assert store.usage(opt.run_record.id).calls == result.usage.calls


# --- prompt caching ------------------------------------------------------------------------------

def test_prompt_cache_marks_the_prompt_and_records_cached_tokens(tmp_path: Path) -> None:
    with OpenAIServer(many_script, cached_tokens=5) as server:
        llm = LLM.from_model("openai/test", api_base=server.api_base, api_key="sk-test-0000000000", num_retries=0)
        store = RunStore(tmp_path / "runs.db")
        opt = Optimizer(LinearRegression(seed=1), LLMProposer(llm, prompt_cache=True, system_prompt="Be brief."),
                        seed=1, store=store, name="pc", budget=Budget(max_steps=1, stop_when_solved=False))
        result = opt.run()
        body = server.requests[0]
        assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
        assert body["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}
        assert result.usage.cached_prompt_tokens == 5 * result.usage.calls > 0
        assert {c.cached_tokens for c in store.calls(opt.run_record.id)} == {5}
        assert store.usage(opt.run_record.id).cached_prompt_tokens == result.usage.cached_prompt_tokens


# --- racing the scorer ---------------------------------------------------------------------------

def tiny_task(n: int = 64) -> Task:
    train = tuple(Example(id=f"even:{i}", question=f"Is {i} even?", answer="yes" if i % 2 == 0 else "no")
                  for i in range(n))
    return Task(name="bbh_even", kind="bool", train=train, test=())


def scorer_answers(prompt: str) -> str:
    """A scorer that follows the instruction: 'always yes' is right half the time, 'parity' always."""
    number = int(prompt.split("Is ")[1].split(" ")[0])
    if "parity" in prompt:
        return "yes" if number % 2 == 0 else "no"
    if "weird" in prompt:
        return "yes" if number % 5 == 0 else "no"
    return "yes"


def prompt_problem(**options) -> tuple[PromptOptimization, ScriptedLLM]:
    llm = ScriptedLLM(lambda prompt: scorer_answers(prompt), temperature=0.0)
    return PromptOptimization(tiny_task(), Scorer(llm), initial=["always yes"], **options), llm


def test_race_looks_double_up_to_all() -> None:
    assert race_looks(64) == [8, 16, 32, 64]
    assert race_looks(8) == [8]
    assert race_looks(5) == [5]
    assert race_looks(100, 10) == [10, 20, 40, 80, 100]


def test_a_raced_instruction_that_cannot_reach_the_bar_stops_early() -> None:
    problem, llm = prompt_problem()
    full = problem.evaluate("parity please")
    assert full.value == 100.0 and not full.metrics
    raced = problem.evaluate_raced("weird rule", bar=full.value)
    assert raced.metrics["race"]["of"] == 64 and raced.metrics["race"]["scored"] < 64
    assert len(raced.calls) == raced.metrics["race"]["scored"]
    assert raced.metrics["race"]["upper"] < 100.0
    kept = problem.evaluate_raced("parity please", bar=60.0)  # a good one is scored in full, same value
    assert kept.value == full.value and not kept.metrics and len(kept.calls) == 64
    assert sorted(i for i, _, _ in kept.calls) == list(range(64))


def test_optimizer_race_spends_fewer_scorer_calls_and_records_why(tmp_path: Path) -> None:
    def optimizer_script(prompt: str, seed: int) -> str:
        return "<INS>weird rule %d</INS>" % seed if seed % 3 else "<INS>parity please</INS>"

    runs = {}
    for race in (None, 1):
        problem, _ = prompt_problem()
        store = RunStore(tmp_path / f"race{race}.db")
        opt = Optimizer(problem, LLMProposer(ScriptedLLM(optimizer_script)), seed=0, store=store, name="r",
                        budget=Budget(max_steps=3), proposals_per_step=4, race=race)
        result = opt.run()
        runs[race] = (result, store.calls(opt.run_record.id, role="scorer"), store.trials(opt.run_record.id))
    (full, full_calls, full_trials), (raced, raced_calls, raced_trials) = runs[None], runs[1]
    assert len(raced_calls) < len(full_calls)
    assert raced.best.text == full.best.text and raced.best.value == full.best.value
    cut = [t for t in raced_trials if "race" in t.metrics]
    assert cut and all(t.metrics["race"]["scored"] < t.metrics["race"]["of"] for t in cut)
    full_values = {t.text: t.value for t in full_trials if t.state is TrialState.COMPLETE}
    whole = [t for t in raced_trials if t.state is TrialState.COMPLETE and "race" not in t.metrics]
    assert whole and all(t.value == full_values[t.text] for t in whole)  # what was not cut short: its full score


def test_race_is_refused_where_the_problem_cannot_race() -> None:
    with pytest.raises(ValueError, match="cannot race"):
        Optimizer(LinearRegression(seed=0), LLMProposer(ScriptedLLM(["[1, 2]"])), race=1)
    with pytest.raises(ValueError, match="race must be >= 1"):
        Optimizer(prompt_problem()[0], LLMProposer(ScriptedLLM(["x"])), race=0)


# --- the store -----------------------------------------------------------------------------------

def test_a_version_2_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    opt, _ = linreg_run(tmp_path, steps=1)
    opt.run()
    opt.store.close()
    (tmp_path / "runs.db").rename(path)
    db = sqlite3.connect(path)  # make it the version-2 layout: no metrics, choice, cached_tokens (nor version 4's)
    for table, column in (("trials", "metrics"), ("calls", "choice"), ("calls", "cached_tokens"),
                          ("cache", "cached_tokens"), ("trials", "parents"), ("calls", "prompt")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("DROP TABLE validations")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with RunStore(path, readonly=True) as store:  # read as it is
        run = store.get_run("run")
        assert store.trials(run.id) and store.calls(run.id)[0].choice == 0
        assert store.trials(run.id)[0].parents == () and store.calls(run.id)[0].prompt is None
        assert store.validations(run.id) == [] and store.records("validations", run.id) == []
    with RunStore(path) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 4
        run = store.get_run("run")
        assert store.usage(run.id).calls > 0 and store.validations(run.id) == []
        store.add_validation(run.id, 1, 0, 12.5)
        assert [(v.step, v.number, v.value) for v in store.validations(run.id)] == [(1, 0, 12.5)]


@pytest.mark.parametrize("model,provider", [
    ("gpt-4o-mini", "openai"),  # OpenAI's automatic prefix cache
    ("claude-haiku-4-5", "anthropic"),  # Anthropic's cache_control
])
def test_cached_prompt_tokens_are_priced_at_the_cached_rate(model: str, provider: str) -> None:
    litellm = import_litellm()
    price = litellm.model_cost[model]
    full, cached_rate, out_rate = (price["input_cost_per_token"], price["cache_read_input_token_cost"],
                                   price["output_cost_per_token"])
    assert cached_rate < full

    def reply(cached: int):
        usage = litellm.Usage(prompt_tokens=1000, completion_tokens=10, total_tokens=1010,
                              prompt_tokens_details={"cached_tokens": cached},
                              **({"cache_read_input_tokens": cached} if provider == "anthropic" else {}))
        response = litellm.ModelResponse(model=model, usage=usage, choices=[
            {"index": 0, "message": {"role": "assistant", "content": "[1, 2]"}, "finish_reason": "stop"}])
        response._hidden_params = {"custom_llm_provider": provider}
        return _reply(response, reply_cost(response))

    plain, hit = reply(0), reply(800)
    assert (plain.cached_tokens, hit.cached_tokens) == (0, 800)
    assert plain.cost_usd == pytest.approx(1000 * full + 10 * out_rate)
    assert hit.cost_usd == pytest.approx(200 * full + 800 * cached_rate + 10 * out_rate)


def test_show_counts_requests_and_raced_out_instructions(tmp_path: Path) -> None:
    problem, _ = prompt_problem()
    store = RunStore(tmp_path / "show.db")
    script = ScriptedLLM(lambda prompt, seed: "<INS>parity please</INS>" if seed % 4 == 0 else f"<INS>weird {seed}</INS>")
    opt = Optimizer(problem, LLMProposer(script), seed=0, store=store, name="s", budget=Budget(max_steps=3),
                    proposals_per_step=4, race=1)
    opt.run()
    table = steps_table(store, store.get_run("s"))
    assert table[0][-1] == "raced out"
    column = [row[-1] for row in table[1:]]
    trials = store.trials(opt.run_record.id)
    assert sum(column) == sum(1 for t in trials if "race" in t.metrics) > 0


def test_cost_options_go_through_grids_and_the_command_line() -> None:
    grid = grid_from_dict({"seeds": [0], "problems": {"linreg": {}}, "configs": {
        "paper": {}, "cheap": {"per_call": 8, "redraw_temperature": 1.5, "samples_per_request": 2}}},
        name="g", source="g.toml")
    cell = next(c for c in grid.cells() if c.config == "cheap")
    parser = run_parser("linreg")
    args = parser.parse_args(cell_argv(cell, parser))
    _, proposer, _ = prepare_run(args, calls=False)
    assert (proposer.per_call, proposer.redraw_temperature, proposer.samples_per_request) == (8, 1.5, 2)
    prompt_args = run_parser("prompt").parse_args(["--task", "bbh/navigate", "--race", "2", "--race-delta", "0.1"])
    assert prompt_args.race == 2 and prompt_args.race_delta == 0.1


def test_the_embedded_model_reads_prompt_cache_blocks(embedded_model) -> None:
    proposer = LLMProposer(LLM.from_model("local/smollm2", max_tokens=12), prompt_cache=True, system_prompt="Be brief.")
    messages = proposer.messages("Give two integers as [w, b].")
    assert all(isinstance(m["content"], list) for m in messages)
    done = proposer.llm.complete(messages, [0])[0]
    assert done.ok and done.prompt_tokens > 0, done.error
    assert plain_message(messages[-1]) == {"role": "user", "content": "Give two integers as [w, b]."}


def test_a_provider_that_refuses_n_is_asked_every_sample_on_its_own() -> None:
    with OpenAIServer(lambda prompt, seed: f"reply {seed}", honour_n=True) as server:
        server.faults.append((400, {}))  # "anthropic does not support parameters: ['n']"
        out = choices_llm(server).complete_requests([([{"role": "user", "content": "x"}], (10, 11, 12))])
        assert [c.text for c in out] == ["reply 10", "reply 11", "reply 12"]
        assert server.requests[0]["n"] == 3 and [r.get("n") for r in server.requests[1:]] == [None] * 3


def test_a_rerun_against_a_server_that_ignores_n_is_served_from_the_cache() -> None:
    with OpenAIServer(lambda prompt, seed: f"reply {seed}") as server:
        llm = choices_llm(server)
        first = llm.complete_requests([([{"role": "user", "content": "x"}], (10, 11, 12))])
        asked = len(server.requests)
        again = llm.complete_requests([([{"role": "user", "content": "x"}], (10, 11, 12))])
        assert len(server.requests) == asked == 3  # nothing asked twice
        assert [c.text for c in again] == [c.text for c in first] and all(c.cache_hit for c in again)
