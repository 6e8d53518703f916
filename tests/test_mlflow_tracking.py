"""``--mlflow URI`` (``mlflow=`` in Python): runs logged to MLflow tracking, read back with MLflow's
own client from a local file store under ``tmp_path``. In-process: ``import mlflow`` (2-3 s) is paid
once, by the first test that runs (not at collection, which every xdist worker does)."""

from __future__ import annotations

import builtins
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import llmopt
from llmopt.cli import main
from llmopt.experiments.tracking import HTTP_DEFAULTS, MISSING, PARAM_LIMIT, Tracking, flatten, mlflow_settings, run_tracked
from llmopt.history import TrialState
from llmopt.store import RunStore
from llmopt.testing import ScriptedLLM

SCHEMA = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -20, "maximum": 20}}, "required": ["x"]}
STEP_METRICS = ("best_so_far", "evaluations", "calls", "prompt_tokens", "completion_tokens", "usd")


@pytest.fixture(autouse=True)
def read_back_directory_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow installed (the mlflow extra, in the test extra), and the tests' own client reads the
    directory stores (MLflow 3 asks for the opt-in; llmopt sets it only around its own calls)."""
    pytest.importorskip("mlflow.tracking", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def square(s: dict[str, int]) -> float:
    return float((s["x"] - 3) ** 2)


def client(root: Path) -> Any:
    return importlib.import_module("mlflow.tracking").MlflowClient(tracking_uri=f"file://{root}")


def only_run(root: Path, experiment: str) -> Any:
    """The one MLflow run of ``experiment`` (fails if there are more: a resume must not add one)."""
    c = client(root)
    found = c.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = c.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def history(root: Path, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(root).get_metric_history(run_id, name))


def expected_points(store: Path, name: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(evaluations, best so far) after each step, computed from the store's trials (minimizing)."""
    with RunStore(store, readonly=True) as s:
        run = s.get_run(name)
        trials, steps = s.trials(run.id), [st.step for st in s.steps(run.id)]
    evals, best = [], []
    for step in steps:
        done = [t.value for t in trials if t.state is TrialState.COMPLETE and t.step <= step]
        evals.append((step, float(len(done))))
        if done:
            best.append((step, min(done)))
    return evals, best


def artifact(root: Path, run_id: str, path: str) -> str:
    folder = client(root).download_artifacts(run_id, path)
    return Path(folder).read_text(encoding="utf-8")


def test_cli_run_is_logged_with_config_metrics_artifacts_and_status(tmp_path: Path, capsys) -> None:
    store, root = tmp_path / "runs.db", tmp_path / "mlruns"
    code = main(["run", "linreg", "--proposer", "random", "--steps", "4", "--store", str(store), "--quiet",
                 "--mlflow", str(root)])
    assert code == 0, capsys.readouterr().err
    run = only_run(root, "linreg")
    assert run.info.status == "FINISHED" and run.info.run_name == "linreg-random-seed0"
    with RunStore(store, readonly=True) as s:
        record = s.get_run("linreg-random-seed0")
    assert run.data.params == flatten(record.config)  # the recorded config, flattened
    assert run.data.params["budget.max_steps"] == "4" and run.data.params["proposer.kind"] == "random"
    tags = run.data.tags
    assert tags["llmopt.store"] == str(store) and tags["llmopt.run_name"] == "linreg-random-seed0"
    assert tags["llmopt.run_id"] == str(record.id) and tags["llmopt.seed"] == "0"
    assert tags["llmopt.proposer"] == "random" and tags["llmopt.stop_reason"] == "max_steps"
    assert tags["llmopt.version"]
    evals, best = expected_points(store, "linreg-random-seed0")
    assert [s for s, _ in evals] == [0, 1, 2, 3, 4]
    assert history(root, run.info.run_id, "evaluations") == evals
    assert history(root, run.info.run_id, "best_so_far") == best
    assert history(root, run.info.run_id, "calls") == [(s, 0.0) for s in range(5)]
    assert json.loads(artifact(root, run.info.run_id, "config.json")) == record.config
    best_trial = min((t for t in RunStore(store, readonly=True).trials(record.id) if t.ok), key=lambda t: t.value)
    assert artifact(root, run.info.run_id, "best.txt") == best_trial.text
    report = artifact(root, run.info.run_id, "report.md")
    assert "| stopped by | max_steps" in report and "| step | complete |" in report


def test_scripted_model_logs_calls_tokens_and_dollars_per_step(tmp_path: Path) -> None:
    """The optimizer's accounting, step by step: 2 calls a step (a reply each, per_call=1), with the
    scripted model's tokens and price; python's mlflow= and mlflow_experiment= keywords."""
    root, store = tmp_path / "mlruns", tmp_path / "runs.db"
    llm = ScriptedLLM(lambda prompt, seed: f'{{"x": {seed % 41 - 20}}}', cost_per_call=0.25)
    result = llmopt.minimize(square, SCHEMA, model=llm, steps=3, proposals_per_step=2, store=store, seed=1,
                             progress=False, mlflow=str(root), mlflow_experiment="mine", proposer_options={"per_call": 1})
    run = only_run(root, "mine")
    rid = run.info.run_id
    calls = history(root, rid, "calls")
    assert [s for s, _ in calls] == [0, 1, 2, 3] and calls[0][1] == 0.0  # step 0: the starts, no call
    assert calls[-1][1] == result.usage.calls > 0
    prompt_tokens = history(root, rid, "prompt_tokens")
    assert prompt_tokens[-1][1] == result.usage.prompt_tokens > 0
    assert all(a[1] < b[1] for a, b in zip(prompt_tokens[1:], prompt_tokens[2:]))  # each step's calls add
    assert history(root, rid, "completion_tokens")[-1][1] == result.usage.completion_tokens > 0
    usd = history(root, rid, "usd")
    assert usd[-1][1] == pytest.approx(result.usage.cost_usd) and usd[-1][1] == pytest.approx(0.25 * result.usage.calls)
    with RunStore(store, readonly=True) as s:
        per_step = {}
        for call in s.calls(s.get_run(result.name).id):
            per_step[call.step] = per_step.get(call.step, 0) + 1
    assert [c for _, c in calls] == [float(sum(n for k, n in per_step.items() if k <= step)) for step in range(4)]
    assert run.data.tags["llmopt.model"] == "scripted/model" and run.info.status == "FINISHED"
    assert history(root, rid, "best_so_far") == expected_points(store, result.name)[1]


def stored_calls_after_each_step(store: Path, name: str, steps: int) -> list[tuple[int, float]]:
    with RunStore(store, readonly=True) as s:
        calls = [c for c in s.calls(s.get_run(name).id) if c.choice == 0]
    return [(step, float(sum(1 for c in calls if c.step <= step))) for step in range(steps + 1)]


def test_tracking_begun_on_a_resume_logs_the_earlier_steps_from_the_store(tmp_path: Path) -> None:
    root, store = tmp_path / "mlruns", tmp_path / "runs.db"
    llm = ScriptedLLM(lambda prompt, seed: f'{{"x": {seed % 41 - 20}}}', cost_per_call=0.5)
    options: dict[str, Any] = dict(model=llm, proposals_per_step=2, store=store, name="r", progress=False,
                                   proposer_options={"per_call": 1})
    llmopt.minimize(square, SCHEMA, steps=2, **options)  # not tracked
    result = llmopt.minimize(square, SCHEMA, steps=4, resume=True, mlflow=str(root), **options)
    rid = only_run(root, "function").info.run_id
    assert history(root, rid, "calls") == stored_calls_after_each_step(store, "r", 4)
    assert [s for s, _ in history(root, rid, "usd")] == [0, 1, 2, 3, 4]
    assert history(root, rid, "usd")[2][1] == pytest.approx(0.5 * stored_calls_after_each_step(store, "r", 4)[2][1])
    assert history(root, rid, "usd")[-1][1] == pytest.approx(result.usage.cost_usd)
    assert history(root, rid, "best_so_far") == expected_points(store, "r")[1]


def test_interrupted_then_resumed_run_is_one_mlflow_run_without_duplicate_points(tmp_path: Path) -> None:
    root, store = tmp_path / "mlruns", tmp_path / "runs.db"
    state = {"calls": 0, "stop_at": 14}

    def objective(s: dict[str, int]) -> float:
        state["calls"] += 1
        if state["calls"] == state["stop_at"]:  # Ctrl-C in the middle of step 2's scoring
            raise KeyboardInterrupt
        return float((s["x"] - 3) ** 2)

    options: dict[str, Any] = dict(proposer="random", steps=5, store=store, name="r", progress=False,
                                   mlflow=str(root), proposals_per_step=4)
    first = llmopt.minimize(objective, SCHEMA, **options)
    assert first.stop_reason is llmopt.StopReason.INTERRUPTED
    run = only_run(root, "function")
    assert run.info.status == "KILLED" and run.data.tags["llmopt.stop_reason"] == "interrupted"
    logged = [s for s, _ in history(root, run.info.run_id, "evaluations")]
    assert logged == list(range(first.steps))  # the step cut short is not logged: the resume redoes it
    second = llmopt.minimize(objective, SCHEMA, resume=True, **options)
    assert second.stop_reason is llmopt.StopReason.MAX_STEPS
    again = only_run(root, "function")  # the same MLflow run, continued
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    for name in STEP_METRICS:
        steps = [s for s, _ in history(root, run.info.run_id, name)]
        assert steps == sorted(set(steps)), f"{name}: a step logged twice: {steps}"
    evals, best = expected_points(store, "r")
    assert history(root, run.info.run_id, "evaluations") == evals and [s for s, _ in evals] == list(range(6))
    assert history(root, run.info.run_id, "best_so_far") == best


def test_a_new_run_of_the_same_name_in_a_store_made_again_is_a_new_mlflow_run(tmp_path: Path) -> None:
    root, store = tmp_path / "mlruns", tmp_path / "runs.db"
    options: dict[str, Any] = dict(proposer="random", steps=1, store=store, name="r", progress=False, mlflow=str(root))
    llmopt.minimize(square, SCHEMA, **options)
    store.unlink()
    llmopt.minimize(square, SCHEMA, **options)
    c = client(root)
    runs = c.search_runs([c.get_experiment_by_name("function").experiment_id])
    assert len(runs) == 2 and {r.data.tags["llmopt.run_name"] for r in runs} == {"r"}
    assert all(len(c.get_metric_history(r.info.run_id, "evaluations")) == 2 for r in runs)  # steps 0 and 1, once


def test_without_mlflow_the_flag_is_one_line_before_anything_is_created(tmp_path: Path, monkeypatch, capsys) -> None:
    real_import = builtins.__import__

    def no_mlflow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mlflow" or name.startswith("mlflow."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    store = tmp_path / "runs.db"
    code = main(["run", "linreg", "--proposer", "random", "--steps", "2", "--store", str(store), "--quiet",
                 "--mlflow", str(tmp_path / "mlruns")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"llmopt: error: {MISSING}\n"
    assert not store.exists() and not (tmp_path / "mlruns").exists()
    with pytest.raises(ImportError, match=r'pip install "llmopt\[mlflow\]"'):
        llmopt.minimize(square, SCHEMA, proposer="random", steps=1, store=store, mlflow=str(tmp_path / "m"), progress=False)
    evaluator = tmp_path / "ev.py"
    evaluator.write_text("def evaluate(path):\n    return 1.0\n")
    with pytest.raises(ImportError, match=r'pip install "llmopt\[mlflow\]"'):
        llmopt.evolve(f"{evaluator}:evaluate", "x = 1\n", description="d", proposer="random", store=store,
                      mlflow=str(tmp_path / "m"), progress=False)
    assert not store.exists()


def test_tracking_that_fails_mid_run_warns_once_and_the_run_finishes(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mlruns"
    seen = {"n": 0}

    def objective(s: dict[str, int]) -> float:
        seen["n"] += 1
        if seen["n"] == 10:  # the tracking store disappears in the middle of the run
            shutil.rmtree(root)
        return float((s["x"] - 3) ** 2)

    result = llmopt.minimize(objective, SCHEMA, proposer="random", steps=5, proposals_per_step=4,
                             store=tmp_path / "runs.db", progress=False, mlflow=str(root))
    assert result.stop_reason is llmopt.StopReason.MAX_STEPS and result.steps == 5
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow tracking" in line]
    assert len(warnings) == 1 and warnings[0].startswith("llmopt: warning: MLflow tracking")
    with RunStore(tmp_path / "runs.db", readonly=True) as s:  # the store has the whole run
        assert len(s.trials(s.get_run(result.name).id)) == len(result.history)


def test_compare_logs_each_cell_as_a_run_tagged_with_the_grid(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mlruns"
    code = main(["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "2", "--set", "steps=1",
                 "--store", str(tmp_path / "grid.db"), "--no-references", "--quiet", "--name", "g",
                 "--mlflow", str(root), "--mlflow-experiment", "grid-exp"])
    assert code == 0, capsys.readouterr().err
    c = client(root)
    runs = c.search_runs([c.get_experiment_by_name("grid-exp").experiment_id], filter_string="tags.`llmopt.grid` = 'g'")
    assert sorted(r.info.run_name for r in runs) == ["g/linreg/random/seed0", "g/linreg/random/seed1"]
    assert {r.data.tags["llmopt.cell"] for r in runs} == {"g/linreg/random/seed0", "g/linreg/random/seed1"}
    assert all(r.info.status == "FINISHED" and r.data.params["budget.max_steps"] == "1" for r in runs)


def test_params_are_flattened_and_cut_at_mlflows_limit() -> None:
    params = flatten({"a": {"b": 1, "c": [1, 2]}, "long": "x" * 2000, "none": None, "odd key!": True})
    assert params["a.b"] == "1" and params["a.c"] == "[1, 2]" and params["none"] == "null"
    assert len(params["long"]) == PARAM_LIMIT and params["long"].endswith("...")
    assert params["odd key_"] == "true"


def test_mlflows_settings_are_llmopts_only_while_it_logs(tmp_path: Path, monkeypatch) -> None:
    """The directory-store opt-in and the short HTTP retries are set around llmopt's own calls, the
    user's values win, and the process's environment is as it was after a run."""
    for key in ("MLFLOW_ALLOW_FILE_STORE", *HTTP_DEFAULTS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    with mlflow_settings(str(tmp_path / "mlruns")):
        assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    with mlflow_settings("http://127.0.0.1:5000"):
        assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    llmopt.minimize(square, SCHEMA, proposer="random", steps=1, progress=False, mlflow=str(tmp_path / "mlruns"))
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ and "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert only_run(tmp_path / "mlruns", "function").info.status == "FINISHED"


def test_a_server_that_is_not_there_is_one_line_before_anything_is_created(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the user's setting wins: no retries here
    store = tmp_path / "runs.db"
    code = main(["run", "linreg", "--proposer", "random", "--steps", "2", "--store", str(store), "--quiet",
                 "--mlflow", "http://127.0.0.1:9"])  # the discard port: nothing listens
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("llmopt: error: --mlflow http://127.0.0.1:9: ") and err.count("\n") == 1
    assert not store.exists()
    code = main(["run", "linreg", "--proposer", "random", "--store", str(store), "--mlflow", "nosuch://x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("llmopt: error: --mlflow nosuch://x: ") and err.count("\n") == 1


def test_a_run_that_raises_is_failed_in_mlflow_and_its_error_is_raised(tmp_path: Path, capsys) -> None:
    root = tmp_path / "mlruns"
    problem = llmopt.FunctionProblem(square, SCHEMA, description="d", direction="minimize")
    opt = llmopt.Optimizer(problem, llmopt.RandomProposer(), budget=llmopt.Budget(max_steps=3), proposals_per_step=2)

    def run(on_step: Any) -> llmopt.RunResult:
        opt.run(on_step=on_step)
        raise RuntimeError("the loop broke")

    with pytest.raises(RuntimeError, match="the loop broke"):
        run_tracked(opt, Tracking(str(root), "broken"), run, lambda o: None)
    run_ = only_run(root, "broken")
    assert run_.info.status == "FAILED" and run_.data.tags["llmopt.stop_reason"] == "error"
    assert run_.data.tags["llmopt.stop_detail"] == "the loop broke"
    assert [s for s, _ in history(root, run_.info.run_id, "evaluations")] == [0, 1, 2, 3]
    assert "warning" not in capsys.readouterr().err


def test_the_store_tag_is_a_path_or_a_url_as_given() -> None:
    """Where a tracked run's trials are: a SQLite store's absolute path, a PostgreSQL store's URL as is
    (without its password), never a URL made into a path."""
    from types import SimpleNamespace

    from llmopt.experiments.tracking import _store_location
    from llmopt.store.url import StoreURL, redact

    url = StoreURL(redact("postgresql://me:secret@127.0.0.1:5433/grid"))
    assert _store_location(SimpleNamespace(store=SimpleNamespace(path=url))) == "postgresql://me@127.0.0.1:5433/grid"
    assert _store_location(SimpleNamespace(store=SimpleNamespace(path=Path("r.db")))) == os.path.abspath("r.db")
    assert _store_location(SimpleNamespace(store=None)) == "(no store)"
