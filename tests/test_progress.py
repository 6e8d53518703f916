"""No long silences: the optimizer reports each LLM call as it completes (callbacks), and
`llmopt run`, `evaluate` and `compare` show progress on stderr, call by call, unless --quiet."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from datadir import data_dir
from fakes import linreg_script, scripted_llm
from openai_server import OpenAIServer

from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.cli import main
from problems.linear_regression.problem import LinearRegression

DATA = str(data_dir())
KEY_ENV = "PROGRESS_TEST_KEY"


@pytest.fixture()
def every_redraw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redraw on every update (stderr is not a terminal here: bars are otherwise drawn rarely)."""
    monkeypatch.setattr("llmopt.experiments.progress.LOG_INTERVAL_S", 0.0)


def test_each_call_is_reported_as_it_completes_before_its_step_ends(tmp_path: Path) -> None:
    llm, backend = scripted_llm(latency_s=0.01, concurrency=3)
    with RunStore(tmp_path / "r.db") as store:
        opt = Optimizer(LinearRegression(seed=0), LLMProposer(llm), seed=0, budget=Budget(max_steps=4), store=store,
                        proposals_per_step=5)
        calls, trials, step_ends = [], [], []
        opt.register_callback("call", lambda o, event: calls.append((event, o.usage.calls)))
        opt.register_callback("trial", lambda o, trial: trials.append(trial.number))
        result = opt.run(on_step=lambda o: step_ends.append((o.step, len(calls))))
    with sqlite3.connect(tmp_path / "r.db") as db:
        recorded = db.execute("SELECT number, seed, step FROM calls ORDER BY rowid").fetchall()
    assert len(calls) == result.usage.calls == len(backend.requests) == len(recorded) > 0
    assert [used for _, used in calls] == list(range(1, len(calls) + 1))  # each one accounted when reported
    assert [(e.number, e.completion.seed, e.step) for e, _ in calls] == recorded  # in the order recorded
    assert [e.step for e, _ in calls] == sorted(e.step for e, _ in calls) and calls[-1][0].step == 4
    assert all(e.role == "optimizer" and e.model == "fake/scripted" for e, _ in calls)
    for step, seen in step_ends:  # every call of a step was reported before the step ended
        assert seen == sum(1 for e, _ in calls if e.step <= step)
    assert trials == [t.number for t in result.history]  # every trial, in the order recorded
    with pytest.raises(ValueError, match="unknown callback 'ask'"):
        opt.register_callback("ask", print)


def test_scorer_calls_are_reported_while_a_solution_is_scored() -> None:
    from toys import make_problem, optimizer_script

    problem, _ = make_problem()
    llm, _ = scripted_llm(optimizer_script, model="fake/optimizer")
    opt = Optimizer(problem, LLMProposer(llm), seed=0, budget=Budget(max_steps=1), proposals_per_step=2)
    log: list[tuple[str, int]] = []
    opt.register_callback("scoring", lambda o, event: log.append(("scoring", event.number)))
    opt.register_callback("call", lambda o, event: log.append((f"call:{event.role}", event.number)))
    opt.register_callback("trial", lambda o, trial: log.append(("trial", trial.number)))
    result = opt.run()
    scored = [t for t in result.history if t.state.value == "COMPLETE"]
    assert scored
    for trial in scored:  # its 8 scorer calls as they are answered, then accounted, then the trial
        mine = [kind for kind, number in log if number == trial.number]
        assert mine == ["scoring"] * 8 + ["call:scorer"] * 8 + ["trial"] or \
            mine[:1] == ["call:optimizer"] and mine[1:] == ["scoring"] * 8 + ["call:scorer"] * 8 + ["trial"]
    assert sum(1 for kind, _ in log if kind.startswith("call:")) == result.usage.calls


def test_the_run_bar_moves_call_by_call(tmp_path: Path, capsys, monkeypatch, every_redraw) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-progress-test-000")
    with OpenAIServer(linreg_script) as server:
        code = main(["run", "linreg", "--model", "openai/m", "--api-base", server.api_base, "--api-key-env", KEY_ENV,
                     "--structured", "off", "--steps", "1", "--proposals", "4", "--max-rounds", "1", "--concurrency",
                     "1", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 0
    shown = [int(n) for n in re.findall(r"calls=(\d+) ", err)]
    assert {1, 2, 3, 4} <= set(shown)  # within the step: after each of its 4 calls
    assert re.search(r"calls=2 tokens=\d+ cost=[^\r]+? valid=5 invalid=0 dup=0", err)  # the 5 starting pairs
    assert re.search(r"valid=\d+ invalid=\d+ dup=\d+", err)
    code = main(["run", "linreg", "--proposer", "random", "--steps", "1", "--store", str(tmp_path / "q.db"),
                 "--quiet"])
    assert code == 0 and capsys.readouterr().err == ""


def test_evaluate_shows_a_bar_over_scorer_calls(tmp_path: Path, capsys, monkeypatch, every_redraw) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-progress-test-000")
    with OpenAIServer(lambda prompt, seed: "The answer is Yes.") as server:
        args = ["evaluate", "--task", "bbh/navigate", "--data-dir", DATA, "--max-examples", "5", "--no-baselines",
                "--instruction", "Think.", "--instruction", "Look twice.", "--scorer", "openai/s",
                "--scorer-api-base", server.api_base, "--scorer-api-key-env", KEY_ENV, "--store",
                str(tmp_path / "e.db")]
        assert main(args) == 0
        err = capsys.readouterr().err
        assert "bbh/navigate (test)" in err and "10/10" in err and "call" in err
        assert {f"{k}/10" for k in range(1, 11)} <= set(re.findall(r"\b\d+/10\b", err))  # one step per call
        assert main([*args, "--quiet"]) == 0  # from the cache now; no bar
        assert "/10" not in capsys.readouterr().err


def test_compare_names_each_cell_and_shows_its_bar(tmp_path: Path, capsys) -> None:
    argv = ["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "2", "--set", "steps=2",
            "--no-references", "--store", str(tmp_path / "c.db")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/2] compare/linreg/random/seed0: starting" in err and "[2/2] compare/linreg/random/seed1" in err
    assert err.count("best=") >= 2 and "step" in err  # each run's bar
    assert main([*argv[:-2], "--store", str(tmp_path / "d.db"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "[1/2] compare/linreg/random/seed0: starting" in err and "best=" not in err


def test_minimize_shows_progress_unless_told_not_to(capsys, every_redraw) -> None:
    import llmopt

    space = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["x"]}
    llmopt.minimize(lambda s: s["x"], space, proposer="random", steps=3)
    err = capsys.readouterr().err
    assert re.search(r"3/3 .*best=0?\d.*valid=\d+", err), err  # the command line's bar, on stderr
    llmopt.minimize(lambda s: s["x"], space, proposer="random", steps=3, progress=False)
    assert capsys.readouterr().err == ""


def test_llmopt_version(capsys) -> None:
    import importlib.metadata

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmopt {importlib.metadata.version('llmopt')}"
