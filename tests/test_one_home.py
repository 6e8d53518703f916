"""One home for each idea: the optimum and the gap on the problem (direction-aware), best-so-far on
the history, and typed reads from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmopt import Direction, Problem, RunStore, SolutionHistory, Trial, TrialState
from llmopt.experiments.compare import Reference
from llmopt.experiments.report import steps_table, stored_history
from llmopt.experiments.tables import reference_rows
from llmopt.history import running_best
from llmopt.llm.usage import Completion
from llmopt.problem import gap_pct
from llmopt.store import CallRecord
from llmopt.store.export import rows
from problems.linear_regression.problem import LinearRegression
from problems.tsp.instances import random_instance
from problems.tsp.problem import TravellingSalesman


class Accuracy(Problem[int]):
    """A maximized problem whose optimum is known (100)."""

    name = "accuracy"
    direction = Direction.MAXIMIZE

    def __init__(self, optimum: float | None = 100.0) -> None:
        self._optimum = optimum

    @property
    def optimum(self) -> float | None:
        return self._optimum

    def describe(self) -> str:
        return "maximize"

    def answer_format(self) -> str:
        return "a number"

    def encode(self, solution: int) -> str:
        return str(solution)

    def decode(self, text: str) -> int:
        return int(text)

    def score(self, solution: int) -> float:
        return float(solution)

    def initial_solutions(self, rng: np.random.Generator) -> list[int]:
        return [0]

    def random_solution(self, rng: np.random.Generator) -> int:
        return int(rng.integers(100))


# --- the optimum and the gap ------------------------------------------------------------------

def test_gap_is_direction_aware() -> None:
    assert gap_pct(110.0, 100.0, Direction.MINIMIZE) == pytest.approx(10.0)
    assert gap_pct(90.0, 100.0, Direction.MAXIMIZE) == pytest.approx(10.0)  # short of a maximum: positive
    assert gap_pct(100.0, 100.0, "maximize") == 0.0
    assert gap_pct(95.0, 100.0, "minimize") == pytest.approx(-5.0)  # better than a best-known optimum
    assert gap_pct(-90.0, -100.0, Direction.MINIMIZE) == pytest.approx(10.0)  # relative to |optimum|
    assert gap_pct(-110.0, -100.0, Direction.MAXIMIZE) == pytest.approx(10.0)


def test_gap_is_none_when_the_optimum_is_unknown_or_zero() -> None:
    assert gap_pct(5.0, None, Direction.MINIMIZE) is None
    assert gap_pct(5.0, 0.0, Direction.MAXIMIZE) is None


def test_the_problem_owns_its_optimum_and_gap() -> None:
    assert Accuracy().optimum == 100.0 and Accuracy().gap_pct(80.0) == pytest.approx(20.0)
    assert Accuracy(optimum=None).gap_pct(80.0) is None
    assert LinearRegression().optimum is None and LinearRegression().gap_pct(3.0) is None  # not known cheaply
    tsp = TravellingSalesman(random_instance(6, 0), optimum=200.0, optimum_proved=True)
    assert tsp.optimum == 200.0 and tsp.config()["optimum"] == 200.0
    assert tsp.gap_pct(210.0) == pytest.approx(5.0)
    assert TravellingSalesman(random_instance(6, 0)).optimum is None


def test_the_optimum_recorded_with_a_run(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.db") as store:
        known = store.create_run("known", "accuracy", {"direction": "maximize", "problem": {"optimum": 10}}, {})
        unknown = store.create_run("unknown", "linreg", {"direction": "minimize", "problem": {"name": "linreg"}}, {})
        bare = store.create_run("bare", "x", {}, {})
    assert known.optimum == 10.0 and isinstance(known.optimum, float) and known.direction is Direction.MAXIMIZE
    assert unknown.optimum is None and unknown.direction is Direction.MINIMIZE
    assert bare.optimum is None and bare.direction is Direction.MINIMIZE


def test_stored_gaps_follow_the_direction(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.db") as store:
        run = store.create_run("max", "accuracy", {"direction": "maximize", "problem": {"optimum": 10.0}}, {})
        for number, (step, value) in enumerate([(0, 4.0), (1, 8.0), (1, 6.0)]):
            store.add_trial(run.id, Trial(number=number, step=step, state=TrialState.COMPLETE, source="user",
                                          text=str(value), key=value, value=value))
        table = steps_table(store, run)
    assert table[0][-1] == "gap %"
    assert [row[-1] for row in table[1:]] == ["60.00", "20.00"]  # (10 - best) / 10, not the minimizing sign
    refs = {0: [Reference("fixed", 8.0)], 1: [Reference("fixed", 12.0)]}
    [row] = reference_rows(refs, {0: 10.0, 1: 10.0}, Direction.MAXIMIZE)
    assert row["gap %"].startswith("0.00 [-10.00, 10.00]")  # gaps 20 and -20: median 0


# --- best so far ------------------------------------------------------------------------------

def _trial(number: int, step: int, value: float | None, state: TrialState = TrialState.COMPLETE) -> Trial:
    return Trial(number=number, step=step, state=state, source="user", text=str(number), key=number, value=value)


def test_best_so_far_by_step_and_by_evaluation() -> None:
    h = SolutionHistory(Direction.MINIMIZE, [
        _trial(0, 0, 10.0), _trial(1, 0, 12.0), _trial(2, 1, None, TrialState.INVALID), _trial(3, 2, 11.0),
        _trial(4, 2, 4.0), _trial(5, 3, 6.0)])
    assert h.best_so_far() == h.best_so_far("step") == [(0, 10.0), (1, 10.0), (2, 4.0), (3, 4.0)]
    assert h.best_so_far("evaluation") == [(1, 10.0), (2, 10.0), (3, 10.0), (4, 4.0), (5, 4.0)]
    with pytest.raises(ValueError, match="expected 'step' or 'evaluation'"):
        h.best_so_far("seconds")


def test_best_so_far_maximizing_and_before_anything_is_scored() -> None:
    h = SolutionHistory(Direction.MAXIMIZE, [_trial(0, 0, None, TrialState.FAILED), _trial(1, 1, 3.0),
                                             _trial(2, 1, 7.0), _trial(3, 2, 5.0)])
    assert h.best_so_far("step") == [(0, None), (1, 7.0), (2, 7.0)]
    assert h.best_so_far("evaluation") == [(1, 3.0), (2, 7.0), (3, 7.0)]
    assert SolutionHistory(Direction.MINIMIZE).best_so_far("evaluation") == []


def test_running_best_of_plain_values() -> None:
    assert running_best([None, 5.0, 7.0, None, 2.0], Direction.MINIMIZE) == [None, 5.0, 5.0, 5.0, 2.0]
    assert running_best([5.0, 7.0, 2.0], "maximize") == [5.0, 7.0, 7.0]
    assert running_best([], Direction.MAXIMIZE) == []


# --- typed store reads ------------------------------------------------------------------------

@pytest.fixture()
def store(tmp_path: Path) -> Any:
    with RunStore(tmp_path / "typed.db") as s:
        run = s.create_run("r", "linreg", {"direction": "minimize", "problem": {"name": "linreg"}}, {})
        s.add_trial(run.id, Trial(number=0, step=0, state=TrialState.COMPLETE, source="start", text="w=1, b=2",
                                  key=(1, 2), value=9.5))
        s.add_trial(run.id, Trial(number=1, step=1, state=TrialState.INVALID, source="llm:m", raw="no pair",
                                  error="no (w, b) pair found"))
        s.add_trial(run.id, Trial(number=2, step=1, state=TrialState.DUPLICATE, source="llm:m", text="w=1, b=2",
                                  key=(1, 2), raw="[1, 2]", duplicate_of=0))
        s.add_trial(run.id, Trial(number=3, step=1, state=TrialState.COMPLETE, source="llm:m", text="w=3, b=4",
                                  key=(3, 4), value=1.25, raw="[3, 4]"))
        s.add_call(run.id, 1, 1, "m", Completion(seed=7, text="no pair", prompt_tokens=10, completion_tokens=3,
                                                 cost_usd=0.5, latency_s=0.25))
        s.add_call(run.id, 3, 1, "m", Completion(seed=8, text="[3, 4]", prompt_tokens=11, completion_tokens=4,
                                                 cache_hit=True, cache_key="k"))
        s.add_call(run.id, 3, 1, "scorer", Completion(seed=9, text=None, error="boom"), role="scorer", item=2)
        yield s


def test_trials_are_typed_and_filtered_by_state(store: RunStore) -> None:
    run = store.get_run("r")
    trials = store.trials(run.id)
    assert all(isinstance(t, Trial) for t in trials) and [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.INVALID, TrialState.DUPLICATE,
                                         TrialState.COMPLETE]
    first, invalid, duplicate, last = trials
    assert (first.step, first.source, first.text, first.value, first.key) == (0, "start", "w=1, b=2", 9.5, "(1, 2)")
    assert first.solution is None  # decoding is the problem's
    assert (invalid.raw, invalid.error, invalid.value) == ("no pair", "no (w, b) pair found", None)
    assert duplicate.duplicate_of == 0 and last.raw == "[3, 4]" and last.ok
    complete = store.trials(run.id, states=[TrialState.COMPLETE])
    assert [t.number for t in complete] == [0, 3] and all(t.state is TrialState.COMPLETE for t in complete)
    assert [t.number for t in store.trials(run.id, states={TrialState.INVALID, TrialState.DUPLICATE})] == [1, 2]
    assert store.trials(run.id, states=[]) == [] and store.trials(run.id + 1) == []


def test_a_stored_history_ranks_stored_trials(store: RunStore) -> None:
    history = stored_history(store, store.get_run("r"))
    assert history.best().number == 3 and history.best_so_far() == [(0, 9.5), (1, 1.25)]


def test_calls_are_typed_and_filtered_by_role(store: RunStore) -> None:
    run = store.get_run("r")
    calls = store.calls(run.id)
    assert all(isinstance(c, CallRecord) for c in calls)
    assert [(c.number, c.role, c.item) for c in calls] == [(1, "optimizer", 0), (3, "optimizer", 0), (3, "scorer", 2)]
    first, cached, failed = calls
    assert (first.seed, first.model, first.prompt_tokens, first.completion_tokens, first.cost_usd, first.latency_s,
            first.cache_hit, first.error) == (7, "m", 10, 3, 0.5, 0.25, False, None)
    assert cached.cache_hit is True and cached.cache_key == "k" and cached.cost_usd is None
    assert failed.error == "boom" and failed.step == 1 and failed.created > 0
    assert [c.seed for c in store.calls(run.id, role="scorer")] == [9]
    assert [c.seed for c in store.calls(run.id, role="optimizer")] == [7, 8]
    usage = store.usage(run.id)
    assert (usage.calls, usage.cache_hits, usage.failed_calls) == (3, 1, 1)


def test_export_keeps_every_stored_column(store: RunStore) -> None:
    trials = rows(store, "trials")
    assert list(trials[0]) == ["run", "number", "step", "state", "source", "text", "key", "value", "raw", "error",
                               "duplicate_of", "created", "metrics", "parents"]
    assert [t["state"] for t in trials] == ["COMPLETE", "INVALID", "DUPLICATE", "COMPLETE"]
    calls = rows(store, "calls")
    assert list(calls[0]) == ["run", "number", "role", "item", "step", "model", "seed", "cache_key", "prompt_tokens",
                              "completion_tokens", "cost_usd", "latency_s", "cache_hit", "error", "created", "choice",
                              "cached_tokens", "prompt"]
    assert [c["cache_hit"] for c in calls] == [0, 1, 0]  # as stored
    with pytest.raises(ValueError, match="unknown table"):
        store.records("runs; DROP TABLE runs", store.get_run("r").id)
