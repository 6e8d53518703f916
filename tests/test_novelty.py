"""Novelty filtering (``--novelty-threshold``, ``novelty_threshold=``): a proposal too similar to a
scored or pending solution is a DUPLICATE before it costs an evaluation, for any proposer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import llmopt
from llmopt.budget import Budget
from llmopt.cli import main
from llmopt.history import TrialState
from llmopt.novelty import check_threshold, most_similar, similar_count, similarity, too_similar
from llmopt.optimizer import Optimizer
from llmopt.problem import Direction, ParseError, Problem
from llmopt.programs.source import normalized
from llmopt.proposers import Proposal, Proposer
from llmopt.store import RunStore, StoreError

#: What the scripted proposer proposes, by trial number (trial 0 is the starting solution).
SCRIPT = {
    1: "the quick brown fox jumps",
    2: "the quick brown fox jumped",  # a near-copy of #1, pending in the same step
    3: "a completely different line",
    4: "the quick brown fox jumps!",  # a near-copy of #1, scored by now; redrawn
    5: "zebra xylophone quartz",
    6: "zebra xylophone quartz.",  # a near-copy of #5
    7: "nothing like the others 123",
    8: "hello world from the tests",
    9: "hello world from the test",
}


class Lines(Problem[str]):
    """One-line texts; the score counts its calls (so a test sees what was evaluated)."""

    name = "lines"
    direction = Direction.MINIMIZE

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.interrupt_at = interrupt_at

    def describe(self) -> str:
        return "one line of text"

    def answer_format(self) -> str:
        return "one line"

    def encode(self, solution: str) -> str:
        return solution

    def decode(self, text: str) -> str:
        if not text.strip():
            raise ParseError("empty")
        return text.strip()

    def score(self, solution: str) -> float:
        if self.interrupt_at is not None and len(self.calls) + 1 == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.calls.append(solution)
        return float(len(solution))

    def initial_solutions(self, rng: np.random.Generator) -> list[str]:
        return ["start: the initial line of text"]

    def random_solution(self, rng: np.random.Generator) -> str:
        return "x"


class Scripted(Proposer):
    kind = "scripted"

    @property
    def source(self) -> str:
        return "scripted"

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        return [Proposal(n, self.source, solution=SCRIPT.get(n, f"filler {n} " + "q" * n)) for n in numbers]


def _run(problem: Lines, threshold: float | None = 0.9, steps: int = 3, **kw: Any) -> Optimizer:
    opt = Optimizer(problem, Scripted(), budget=Budget(max_steps=steps), proposals_per_step=2,
                    novelty_threshold=threshold, **kw)
    opt.run()
    return opt


def test_a_near_copy_is_rejected_before_evaluation_and_a_redraw_replaces_it() -> None:
    problem = Lines()
    opt = _run(problem, steps=2)
    trials = {t.number: t for t in opt.history}
    rejected = trials[2]  # similar to #1, pending in the same step
    assert rejected.state is TrialState.DUPLICATE and rejected.duplicate_of == 1
    assert rejected.error is not None and rejected.error.startswith("too similar to #1 (similarity 0.9")
    assert "novelty threshold 0.9" in rejected.error and too_similar(rejected)
    assert trials[3].state is TrialState.COMPLETE  # the redraw round's replacement, in the same step
    assert trials[3].step == rejected.step == 1
    assert trials[4].state is TrialState.DUPLICATE and trials[4].duplicate_of == 1  # similar to a scored one
    assert trials[5].state is TrialState.COMPLETE
    assert trials[6].state is TrialState.DUPLICATE and trials[6].duplicate_of == 5  # a second redraw round
    assert trials[7].state is TrialState.COMPLETE
    assert not {SCRIPT[2], SCRIPT[4], SCRIPT[6]} & set(problem.calls)  # never evaluated
    assert problem.calls == ["start: the initial line of text", SCRIPT[1], SCRIPT[3], SCRIPT[5], SCRIPT[7]]
    assert similar_count(opt.history) == 3
    assert opt.config()["novelty_threshold"] == 0.9


def test_without_the_filter_a_near_copy_is_scored() -> None:
    problem = Lines()
    opt = _run(problem, threshold=None, steps=1)
    assert SCRIPT[2] in problem.calls
    assert "novelty_threshold" not in opt.config()  # a run without it records what it always did


def test_starting_solutions_are_not_filtered() -> None:
    problem = Lines()
    opt = Optimizer(problem, Scripted(), budget=Budget(max_steps=0), novelty_threshold=0.01)
    opt.run()
    assert [t.state for t in opt.history] == [TrialState.COMPLETE]


def _fingerprint(store: RunStore, name: str) -> list[tuple[Any, ...]]:
    run = store.get_run(name)
    return [(t.number, t.step, t.state, t.text, t.duplicate_of, t.error) for t in store.trials(run.id)]


def test_resume_with_the_filter_proposes_what_an_uninterrupted_run_did(tmp_path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        _run(Lines(), steps=4, store=store, name="whole")
        first = _run(Lines(interrupt_at=4), steps=4, store=store, name="cut")  # Ctrl-C inside step 2's scoring
        assert first.result().stop_reason.value == "interrupted"
        with pytest.raises(StoreError, match="novelty_threshold: 0.9 -> 0.8"):
            Optimizer(Lines(), Scripted(), budget=Budget(max_steps=4), proposals_per_step=2, novelty_threshold=0.8,
                      store=store, name="cut", resume=True)
        _run(Lines(), steps=4, store=store, name="cut", resume=True)
        assert _fingerprint(store, "cut") == _fingerprint(store, "whole")
        assert any(t[2] is TrialState.DUPLICATE for t in _fingerprint(store, "whole"))


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), True])
def test_a_bad_threshold_is_one_line_before_anything_is_spent(bad: Any) -> None:
    problem = Lines()
    with pytest.raises(ValueError, match=r"novelty threshold must be a number in \(0, 1\]") as info:
        Optimizer(problem, Scripted(), novelty_threshold=bad)
    assert "\n" not in str(info.value) and problem.calls == []
    calls = []
    with pytest.raises(ValueError, match="novelty threshold"):
        llmopt.minimize(lambda s: calls.append(s) or 0.0, {"type": "integer", "minimum": 0, "maximum": 9},
                        proposer="random", steps=1, novelty_threshold=bad, progress=False)
    assert calls == []


def test_similarity_and_the_most_similar_of_several() -> None:
    assert similarity("abc", "abc") == 1.0 and similarity("abc", "xyz") == 0.0
    found = most_similar("hello there", [(3, "hello there!"), (5, "hello there!"), (7, "other")], 0.9)
    assert found is not None and found.number == 3  # ties: the first scored
    assert most_similar("hello", [(1, "world")], 0.5) is None
    assert most_similar("x", [], 0.5) is None
    check_threshold(1.0)
    check_threshold(None)


def test_a_program_is_compared_without_its_comments_and_layout() -> None:
    a = "    # try harder\n    x = 1\n\n    return x  # done\n"
    b = "    x = 1\n    return x\n"
    assert normalized(a) == normalized(b) == "x = 1\nreturn x"
    assert normalized("    if x:\n") == "if x:"  # does not parse alone: comment and blank lines dropped


def test_llmopt_minimize_takes_the_threshold() -> None:
    calls: list[Any] = []
    schema = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 99}},
              "required": ["x"]}
    result = llmopt.minimize(lambda s: calls.append(s) or float(s["x"]), schema, proposer="random", steps=3,
                             novelty_threshold=0.85, progress=False)
    assert similar_count(result.history) > 0  # {"x": 41} and {"x": 45} are 0.9 similar as texts
    assert len(calls) == result.evaluations


def test_the_cli_flag_with_random_search_on_linreg(tmp_path, capsys) -> None:
    store = str(tmp_path / "runs.db")
    argv = ["run", "linreg", "--proposer", "random", "--steps", "3", "--store", store, "--quiet"]
    assert main([*argv, "--novelty-threshold", "0.8"]) == 0
    with RunStore(store, readonly=True) as opened:
        run = opened.get_run("linreg-random-seed0")
        assert run.config["novelty_threshold"] == 0.8
        similar = [t for t in opened.trials(run.id) if too_similar(t)]
    assert similar and all("novelty threshold 0.8" in (t.error or "") for t in similar)
    capsys.readouterr()
    assert main(["show", "--store", store, "linreg-random-seed0"]) == 0
    assert "too similar" in capsys.readouterr().out  # the steps table's column
    with pytest.raises(SystemExit) as info:
        main([*argv, "--name", "bad", "--novelty-threshold", "1.5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--novelty-threshold: expected a number in (0, 1], got '1.5'" in err and err.count("\n") == 1


def test_a_program_problem_compares_its_block_without_comments(tmp_path) -> None:
    from llmopt.programs.problem import ProgramProblem

    (tmp_path / "ev.py").write_text("def evaluate(module):\n    return module.value()\n")
    initial = "# EVOLVE-BLOCK-START\ndef value():\n    return 1\n# EVOLVE-BLOCK-END\n"
    problem = ProgramProblem(f"{tmp_path / 'ev.py'}:evaluate", initial, description="make value() large")
    a = "def value():\n    # the same, said again\n\n    return 1\n"
    assert problem.similarity_text(a) == problem.similarity_text(problem.template.block) == "def value():\n    return 1"
    assert most_similar(problem.similarity_text(a), [(0, problem.similarity_text(problem.template.block))], 1.0)
