"""The embedded model for real: in-process through litellm, and behind llama.cpp's server."""

from __future__ import annotations

import json

import pytest

from llmopt import LLM, Budget, LLMConfigError, LLMProposer, Optimizer, RunStore, StopReason, TrialState
from llmopt.llm.embedded import DEFAULT_MODEL, model_path
from problems.linear_regression.problem import LinearRegression

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Give me two integers as JSON."}]


def run(store: RunStore, name: str, llm: LLM, steps: int = 2, **kw) -> tuple[Optimizer, object]:
    opt = Optimizer(LinearRegression(seed=0), LLMProposer(llm, **kw), store=store, name=name,
                    budget=Budget(max_steps=steps, stop_when_solved=False))
    return opt, opt.run()


def test_weights_come_from_the_installed_package() -> None:
    path = model_path("smollm2")
    assert path.suffix == ".gguf" and path.stat().st_size > 90_000_000 and "site-packages" in str(path)
    with pytest.raises(LLMConfigError, match="unknown local model"):
        model_path("gpt-5")


def test_embedded_model_runs_opro_with_structured_output(tmp_path, embedded_model) -> None:
    store = RunStore(tmp_path / "r.db")
    opt, result = run(store, "structured", LLM.from_model(DEFAULT_MODEL, max_tokens=48), steps=1)
    assert result.stop_reason is StopReason.MAX_STEPS and result.usage.calls >= 8  # a call per proposal at least
    assert opt.proposer.config()["response_format"]["type"] == "json_schema"
    llm_trials = [t for t in result.history if t.source == f"llm:{DEFAULT_MODEL}"]
    invalid = sum(t.state is TrialState.INVALID for t in llm_trials)
    assert invalid <= len(llm_trials) // 4  # the grammar makes replies parseable
    assert all(t.raw.lstrip().startswith("{") for t in llm_trials if t.raw)
    prompt = store.steps(opt.run_record.id)[1].prompt
    assert 'JSON object of the form {"w": <integer>, "b": <integer>}' in prompt and "[w, b]" not in prompt
    rows = store.calls(opt.run_record.id)
    assert all(r.cost_usd == 0.0 and r.prompt_tokens > 100 for r in rows)  # free, and known to be
    # same seed again: served from the cache, the same trials
    _, again = run(store, "again", LLM.from_model(DEFAULT_MODEL, max_tokens=48), steps=1)
    assert again.usage.cache_hits == again.usage.calls == result.usage.calls
    assert [(t.state, t.raw) for t in again.history] == [(t.state, t.raw) for t in result.history]


def test_structured_off_is_the_papers_free_text(tmp_path, embedded_model) -> None:
    store = RunStore(tmp_path / "r.db")
    opt = Optimizer(LinearRegression(seed=0), LLMProposer(LLM.from_model(DEFAULT_MODEL, max_tokens=48), structured="off"),
                    store=store, name="free", max_rounds=1, budget=Budget(max_steps=1, stop_when_solved=False))
    result = opt.run()
    assert opt.proposer.config()["response_format"] is None
    prompt = store.steps(opt.run_record.id)[1].prompt
    assert prompt.endswith("The output must end with a pair [w, b], where w and b are numerical values.")
    assert result.usage.calls == 8  # one round: a call per proposal (what is redrawn is checked elsewhere)
    replies = [t.raw for t in result.history if t.raw]
    assert len(replies) == result.usage.calls and not all(r.lstrip().startswith("{") for r in replies)


def test_a_per_call_seed_fixes_the_sample(embedded_model) -> None:
    llm = LLM.from_model(DEFAULT_MODEL, max_tokens=24)
    texts = [c.text for c in llm.complete(MESSAGES, [11, 11, 12, 13])]
    assert texts[0] == texts[1] and len(set(texts)) >= 2


def test_the_grammar_keeps_the_embedded_models_numbers_in_the_schemas_bounds(embedded_model) -> None:
    """A prompt that begs for values out of bounds: the grammar bounds the integer, the number and the
    enum (llama-cpp-python's own grammar bounded only the enum)."""
    schema = {"type": "object", "required": ["n", "t", "kind"], "additionalProperties": False, "properties": {
        "n": {"type": "integer", "minimum": -10, "maximum": 10}, "t": {"type": "number", "minimum": 0, "maximum": 5},
        "kind": {"enum": ["linear", "square", "root"]}}}
    llm = LLM.from_model(DEFAULT_MODEL, max_tokens=48, temperature=1.0)
    ask = [{"role": "user", "content": 'Reply with JSON such as {"n": 250, "t": 99.5, "kind": "square"}.'}]
    replies = [json.loads(c.text) for c in llm.complete(ask, [0, 1, 2, 3], response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})]
    assert all(-10 <= r["n"] <= 10 and 0 <= r["t"] <= 5 and r["kind"] in ("linear", "square", "root")
               for r in replies), replies


def test_opro_against_llama_cpp_server_on_loopback(tmp_path, llama_server: str) -> None:
    """The server path Ollama, vLLM and llama.cpp-server users take: openai/<name> + api_base."""
    store = RunStore(tmp_path / "r.db")
    llm = LLM.from_model("openai/smollm2", api_base=llama_server, api_key="sk-no-key", max_tokens=48)
    opt, result = run(store, "server", llm, steps=1, structured="json_object")  # llama.cpp's server style
    assert result.stop_reason is StopReason.MAX_STEPS and result.usage.failed_calls == 0
    llm_trials = [t for t in result.history if t.source == "llm:openai/smollm2"]
    assert len(llm_trials) == result.usage.calls >= 8  # a call per proposal: 8 a step at least
    assert sum(t.state is TrialState.INVALID for t in llm_trials) <= len(llm_trials) // 4
    assert result.usage.unpriced_calls == result.usage.calls  # litellm has no price for it: unknown, not $0
    # the server ignores n > 1 but honours a per-call seed: samples are separate seeded calls
    texts = [c.text for c in llm.complete(MESSAGES, [5, 5, 6])]
    assert texts[0] == texts[1]


def test_a_cancelled_call_queued_behind_the_engine_never_generates(embedded_model) -> None:
    """Ctrl-C (or a timeout) cancels the awaiting task, not its thread: the thread must see it
    and drop the call, instead of generating a reply nobody reads while the run waits for it."""
    import asyncio

    from llmopt.llm import embedded as local

    eng = embedded_model
    provider = local._provider_class()()
    before = eng.busy_s

    async def main() -> None:
        call = asyncio.ensure_future(provider.acompletion(
            "local/smollm2", [{"role": "user", "content": "Say hi."}], None, {}, None, None, None, None, None,
            {"max_tokens": 16, "seed": 1}))
        await asyncio.sleep(0.3)  # the worker thread now waits for the engine's lock
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        eng.lock.release()  # asyncio.run then waits for the worker thread before returning

    eng.lock.acquire()
    asyncio.run(main())
    assert eng.busy_s == before  # nothing was generated
    assert eng.chat([{"role": "user", "content": "Say hi."}], {"max_tokens": 4, "seed": 1})["choices"]


# --- any x86-64 CPU (issue 12: AMX segfault), and samples independent of call order -------------


def test_models_load_without_llama_cpps_extra_buffer_types(embedded_model) -> None:
    """The AMX kernels (an extra buffer type of a native build on such CPUs) segfault on the first
    generation; the engine loads with them off, on every CPU, so no machine takes that path."""
    assert embedded_model.llama().model_params.use_extra_bufts is False


def test_a_crashing_llama_cpp_is_one_line_before_anything_is_spent(tmp_path, monkeypatch, capsys) -> None:
    """If llama.cpp still dies on some CPU, the run refuses in one line naming the CPU and what to use
    instead; no store is made, no call recorded."""
    import sys

    from llmopt.cli import main
    from llmopt.llm import embedded as local

    segfault = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    monkeypatch.setattr(local, "probe_command", lambda path, threads: segfault)
    monkeypatch.setenv("LLMOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(local, "_probed", set())
    store = tmp_path / "r.db"
    assert main(["run", "linreg", "--steps", "1", "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot run on this machine" in err and "SIGSEGV" in err
    assert local.cpu_summary() in err and "--api-base" in err
    assert not store.exists() and not list((tmp_path / "cache").glob("*"))  # a failure is not remembered


def test_a_passed_probe_is_remembered_on_disk(tmp_path, monkeypatch) -> None:
    import sys

    from llmopt.llm import embedded as local

    monkeypatch.setenv("LLMOPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(local, "_probed", set())
    path = local.model_path("smollm2")
    local.check_runs(path, 1, command=[sys.executable, "-c", "pass"])
    assert len(list(tmp_path.glob("probe-*.ok"))) == 1
    monkeypatch.setattr(local, "_probed", set())  # a new process: the marker file answers
    local.check_runs(path, 1, command=[sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(LLMConfigError, match="exit status 3"):  # other threads: another probe
        local.check_runs(path, 2, command=[sys.executable, "-c", "raise SystemExit(3)"])


def test_samples_do_not_depend_on_the_order_calls_arrive_in(embedded_model) -> None:
    """The engine serves concurrent calls in arrival order and keeps the last prompt's KV cache; a
    sample for (prompt, seed) must still be the same whichever calls came before it."""
    from llmopt.llm import embedded as local

    eng = embedded_model
    shared = ("Below are some previous pairs (w, b) and their losses; lower is better. " * 5)  # > 64 tokens
    prompts = {  # a and b share whole chunks of the prompt cache, c is a and more
        "a": [{"role": "user", "content": shared + "Write a new pair of integers like [12, 40]."}],
        "b": [{"role": "user", "content": shared + "Write three pairs of integers like [7, 3], and nothing else."}],
        "c": [{"role": "user", "content": shared + "Write a new pair of integers like [12, 40]. " + shared}],
    }

    def sample(order: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {(p, s): eng.chat(prompts[p], {"max_tokens": 16, "seed": s, "temperature": 1.0})["choices"][0]
                ["message"]["content"] for p, s in order}

    calls = [("a", 1), ("a", 2), ("b", 1), ("c", 1), ("a", 3), ("b", 2), ("c", 2), ("b", 3)]
    first = sample(calls)
    again = sample(list(reversed(calls)))
    assert first == again
    fresh = local.load_llama(eng.path, eng.n_ctx, eng.n_threads)  # nothing cached: the same samples
    for p, s in [("c", 2), ("b", 3)]:
        reply = fresh.create_chat_completion(messages=prompts[p], max_tokens=16, seed=s, temperature=1.0)
        assert reply["choices"][0]["message"]["content"] == first[(p, s)]
    fresh.close()


def test_same_seed_same_run_in_fresh_stores_and_processes(tmp_path, capsys, embedded_model) -> None:
    """Two seed-0 runs of `llmopt run linreg` with the embedded model, one in a new process and one
    in this one (whose engine has served other prompts before), each with a new store and no cache,
    propose the same trials (8 concurrent calls a step, in any order).

    The child is also the README's path in a fresh process (issue 12), so that a segfault (the AMX
    crash) fails this test instead of killing the test run: with a fresh cache dir it runs the
    probe, then (after its run) generates through ``LLM.from_model`` + ``validate`` + ``complete``.
    The run in this process is also `llmopt run linreg` with no model given: the embedded model,
    structured output by default."""
    import os
    import subprocess
    import sys

    from llmopt.cli import main

    argv = ["run", "linreg", "--steps", "1", "--max-rounds", "1", "--quiet", "--max-output-tokens", "48"]
    child = ("import sys; from llmopt.cli import main; code = main(sys.argv[1:])\n"
             "from llmopt import LLM; llm = LLM.from_model('local/smollm2', max_tokens=16); llm.validate()\n"
             "print(repr(llm.complete([{'role': 'user', 'content': 'Say hi.'}], [0])[0].text)); sys.exit(code)\n")

    def trials(store) -> list[tuple]:
        with RunStore(store) as s:
            rows = s.trials(s.get_run("linreg-llm-seed0").id)
            return [(r.number, r.state, r.raw, r.value) for r in rows]

    env = dict(os.environ, LLMOPT_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", child, *argv, "--store", str(tmp_path / "a.db")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-1500:]}"
    assert done.stdout.strip().splitlines()[-1] not in ("", "''")  # the README's call generated text
    assert list((tmp_path / "cache").glob("probe-*.ok"))  # the probe passed and was remembered
    assert main([*argv, "--store", str(tmp_path / "b.db")]) == 0
    assert "linreg-llm-seed0" in capsys.readouterr().out
    run = RunStore(tmp_path / "b.db").get_run("linreg-llm-seed0")
    assert run.config["proposer"]["llm"]["model"] == DEFAULT_MODEL == "local/smollm2"
    assert run.config["proposer"]["response_format"] is not None  # structured output by default
    first, second = trials(tmp_path / "a.db"), trials(tmp_path / "b.db")
    assert len(first) == 5 + 8 and first == second
