"""``llmopt run prompt`` and ``llmopt evaluate``: over real HTTP (loopback) and on the embedded model."""

from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path

import pytest
from datadir import data_dir
from openai_server import OpenAIServer

from llmopt import RunStore, TrialState
from llmopt.cli import main
from problems.prompt_optimization.data import load_bbh

DATA = str(data_dir())
KEY_ENV = "LLMOPT_TEST_FAKE_KEY"


_PROPOSALS = itertools.count()


ANSWERS = {ex.question: ex.answer for ex in load_bbh(Path(DATA) / "bbh" / "navigate.json")}


def serve(prompt: str, seed: int) -> str:
    """Optimizer replies to meta-prompts (in turn: good, bad, invalid); the scorer answers right
    only when told to 'look twice', and otherwise says something ungradable."""
    if "generate the instruction <INS>" in prompt:
        return ["<INS>Look twice before you answer.</INS>", "<INS>Answer now.</INS>",
                "no instruction\nhere"][next(_PROPOSALS) % 3]
    if "look twice" in prompt.lower():
        question = next(q for q in ANSWERS if q in prompt)
        return f"The answer is {ANSWERS[question]}."
    return "Maybe."


@pytest.fixture()
def server(openai_server) -> OpenAIServer:
    """A loopback server replying with ``serve`` (its fake key in $LLMOPT_TEST_FAKE_KEY)."""
    return openai_server(serve)


def http_args(server: OpenAIServer) -> list[str]:
    return ["--model", "openai/opt", "--api-base", server.api_base, "--api-key-env", KEY_ENV, "--structured", "off",
            "--scorer", "openai/scorer", "--scorer-api-base", server.api_base, "--scorer-api-key-env", KEY_ENV]


def test_run_then_evaluate_over_http(server: OpenAIServer, tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "p.db")
    code = main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "6", "--steps", "2",
                 "--proposals", "2", "--max-rounds", "1", "--store", store, "--quiet", *http_args(server)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "prompt-llm-seed0" in out and "stopped by                max_steps" in out
    assert re.search(r"  scorer +\d+ \(0 cached, 0 failed\)", out)
    with RunStore(store) as s:
        run = s.get_run("prompt-llm-seed0")
        scorer_calls = s.calls(run.id, role="scorer")
        assert len(scorer_calls) == 6 * len(s.trials(run.id, states=[TrialState.COMPLETE]))
        assert run.config["problem"]["task"] == "bbh/navigate" and run.config["problem"]["split"]["train"] == 6
    asked = len(server.requests)
    args = ["evaluate", "--run", "prompt-llm-seed0", "--data-dir", DATA, "--max-examples", "10", "--top", "1",
            "--store", store, "--scorer", "openai/scorer", "--scorer-api-base", server.api_base,
            "--scorer-api-key-env", KEY_ENV]
    assert main(args) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["instruction", "text"]
    assert "prompt-llm-seed0 #1 (train 100.0)" in table and "Look twice before you answer." in table
    assert re.search(r"#1 \(train 100.0\).*bbh/navigate  test   10  100.0", table)
    assert re.search(r"baseline: empty .* 0.0 ", table)
    assert "baseline: step by step" in table and "95% CI" in table
    first = len(server.requests)
    assert first - asked == 10 * 6  # 10 test examples x (1 from the run + 5 baselines)
    assert main(args) == 0  # again: every reply from the store's cache
    assert "scorer calls: 60 (60 from the cache, 0 failed)" in capsys.readouterr().out
    assert len(server.requests) == first


def test_estimate_refuses_before_anything_is_spent(tmp_path: Path, capsys) -> None:
    store = tmp_path / "p.db"
    code = main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--steps", "3", "--max-calls", "100",
                 "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and "estimate" in err and "scorer    local/smollm2: <= 1250 calls" in err
    assert "error: the run may make up to 1322 calls, more than --max-calls 100" in err
    assert not store.exists()


@pytest.mark.parametrize("args,message", [
    (["--task", "bbh/navigate", "--data-dir", "/nonexistent/data"],
     "data directory /nonexistent/data (--data-dir) does not exist"),
    (["--task", "bbh/chess", "--data-dir", DATA], "unknown BBH task 'chess'"),
    (["--task", "gsm8k", "--data-dir", DATA, "--position", "middle"], "invalid choice: 'middle'"),
    (["--task", "bbh/navigate", "--data-dir", DATA, "--scorer", "nonsense-model"], "unknown model 'nonsense-model'"),
])
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) if "invalid choice" in message else contextlib.nullcontext():
        code = main(["run", "prompt", *args, "--store", str(tmp_path / "p.db"), "--quiet"])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_no_data_directory_reads_the_packaged_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """Neither --data-dir nor $LLMOPT_DATA: the data shipped with the package (no model is called)."""
    monkeypatch.delenv("LLMOPT_DATA", raising=False)
    code = main(["run", "prompt", "--task", "bbh/navigate", "--steps", "3", "--max-calls", "100",
                 "--store", str(tmp_path / "p.db")])
    err = capsys.readouterr().err
    assert code == 2 and "scorer    local/smollm2: <= 1250 calls" in err  # navigate's 50 training examples
    assert main(["evaluate", "--task", "bbh/chess", "--store", str(tmp_path / "p.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown BBH task 'chess' (known: boolean_expressions" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("LLMOPT_DATA", str(tmp_path / "gone"))
    assert main(["evaluate", "--task", "gsm8k", "--store", str(tmp_path / "p.db")]) == 2
    assert f"data directory {tmp_path / 'gone'} ($LLMOPT_DATA) does not exist" in capsys.readouterr().err


def test_embedded_model_scores_and_optimizes(tmp_path: Path, capsys, embedded_model) -> None:
    """The default models end to end: SmolLM2 proposes and scores (a few examples, one step)."""
    store = str(tmp_path / "p.db")
    assert main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "3", "--steps", "1",
                 "--proposals", "2", "--max-rounds", "1", "--scorer-max-output-tokens", "8", "--store", store,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "training examples         3" in out and re.search(r"  scorer +\d+ \(0 cached", out)
    with RunStore(store) as s:
        run = s.get_run("prompt-llm-seed0")
        scored = s.trials(run.id, states=[TrialState.COMPLETE])
        assert scored and all(abs(t.value * 3 / 100 - round(t.value * 3 / 100)) < 1e-9 for t in scored)


def test_resume_continues_without_rescoring(server: OpenAIServer, tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "p.db")
    base = ["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "4", "--proposals", "2",
            "--max-rounds", "1", "--store", store, "--quiet", "--name", "r", *http_args(server)]
    assert main([*base, "--steps", "1"]) == 0
    with RunStore(store) as s:
        first = [(t.number, t.text, t.value) for t in s.trials(s.get_run("r").id)]
    asked = len(server.requests)
    assert main([*base, "--steps", "2", "--resume"]) == 0
    assert "steps                     2" in capsys.readouterr().out
    with RunStore(store) as s:
        run = s.get_run("r")
        after = [(t.number, t.text, t.value) for t in s.trials(run.id)]
        new_calls = len(s.calls(run.id))
    assert after[:len(first)] == first and len(after) > len(first)
    assert len(server.requests) - asked <= 2 + 2 * 4  # one step's proposals and their scoring, nothing re-asked
    assert new_calls == len(server.requests)  # every request the server saw is one recorded call
