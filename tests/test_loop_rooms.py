"""The loop's rooms, each on its own: the validation scheduler (llmopt.validation) with a stub
problem, and the recorder (llmopt.recording), null without a store and a stored run's one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmopt import Budget, Optimizer, RandomProposer, RunStore, TrialState
from llmopt.history import SolutionHistory, Trial
from llmopt.problem import Direction, Evaluation
from llmopt.recording import NullRecorder, RunRecorder, RunSpec, open_recorder
from llmopt.store import ValidationRecord
from llmopt.validation import ValidationScheduler, ValidationSettings
from problems.linear_regression.problem import LinearRegression


class StubProblem:
    """What the scheduler uses of a problem: a direction, a validation split, a validation score."""

    name, direction, has_validation = "stub", Direction.MAXIMIZE, True

    def __init__(self) -> None:
        self.validated: list[Any] = []

    def evaluate_validation(self, solution: Any) -> Evaluation:
        self.validated.append(solution)
        if solution == "boom":
            raise RuntimeError("no split today")
        return Evaluation(100.0 - solution)


def _scheduler(every: int | None = 2, top: int | None = 2, patience: int | None = None, spent: list[bool] | None = None):
    problem, history, rows = StubProblem(), SolutionHistory(Direction.MAXIMIZE), []

    def record(step: int, number: int, value: float | None, error: str | None) -> ValidationRecord:
        rows.append(ValidationRecord(step, number, value, error))
        return rows[-1]

    scheduler = ValidationScheduler(ValidationSettings(every, top, patience), problem, history,  # type: ignore[arg-type]
                                    record=record, account=lambda *call: None,
                                    out_of_spend=lambda: bool(spent and spent[0]))
    return scheduler, problem, history, rows


def _add(history: SolutionHistory, number: int, step: int, value: float, solution: Any = None) -> None:
    history.append(Trial(number=number, step=step, state=TrialState.COMPLETE, source="t", value=value,
                         solution=number if solution is None else solution, key=number))


def test_every_k_steps_the_top_are_validated_once_each() -> None:
    scheduler, problem, history, rows = _scheduler(every=2, top=2)
    _add(history, 0, 0, 1.0)
    _add(history, 1, 0, 3.0)
    _add(history, 2, 0, 2.0)
    scheduler.step_finished(0)
    assert [(r.step, r.number, r.value) for r in rows] == [(0, 1, 99.0), (0, 2, 98.0)]  # best first
    _add(history, 3, 1, 5.0)
    scheduler.step_finished(1)  # not due
    assert len(rows) == 2
    scheduler.step_finished(2)
    assert [(r.step, r.number) for r in rows[2:]] == [(2, 3), (2, 1)]
    assert problem.validated == [1, 2, 3]  # trial 1's score was reused at step 2, not scored again
    assert scheduler.validated(1) and not scheduler.validated(0)


def test_out_of_spend_leaves_the_step_due_until_there_is_budget() -> None:
    spent = [True]
    scheduler, _, history, rows = _scheduler(every=1, top=1, spent=spent)
    _add(history, 0, 0, 1.0)
    scheduler.step_finished(0)
    assert rows == []
    spent[0] = False
    scheduler.run_due()
    assert [(r.step, r.number) for r in rows] == [(0, 0)]


def test_a_validation_that_raises_is_an_error_row() -> None:
    scheduler, _, history, rows = _scheduler(every=1, top=None)
    _add(history, 0, 0, 1.0, solution="boom")
    scheduler.step_finished(0)
    assert rows[0].value is None and rows[0].error == "validation raised RuntimeError: no split today"


def test_stall_says_why_once_patience_runs_out() -> None:
    scheduler, _, history, _ = _scheduler(every=1, top=1, patience=2)
    _add(history, 0, 0, 1.0)  # validation 100 - 0 = 100, never beaten below
    for step in range(3):
        assert scheduler.stall() is None
        _add(history, step + 1, step, 0.5)
        scheduler.step_finished(step)
    assert scheduler.stall() == "validation accuracy has not improved in 2 evaluations (best 100 at step 0)"


def test_a_resumed_schedule_checks_its_finished_due_steps_again() -> None:
    scheduler, problem, history, rows = _scheduler(every=2, top=1)
    _add(history, 0, 0, 1.0)
    _add(history, 1, 2, 2.0)
    scheduler.load([ValidationRecord(0, 0, 100.0)], finished_steps=[0, 1, 2])
    scheduler.run_due()  # step 0 is complete; step 2 was cut short
    assert [(r.step, r.number) for r in rows] == [(2, 1)] and problem.validated == [1]


@pytest.mark.parametrize("settings, message", [
    (dict(every=None, patience=3), "validation_patience needs validate_every"),
    (dict(every=0), "validate_every must be an integer >= 1"),
    (dict(every=True), "validate_every must be an integer >= 1"),
    (dict(every=2, top=0), "validate_top must be an integer >= 1 or None"),
    (dict(every=2, patience=0), "validation_patience must be an integer >= 1"),
])
def test_bad_validation_settings_are_one_line(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidationSettings(**settings)


def test_validating_a_problem_without_a_split_is_refused() -> None:
    problem = StubProblem()
    problem.has_validation = False
    with pytest.raises(ValueError, match="has no validation split"):
        ValidationSettings(every=1).check(problem)  # type: ignore[arg-type]
    ValidationSettings().check(problem)  # type: ignore[arg-type]  # not validating: nothing to refuse


def test_without_a_store_the_optimizer_holds_a_null_recorder() -> None:
    opt = Optimizer(LinearRegression(seed=0), RandomProposer(), budget=Budget(max_steps=2))
    assert type(opt.recorder) is NullRecorder and opt.run_record is None and opt.name is None
    result = opt.run()
    assert result.name is None and result.steps == 2
    assert NullRecorder().validation(3, 4, None, "x") == ValidationRecord(3, 4, None, "x")
    spec = RunSpec(LinearRegression(seed=0), RandomProposer(), 0, dict)
    with pytest.raises(ValueError, match="resume=True needs a store"):
        open_recorder(None, None, True, spec)


def test_a_stored_run_is_recorded_and_loaded_back_by_its_recorder(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    opt = Optimizer(LinearRegression(seed=0), RandomProposer(), store=store, name="r", budget=Budget(max_steps=2))
    assert isinstance(opt.recorder, RunRecorder) and opt.recorder.load() is None  # a new run: nothing to load
    first = opt.run()
    again = Optimizer(LinearRegression(seed=0), RandomProposer(), store=store, name="r", resume=True,
                      budget=Budget(max_steps=2))
    loaded = again.recorder.load()
    assert loaded is not None and sorted(t.number for t in loaded.trials) == sorted(t.number for t in first.history)
    assert [s.step for s in loaded.steps] == [0, 1, 2] and all(s.finished for s in loaded.steps)
    assert loaded.trials[0].solution is not None  # decoded again from the stored text
    assert again.result().best == first.best and again.step == 2
    store.close()
