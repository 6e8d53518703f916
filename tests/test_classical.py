"""The classical proposers (optuna's TPE and CMA-ES) on the same loop: the search space, the store,
reproducibility in another process, and a resumed run that proposes what the uninterrupted one did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmopt import Budget, Optimizer, OptunaProposer, RunStore, TrialState
from llmopt.cli import main
from llmopt.optimizer import default_run_name
from llmopt.problem import Direction, ParseError, Problem
from llmopt.space import draw
from problems.linear_regression.problem import LinearRegression

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ("tpe", "cmaes")
FIELDS = ("number", "step", "state", "source", "text", "value", "duplicate_of", "error")


def linreg(**kw: Any) -> LinearRegression:
    return LinearRegression(w_true=15, b_true=14, random_range=(-50, 50), seed=1, **kw)


def optimizer(problem: Problem, algorithm: str, steps: int, **kw: Any) -> Optimizer:
    return Optimizer(problem, OptunaProposer(algorithm), seed=kw.pop("seed", 1),
                     budget=Budget(max_steps=steps, stop_when_solved=False), **kw)


def rows(trials: Any) -> list[tuple]:
    """The trials by number (a history holds them in recording order: a duplicate before the scores)."""
    return [tuple(getattr(t, f) for f in FIELDS) for t in sorted(trials, key=lambda t: t.number)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_run_stays_in_the_box_and_improves_on_the_starts(tmp_path: Path, algorithm: str) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        result = optimizer(linreg(), algorithm, 12, store=store).run()
        stored = store.trials(store.get_run(result.name).id)
    assert result.name == f"linreg-optuna-{algorithm}-seed1"
    own = [t for t in result.history if t.source == f"optuna:{algorithm}"]
    per_step = 8 if algorithm == "tpe" else 6  # CMA-ES: a step is one generation (popsize 6 in 2-D)
    assert len(own) >= 12 * per_step and {t.step for t in own} == set(range(1, 13))
    if algorithm == "cmaes":  # no redraws: a repeated point is told the value it repeats
        assert all(sum(1 for t in own if t.step == s) == 6 for s in range(1, 13))
    assert all(-50 <= v <= 50 for t in own for v in t.solution)
    assert {t.state for t in own} <= {TrialState.COMPLETE, TrialState.DUPLICATE}  # integer rounding repeats
    start_best = min(t.value for t in result.history if t.source == "start" and t.ok)
    own_first = min(t.value for t in own if t.ok and t.step == 1)
    own_best = min(t.value for t in own if t.ok)
    assert own_best < start_best / 2 and own_best < own_first / 10  # it learns, from the warm start too
    assert rows(stored) == rows(result.history)
    with RunStore(tmp_path / "runs.db") as store:
        config = store.get_run(result.name).config["proposer"]
    assert config["kind"] == "optuna" and config["algorithm"] == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_trials_in_this_process_and_another(algorithm: str) -> None:
    first = optimizer(linreg(), algorithm, 5).run().history
    again = optimizer(linreg(), algorithm, 5).run().history
    assert rows(first) == rows(again)
    other = optimizer(linreg(), algorithm, 5, seed=2).run().history
    assert [t.key for t in other] != [t.key for t in first]
    code = ("import json; from llmopt import Budget, Optimizer, OptunaProposer\n"
            "from problems.linear_regression.problem import LinearRegression\n"
            "p = LinearRegression(w_true=15, b_true=14, random_range=(-50, 50), seed=1)\n"
            f"r = Optimizer(p, OptunaProposer({algorithm!r}), seed=1, budget=Budget(max_steps=5, "
            "stop_when_solved=False)).run()\n"
            "print(json.dumps([[t.number, t.state.value, list(t.key)] for t in r.history]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONHASHSEED="random", PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[t.number, t.state.value, list(t.key)] for t in first]


class Interrupting(LinearRegression):
    """Linear regression whose scorer is interrupted (Ctrl-C) at its ``at``-th call."""

    def __init__(self, at: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.at, self.calls = at, 0

    def score(self, solution: Any) -> float:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().score(solution)


@pytest.mark.parametrize("algorithm,at", [("tpe", 3), ("tpe", 14), ("tpe", 37), ("tpe", 43),
                                          ("cmaes", 22), ("cmaes", 45)])
def test_a_resumed_run_proposes_what_the_uninterrupted_one_did(tmp_path: Path, algorithm: str, at: int) -> None:
    """Interrupted mid-step (trials of the open step recorded, others not, duplicates recorded out of
    order), resumed in a new optimizer with a new proposer: every trial as in one uninterrupted run."""
    steps = 7
    reference = optimizer(linreg(), algorithm, steps).run().history
    with RunStore(tmp_path / "runs.db") as store:
        interrupted = optimizer(Interrupting(at, w_true=15, b_true=14, random_range=(-50, 50), seed=1),
                                algorithm, steps, store=store, name="r").run()
        assert interrupted.stop_reason.value == "interrupted"
        before = rows(interrupted.history)
        assert 0 < len(before) < len(reference)
        resumed = optimizer(linreg(), algorithm, steps, store=store, name="r", resume=True).run()
        assert resumed.stop_reason.value == "max_steps"
        stored = rows(store.trials(store.get_run("r").id))
    assert set(before) <= set(stored)  # nothing recorded before the interruption was lost or changed
    assert stored == rows(reference)
    assert rows(resumed.history) == rows(reference)


def test_resuming_a_finished_run_with_a_larger_budget_goes_on_as_one_run(tmp_path: Path) -> None:
    reference = optimizer(linreg(), "tpe", 6).run().history
    with RunStore(tmp_path / "runs.db") as store:
        optimizer(linreg(), "tpe", 3, store=store, name="r").run()
        optimizer(linreg(), "tpe", 6, store=store, name="r", resume=True).run()
        assert rows(store.trials(store.get_run("r").id)) == rows(reference)


class Mixed(Problem[dict]):
    """A mixed space: a float, an integer, a boolean and an enum (categorical dimensions)."""

    name = "mixed"
    direction = Direction.MINIMIZE
    SPACE = {"type": "object", "additionalProperties": False, "required": ["x", "n", "flag", "color"],
             "properties": {"x": {"type": "number", "minimum": -5, "maximum": 5},
                            "n": {"type": "integer", "minimum": 0, "maximum": 10},
                            "flag": {"type": "boolean"},
                            "color": {"enum": ["red", "green", "blue"]}}}

    def describe(self) -> str:
        return "a mixed test function"

    def answer_format(self) -> str:
        return "a JSON object"

    def encode(self, solution: dict) -> str:
        return json.dumps(solution, sort_keys=True)

    def decode(self, text: str) -> dict:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        if not isinstance(value, dict) or set(value) != {"x", "n", "flag", "color"}:
            raise ParseError(f"not a solution: {text[:80]}")
        if value["color"] == "green" and value["flag"]:
            raise ParseError("green flags are not allowed")  # a from_json refusal: an INVALID trial
        return value

    def score(self, s: dict) -> float:
        return (s["x"] - 1) ** 2 + (s["n"] - 3) ** 2 + (0 if s["flag"] else 1) + ["red", "green", "blue"].index(s["color"])

    def initial_solutions(self, rng: np.random.Generator) -> list[dict]:
        return [{"x": 4.0, "n": 9, "flag": False, "color": "blue"}, {"x": 99.0, "n": 9, "flag": False, "color": "red"}]

    def random_solution(self, rng: np.random.Generator) -> dict:
        return draw(self.SPACE, rng)

    def search_space(self) -> dict[str, Any]:
        return self.SPACE

    def to_json(self, solution: dict) -> dict:
        return dict(solution)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_mixed_space_with_categorical_dimensions(algorithm: str) -> None:
    history = optimizer(Mixed(), algorithm, 6).run().history
    own = [t for t in history if t.source == f"optuna:{algorithm}"]
    solutions = [t.solution for t in own if t.state is not TrialState.INVALID]
    assert solutions and all(-5 <= s["x"] <= 5 and 0 <= s["n"] <= 10 and isinstance(s["n"], int)
                             and isinstance(s["flag"], bool) and s["color"] in ("red", "green", "blue")
                             for s in solutions)
    assert {s["color"] for s in solutions} == {"red", "green", "blue"} and {s["flag"] for s in solutions} == {0, 1}
    invalid = [t for t in own if t.state is TrialState.INVALID]
    assert invalid and all("ParseError: green flags" in t.error for t in invalid)  # from_json's refusal: data
    assert min(t.value for t in own if t.ok) < min(t.value for t in history if t.source == "start" and t.ok)


class NoSpace(Mixed):
    name = "nospace"

    def search_space(self) -> None:  # type: ignore[override]
        return None


def test_a_problem_without_a_search_space_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match=r"--proposer optuna:tpe needs a problem with a bounded .*nospace has none"):
        Optimizer(NoSpace(), OptunaProposer("tpe"))
    store = tmp_path / "tsp.db"
    assert main(["run", "tsp", "--proposer", "optuna:cmaes", "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--proposer optuna:cmaes needs a problem with a bounded" in err and "tsp has none" in err
    assert len(err.strip().splitlines()) == 1 and not store.exists()


def test_optuna_missing_is_one_line_saying_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[classical\]'"):
        OptunaProposer("tpe").validate()
    store = tmp_path / "runs.db"
    assert main(["run", "linreg", "--proposer", "optuna:tpe", "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[classical]'" in err and len(err.strip().splitlines()) == 1 and not store.exists()


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown optuna algorithm 'bayes'"):
        OptunaProposer("bayes")


def test_command_line_run_and_grid(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "runs.db")
    argv = ["run", "linreg", "--proposer", "optuna:tpe", "--steps", "3", "--store", store, "--quiet"]
    assert main(argv) == 0
    with RunStore(store) as s:
        run = s.get_run("linreg-optuna-tpe-seed0")
        sources = {t.source for t in s.trials(run.id)}
        assert sources == {"start", "optuna:tpe"} and run.status == "finished"
    assert main(argv + ["--resume", "--name", "linreg-optuna-tpe-seed0", "--steps", "4"]) == 0
    capsys.readouterr()
    grid = ["compare", "--problems", "linreg", "--proposers", "random", "optuna:tpe", "optuna:cmaes", "--seeds", "1",
            "--set", "steps=2", "--store", store, "--no-references", "--quiet"]
    assert main(grid) == 0
    out = capsys.readouterr().out
    assert all(label in out for label in ("random", "tpe", "cmaes"))


def test_default_run_names_stay_plain() -> None:
    assert default_run_name(linreg(), OptunaProposer("cmaes"), 3) == "linreg-optuna-cmaes-seed3"
