"""Validation during a run (the OPRO paper's Section 4, Figure 11): every K steps the top solutions
by training score are scored on a validation split; the run can stop early on it and its chosen
solution is the best on validation.

The toy task (tests/validation_toy.py) overfits on purpose: its best instruction on training is
among its worst on validation.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import harness
import pytest
from datadir import data_dir
from harness import VALIDATION_RUN
from openai_server import OpenAIServer
from validation_toy import NO_VALIDATION, PLAN, START, optimizer_llm, toy_problem

from llmopt import Budget, LLMProposer, Optimizer, RunStore, StopReason, TrialState
from llmopt.cli import main
from llmopt.experiments.plot import overfitting_curves
from llmopt.experiments.report import format_table, run_summary
from llmopt.history import SolutionHistory, Trial
from llmopt.problem import Direction
from llmopt.store import StoreError, ValidationRecord
from llmopt.validation import chosen_number, evaluations, stalled
from problems.linear_regression.problem import LinearRegression
from problems.prompt_optimization.data import load_task

TRAINING = {START: 25.0, **{text: 12.5 * int(text.split()[1]) for text in PLAN}}
VALIDATION = {START: 25.0, **{text: 12.5 * int(text.split()[3]) for text in PLAN}}


def toy_run(tmp_path: Path | None = None, *, steps: int = 5, name: str = "r", problem=None, **options):
    """The toy run, one proposal a step (so PLAN is proposed in order), in a store if given."""
    problem = problem or toy_problem()[0]
    store = RunStore(tmp_path / "runs.db") if tmp_path is not None else None
    budget = options.pop("budget", Budget(max_steps=steps))
    opt = Optimizer(problem, LLMProposer(optimizer_llm(), structured="off"), seed=0, store=store, name=name,
                    proposals_per_step=1, max_rounds=1, budget=budget, **options)
    return opt, store


def expected_rows(history: SolutionHistory, steps: list[int], top: int | None) -> list[tuple[int, int, float]]:
    """What the rows must be: at each step, the top solutions by training score among steps up to it."""
    out = []
    for step in steps:
        scored = sorted((t for t in history if t.ok and t.step <= step), key=lambda t: (-t.value, t.number))
        for t in scored[:top]:
            out.append((step, t.number, VALIDATION[t.text]))
    return sorted(out)


# --- what is recorded -----------------------------------------------------------------------------

def test_every_k_steps_the_top_n_are_scored_on_validation_and_recorded(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=5, validate_every=2, validate_top=3)
    result = opt.run()
    assert result.steps == 5 and result.stop_reason is StopReason.MAX_STEPS
    rows = [(r.step, r.number, r.value) for r in result.validations]
    assert rows == expected_rows(result.history, [0, 2, 4], 3) and len(rows) == 1 + 3 + 3
    assert {r.step for r in result.validations} == {0, 2, 4}  # step 0 (the start) included, not 1, 3, 5
    assert store.validations(opt.run_record.id) == list(result.validations)
    validated = {r.number for r in result.validations}
    calls = store.calls(opt.run_record.id, role="validation")
    assert sorted((c.number, c.item) for c in calls) == [(n, i) for n in sorted(validated) for i in range(8)]
    assert all(c.step in (0, 2, 4) for c in calls)
    assert result.usage_by_role["validation"].calls == 8 * len(validated) < 8 * len(result.validations)
    assert store.usage(opt.run_record.id).calls == result.usage.calls == sum(
        u.calls for u in result.usage_by_role.values())
    assert opt.config()["validation"] == {"every": 2, "top": 3, "patience": None}
    store.close()


def test_validate_top_all_scores_every_solution_so_far(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=3, validate_every=1, validate_top=None)
    result = opt.run()
    assert [(r.step, r.number, r.value) for r in result.validations] == expected_rows(result.history, [0, 1, 2, 3],
                                                                                      None)
    assert len(result.validations) == 1 + 2 + 3 + 4
    assert result.usage_by_role["validation"].calls == 8 * 4  # each solution scored once, then its score reused
    assert opt.config()["validation"]["top"] is None
    store.close()


def test_a_run_without_validation_records_none_and_its_config_is_unchanged(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=2)
    result = opt.run()
    assert result.validations == () and store.validations(opt.run_record.id) == []
    assert "validation" not in opt.config() and "validation" not in result.usage_by_role
    assert result.chosen == result.best
    assert not any("chosen" in str(row[0]) for row in run_summary(result, opt.problem))
    store.close()


def test_failed_validation_calls_are_an_error_row_not_a_score(tmp_path: Path) -> None:
    problem, _ = toy_problem(fail=True)
    opt, store = toy_run(tmp_path, steps=3, problem=problem, validate_every=1, validate_top=3)
    result = opt.run()
    failed = [r for r in result.validations if r.value is None]
    six = next(t.number for t in result.history if t.text == "train 6 val 3")
    assert failed and {r.number for r in failed} == {six}
    assert all("8 of 8 validation calls failed: " in r.error and "scorer down" in r.error for r in failed)
    assert result.chosen.text == "train 4 val 6"
    assert result.history.get(six).state is TrialState.COMPLETE  # its training score stands
    store.close()


# --- budgets --------------------------------------------------------------------------------------

def test_validation_calls_count_in_the_call_budget(tmp_path: Path) -> None:
    results = {}
    for every in (None, 1):
        (tmp_path / f"s{every}").mkdir()
        opt, store = toy_run(tmp_path / f"s{every}", name="b", validate_every=every,
                             budget=Budget(max_steps=50, max_calls=60))
        results[every] = opt.run()
        assert results[every].stop_reason is StopReason.MAX_CALLS
        assert store.usage(opt.run_record.id).calls == results[every].usage.calls
        store.close()
    plain, validated = results[None], results[1]
    assert validated.steps < plain.steps  # the validation's calls used the budget up sooner
    assert validated.usage_by_role["validation"].calls > 0
    assert validated.usage.calls == sum(u.calls for u in validated.usage_by_role.values())


def test_validation_is_not_started_once_the_budget_is_used_up_and_a_larger_one_does_it_first(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, validate_every=1, budget=Budget(max_steps=50, max_calls=9))
    result = opt.run()  # step 0: the start's 8 scorer calls, its validation (8 more), then the limit
    assert result.stop_reason is StopReason.MAX_CALLS and result.steps == 0
    assert [(r.step, r.number) for r in result.validations] == [(0, 0)] and result.usage.calls == 16
    store.close()
    opt, store = toy_run(tmp_path, name="tight", validate_every=1, budget=Budget(max_steps=50, max_calls=8))
    result = opt.run()  # the start's scoring used the budget up: no validation is started
    assert result.stop_reason is StopReason.MAX_CALLS and result.validations == () and result.usage.calls == 8
    store.close()
    opt, store = toy_run(tmp_path, name="tight", resume=True, validate_every=1, budget=Budget(max_steps=1))
    result = opt.run()  # a larger budget: step 0's validation first, then step 1 and its own
    assert [(r.step, r.number) for r in result.validations] == [(0, 0), (1, 0), (1, 1)]
    assert [c.step for c in store.calls(opt.run_record.id, role="validation")] == [0] * 8 + [1] * 8
    store.close()


# --- early stopping and the chosen solution --------------------------------------------------------

def test_early_stop_on_validation_names_the_reason(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=10, validate_every=1, validate_top=2, validation_patience=2)
    result = opt.run()
    assert result.stop_reason is StopReason.VALIDATION and StopReason.VALIDATION.value == "validation"
    assert result.stop_detail == "validation accuracy has not improved in 2 evaluations (best 75 at step 1)"
    assert result.steps == 3  # evaluations at steps 2 and 3 did not beat step 1's 75
    run = store.get_run("r")
    assert (run.stop_reason, run.stop_detail) == ("validation", result.stop_detail)
    store.close()


def test_training_patience_is_unchanged_by_validation() -> None:
    opt, _ = toy_run(None, budget=Budget(max_steps=10, patience=2), validate_every=1)
    result = opt.run()
    assert result.stop_reason is StopReason.PATIENCE  # training improves through step 4, then stalls


def test_the_chosen_solution_is_the_best_on_validation(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=5, validate_every=1, validate_top=2)
    result = opt.run()
    assert result.best.text == "train 8 val 1" and result.best.value == 100.0
    assert result.chosen.text == "train 4 val 6"
    assert opt.validation_scores()[result.chosen.number] == 75.0
    summary = format_table(run_summary(result, opt.problem), header=False)
    assert re.search(r"chosen \(best on validation\)  train 4 val 6  \(validation 75, training 50, trial #1, step 1\)",
                     summary)
    store.close()


def test_ties_on_validation_go_to_the_better_training_score_then_the_earlier_trial() -> None:
    rows = [ValidationRecord(2, n, v) for n, v in ((3, 80.0), (5, 80.0), (7, 80.0), (9, None), (1, 60.0))]
    assert chosen_number(rows, {3: 50.0, 5: 70.0, 7: 70.0, 1: 99.0}, Direction.MAXIMIZE) == 5
    assert chosen_number(rows, {3: 50.0, 5: 70.0, 7: 70.0, 1: 99.0}, Direction.MINIMIZE) == 1
    assert chosen_number([ValidationRecord(0, 4, None, "failed")], {4: 1.0}, Direction.MAXIMIZE) is None
    points = evaluations(rows + [ValidationRecord(4, 3, 80.0), ValidationRecord(6, 9, 90.0)], Direction.MAXIMIZE)
    assert [(p.step, p.best, p.best_so_far, p.best_so_far_step) for p in points] == [
        (2, 80.0, 80.0, 2), (4, 80.0, 80.0, 2), (6, 90.0, 90.0, 6)]
    assert not stalled(points, 1) and stalled(points[:2], 1) and not stalled(points[:2], 2)


# --- refused settings -------------------------------------------------------------------------------

def test_a_problem_without_validation_is_refused_with_the_fix() -> None:
    problem, _ = toy_problem(NO_VALIDATION)
    assert not problem.has_validation and toy_problem()[0].has_validation
    for p in (problem, LinearRegression(seed=0)):
        with pytest.raises(ValueError) as caught:
            toy_run(None, problem=p, validate_every=1)
        message = str(caught.value)
        assert "--validation-fraction F gives the task a validation split" in message and "\n" not in message
    with pytest.raises(NotImplementedError, match="no validation split"):
        LinearRegression(seed=0).evaluate_validation((1, 2))
    with pytest.raises(ValueError, match="validation_patience needs validate_every"):
        toy_run(None, validation_patience=2)
    for bad in ({"validate_every": 0}, {"validate_every": 1, "validate_top": 0}):
        with pytest.raises(ValueError, match=">= 1"):
            toy_run(None, **bad)


def test_resume_keeps_validation_settings_but_may_change_the_patience(tmp_path: Path) -> None:
    opt, store = toy_run(tmp_path, steps=2, validate_every=1, validate_top=2)
    opt.run()
    store.close()
    with pytest.raises(StoreError, match="different settings: validation.top: 2 -> 3"):
        toy_run(tmp_path, steps=4, resume=True, validate_every=1, validate_top=3)
    with pytest.raises(StoreError, match="validation: "):
        toy_run(tmp_path, steps=4, resume=True)
    opt, store = toy_run(tmp_path, steps=10, resume=True, validate_every=1, validate_top=2, validation_patience=2)
    result = opt.run()
    assert result.stop_reason is StopReason.VALIDATION and result.steps == 3
    store.close()


# --- a killed run loses nothing and repeats nothing ---------------------------------------------------

def run_script(store: Path, *args: str) -> subprocess.CompletedProcess:
    return harness.run_script(store, *args, script=VALIDATION_RUN)


def snapshot(path: Path) -> dict:
    with RunStore(path) as store:
        run = store.get_run("run")
        return {"trials": [(t.number, t.step, t.state, t.text, t.value) for t in store.trials(run.id)],
                "calls": [(c.number, c.role, c.item, c.step, c.seed, c.prompt_tokens, c.completion_tokens)
                          for c in store.calls(run.id)],
                "validations": [(v.step, v.number, v.value, v.error) for v in store.validations(run.id)],
                "steps": [(s.step, s.finished) for s in store.steps(run.id)],
                "run": (run.status, run.stop_reason)}


@pytest.fixture(scope="module")
def reference(reference_run) -> tuple[dict, str]:
    """The uninterrupted validation run (one per session): its snapshot and what it printed."""
    path, out = reference_run(script=VALIDATION_RUN)
    return snapshot(path), out


@pytest.mark.parametrize("kill_at", ["finish_step:1", "finish_step:3", "finish_step:5", "add_validation:2",
                                     "add_validation:5", "77", "110"])
def test_sigkill_then_resume_gives_the_same_validations(tmp_path: Path, reference: tuple[dict, str],
                                                       kill_at: str) -> None:
    store = tmp_path / "runs.db"
    killed = run_script(store, "--kill-at", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = snapshot(store)
    resumed = run_script(store, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after, (ref, ref_out) = snapshot(store), reference
    assert set(before["validations"]) <= set(after["validations"])  # nothing recorded was lost or changed
    assert after == ref  # same trials, calls (each once), validations and stop as an uninterrupted run
    assert resumed.stdout == ref_out  # same stop, steps, rows and usage in memory (nothing counted twice)


def test_the_kill_points_fall_where_they_should(tmp_path: Path) -> None:
    """finish_step:3 is the write that finishes step 2, whose validation is due (every 2 steps):
    the killed run has no row at step 2, the resumed run does it first."""
    store = tmp_path / "runs.db"
    assert run_script(store, "--kill-at", "finish_step:3").returncode == -signal.SIGKILL
    before = snapshot(store)
    assert before["steps"][-1] == (2, True) and {v[0] for v in before["validations"]} == {0}
    assert run_script(store, "--resume").returncode == 0
    assert {v[0] for v in snapshot(store)["validations"]} == {0, 2, 4, 6}


# --- the command line -------------------------------------------------------------------------------

DATA = str(data_dir())
KEY_ENV = "LLMOPT_TEST_FAKE_KEY"
SPLIT = dict(train_fraction=0.2, validation_fraction=0.04, max_train=4)
TASK_ARGS = ["--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "4", "--validation-fraction", "0.04"]
HTTP_PLAN = ["Memorize the answers.", "Look twice before you answer.", "Answer now.", "Guess."]


def http_server_script() -> tuple:
    task = load_task("bbh/navigate", DATA, **SPLIT)
    train = {ex.question: ex.answer for ex in task.train}
    answers = {ex.question: ex.answer for ex in task.examples("all")}
    first = task.train[0].question

    def serve(prompt: str, seed: int) -> str:
        """The optimizer proposes HTTP_PLAN in order; the scorer is right on the training questions
        when told to memorize (and nowhere else), and everywhere but on one training question when
        told to look twice: memorizing is best on training (100), looking twice (75) on validation."""
        if "generate the instruction <INS>" in prompt:
            return f"<INS>{HTTP_PLAN[(prompt.count(chr(10) + 'score:' + chr(10)) - 1) % len(HTTP_PLAN)]}</INS>"
        question = next(q for q in answers if q in prompt)
        if "memorize" in prompt.lower() and question in train:
            return f"The answer is {train[question]}."
        if "look twice" in prompt.lower() and question != first:
            return f"The answer is {answers[question]}."
        return "Maybe."

    return serve, task


@pytest.fixture()
def http(openai_server) -> tuple:
    """The loopback server of http_server_script (its key in $LLMOPT_TEST_FAKE_KEY) and the task."""
    serve, task = http_server_script()
    return openai_server(serve), task


def model_args(server: OpenAIServer) -> list[str]:
    return ["--model", "openai/opt", "--api-base", server.api_base, "--api-key-env", KEY_ENV, "--structured", "off",
            "--scorer", "openai/scorer", "--scorer-api-base", server.api_base, "--scorer-api-key-env", KEY_ENV]


def test_command_line_run_show_plot_and_evaluate(http, tmp_path: Path, capsys) -> None:
    server, task = http
    assert len(task.validation) == 10 and len(task.train) == 4
    store = str(tmp_path / "p.db")
    code = main(["run", "prompt", *TASK_ARGS, "--steps", "6", "--proposals", "1", "--max-rounds", "1",
                 "--eval-every", "1", "--validate-top", "2", "--early-stop", "validation", "--patience", "3",
                 "--store", store, "--name", "v", *model_args(server)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "10 validation" in captured.err and re.search(r"validation openai/scorer: <= \d+ calls", captured.err)
    out = captured.out
    assert "stopped by                   validation: validation accuracy has not improved in 3 evaluations " \
           "(best 100 at step 2)" in out
    assert re.search(r"best +Memorize the answers\.  \(value 100, step 1\)", out)
    assert re.search(r"chosen \(best on validation\)  Look twice before you answer\.  \(validation 100, training 75, "
                     r"trial #2, step 2\)", out)
    assert re.search(r"  validation +\d+ \(0 cached, 0 failed\)", out)
    with RunStore(store, readonly=True) as s:
        run = s.get_run("v")
        rows = s.validations(run.id)
        assert run.config["validation"] == {"every": 1, "top": 2, "patience": 3}
        assert run.config["budget"]["patience"] is None  # --patience went to the validation rule
        assert {r.step for r in rows} == {0, 1, 2, 3, 4, 5} and len(s.calls(run.id, role="validation")) == 10 * 3

    assert main(["show", "v", "--store", store]) == 0
    shown = capsys.readouterr().out
    assert "validation (every 1 steps, the top 2 by training score):" in shown
    assert re.search(r"2 +#2 +75 +100 +100 \(step 2\) +Look twice before you answer\.", shown)
    assert re.search(r"1 +#1 +100 +0 +0 \(step 0\) +Memorize the answers\.", shown)
    assert "chosen (best on validation): #2 Look twice before you answer.  (validation 100, training 75, step 2)" \
        in shown

    out_dir = tmp_path / "figures"
    assert main(["plot", "--store", store, "v", "--out", str(out_dir), "--x", "step"]) == 0
    assert "prompt-overfitting.png" in capsys.readouterr().out
    assert (out_dir / "prompt-overfitting.png").stat().st_size > 5000 and (out_dir / "prompt-overfitting.svg").exists()

    assert main(["evaluate", "--run", "v", "--data-dir", DATA, "--max-examples", "8", "--top", "1", "--no-baselines",
                 "--store", store, "--quiet", "--scorer", "openai/scorer", "--scorer-api-base", server.api_base,
                 "--scorer-api-key-env", KEY_ENV]) == 0
    table = capsys.readouterr().out
    assert re.search(r"v chosen: best on validation \(100\.0, train 75\.0\) +'Look twice before you answer\.' +"
                     r"bbh/navigate +test +8 +100\.0", table)
    assert re.search(r"v #1 \(train 100\.0\) +'Memorize the answers\.' .* test +8 +0\.0", table)


def test_show_of_a_run_without_validations_is_unchanged(tmp_path: Path, capsys) -> None:
    opt, store = toy_run(tmp_path, steps=1)
    opt.run()
    store.close()
    assert main(["show", "r", "--store", str(tmp_path / "runs.db")]) == 0
    assert "validation" not in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--early-stop", "validation", "--patience", "2"], "--early-stop validation needs --eval-every K"),
    (["--eval-every", "1", "--early-stop", "validation"], "--early-stop validation needs --patience P"),
    (["--eval-every", "2"], "--validation-fraction F gives the task a validation split"),
])
def test_bad_validation_options_are_one_line_before_anything_is_spent(extra: list[str], message: str,
                                                                       tmp_path: Path, capsys) -> None:
    task = ["--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "4"]
    if "--early-stop" in extra:
        task += ["--validation-fraction", "0.04"]
    store = tmp_path / "p.db"
    assert main(["run", "prompt", *task, *extra, "--steps", "1", "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not store.exists()


def test_validate_top_accepts_all_and_refuses_nonsense(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "prompt", "--task", "bbh/navigate", "--validate-top", "some", "--store", str(tmp_path / "p.db")])
    assert "expected a whole number >= 1 or 'all', got 'some'" in capsys.readouterr().err


def test_the_estimate_counts_validation_calls(tmp_path: Path, capsys) -> None:
    code = main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--validation-fraction", "0.04",
                 "--eval-every", "1", "--steps", "3", "--max-calls", "1300", "--store", str(tmp_path / "p.db")])
    err = capsys.readouterr().err
    assert code == 2 and "validation local/smollm2: <= 120 calls" in err  # 4 validations x top 3 x 10 examples
    assert "the run may make up to 1442 calls" in err  # 1250 scorer + 72 optimizer + 120 validation


# --- the figure's numbers ------------------------------------------------------------------------------

def test_overfitting_curves_follow_the_top_solution_by_training() -> None:
    trials = [Trial(number=n, step=n, state=TrialState.COMPLETE, source="llm", text=t, key=t, value=TRAINING[t])
              for n, t in enumerate([START, *PLAN[:3]])]
    history = SolutionHistory(Direction.MAXIMIZE, trials)
    rows = [ValidationRecord(s, n, VALIDATION[trials[n].text]) for s, n in ((0, 0), (1, 0), (1, 1), (2, 1), (2, 2),
                                                                          (3, 2), (3, 3))]
    curves = overfitting_curves(history, rows)
    assert curves == {"step": [0.0, 1.0, 2.0, 3.0], "training": [25.0, 50.0, 75.0, 87.5],
                      "validation": [25.0, 75.0, 37.5, 25.0], "best_validation": [25.0, 75.0, 75.0, 37.5]}


def test_export_writes_the_validations(tmp_path: Path, capsys) -> None:
    opt, store = toy_run(tmp_path, steps=2, validate_every=1, validate_top=1)
    opt.run()
    store.close()
    assert main(["export", "--store", str(tmp_path / "runs.db"), "--table", "validations", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["run,step,number,value,error", "r,0,0,25.0,", "r,1,1,75.0,", "r,2,2,37.5,"]
