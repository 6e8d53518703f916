"""Islands and MAP-Elites, each with novelty filtering on, run on every kind of built-in problem
(numbers, tours, instructions, programs in the sandbox, a user's function): a few steps of a real
optimizer with a scripted model that answers in the problem's own format, the proposals scored, each
one's island or cell recorded, and the filter's rejections counted as duplicates."""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pytest
from toys import make_problem

from llmopt import Budget, Optimizer
from llmopt.function_problem import FunctionProblem
from llmopt.history import TrialState
from llmopt.novelty import similar_count, too_similar
from llmopt.problem import Problem
from llmopt.programs.problem import ProgramProblem
from llmopt.proposers.islands import Islands
from llmopt.proposers.map_elites import MapElites
from llmopt.testing.scripted import ScriptedLLM
from problems.cap_set.cli import CLI as CapSetCLI
from problems.linear_regression.problem import LinearRegression
from problems.tsp.instances import random_instance
from problems.tsp.problem import TravellingSalesman


def _numbers(prompt: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return f"[{int(rng.integers(-20, 21))}, {int(rng.integers(-20, 21))}]"


def _tour(prompt: str, seed: int) -> str:
    """The last tour shown with a segment reversed (a 2-opt move), or the identity tour."""
    rng = np.random.default_rng(seed)
    shown = re.findall(r"<trace> ([\d,]+) </trace>", prompt)
    tour = [int(x) for x in shown[-1].split(",")] if shown else list(range(8))
    i, j = sorted(int(x) for x in rng.choice(np.arange(1, len(tour)), size=2, replace=False))
    return f"<trace> {','.join(map(str, tour[:i] + tour[i:j + 1][::-1] + tour[j + 1:]))} </trace>"


def _instruction(prompt: str, seed: int) -> str:
    words = ["Check parity.", "Read it twice.", "Be careful.", "Answer yes or no.", "Think, then answer."]
    return f"<INS>{words[seed % len(words)]} {words[(seed // 5) % len(words)]}</INS>"


def _program(prompt: str, seed: int) -> str:
    a, b = seed % 3, (seed // 3) % 5
    return f"```python\ndef priority(el, n):\n    return float(el[{a}] * {b} - sum(el) % 3)\n```"


def _function(prompt: str, seed: int) -> str:
    return f'{{"x": {seed % 9 - 4}}}'


PROBLEMS: dict[str, tuple[Callable[[], Problem], Callable[[str, int], str]]] = {
    "linreg": (lambda: LinearRegression(seed=0), _numbers),
    "tsp": (lambda: TravellingSalesman(random_instance(8, 0)), _tour),
    "prompt": (lambda: make_problem(initial=["", "Let's think step by step."])[0], _instruction),
    "program (cap set, sandboxed)": (lambda: ProgramProblem(CapSetCLI.EVALUATOR, CapSetCLI.initial(),
                                                            description=CapSetCLI.DESCRIPTION), _program),
    "function": (lambda: FunctionProblem(lambda s: (s["x"] - 1) ** 2,
                                         {"type": "object", "properties": {"x": {"type": "integer", "minimum": -4,
                                                                               "maximum": 4}},
                                          "required": ["x"], "additionalProperties": False},
                                         description="Minimize."), _function),
}

PROPOSERS: dict[str, Callable[[Any], Any]] = {
    "islands": lambda llm: Islands(llm, islands=3, samples_per_prompt=2, reset_every=1),
    "map-elites": lambda llm: MapElites(llm, bins=3),
}


@pytest.mark.parametrize("proposer", sorted(PROPOSERS))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_a_population_proposer_with_novelty_filtering_runs_on_every_kind_of_problem(problem: str,
                                                                                     proposer: str) -> None:
    make, script = PROBLEMS[problem]
    optimizer = Optimizer(make(), PROPOSERS[proposer](ScriptedLLM(script)), seed=0, proposals_per_step=4,
                          budget=Budget(max_steps=2, stop_when_solved=False), novelty_threshold=0.9)
    optimizer.run()
    proposed = [t for t in optimizer.history if t.source != "start"]
    scored = [t for t in proposed if t.state is TrialState.COMPLETE]
    assert scored, f"no proposal scored: {[(t.state, t.error) for t in proposed]}"
    where = "island" if proposer == "islands" else "child_cell"
    assert all(where in (t.origin or {}) for t in scored)  # each candidate says where it came from
    assert all(t.parents for t in scored)
    rejected = [t for t in proposed if too_similar(t)]
    assert all(t.state is TrialState.DUPLICATE and t.value is None for t in rejected)  # never evaluated
    assert similar_count(optimizer.history) == len(rejected)
    assert optimizer.config()["novelty_threshold"] == 0.9
