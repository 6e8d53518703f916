"""The cost estimate before a run is generic: a proposer's requests per step times a problem's cost
per evaluation; no problem knows a proposer class, and the fixed instructions live with prompt
optimization."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from llmopt.experiments.estimate import estimate
from llmopt.problem import CallCost
from llmopt.proposers import EvoPromptDE, EvoPromptGA, LLMProposer, RandomProposer
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression

ROOT = Path(__file__).resolve().parent.parent


class Scored(LinearRegression):
    """Linear regression whose scoring calls a model (as a scorer would): 5 calls per solution."""

    def __init__(self, llm: ScriptedLLM) -> None:
        super().__init__(seed=0)
        self.llm = llm

    def evaluation_cost(self, split: str = "train") -> CallCost | None:
        return CallCost("scorer", self.llm, 5, 50, 5 * self.llm.config.max_tokens)


def test_rows_are_the_proposers_step_cost_times_steps_and_the_problems_cost_times_evaluations() -> None:
    llm = ScriptedLLM(["[1, 2]"], model="local/x")
    problem = Scored(llm)
    starts = len(problem.initial_solutions(np.random.default_rng(0)))
    rows = estimate(problem, RandomProposer(), steps=3, proposals=4, max_rounds=2)
    assert [(r.role, r.calls, r.prompt_tokens) for r in rows] == [("scorer", 5 * (starts + 12), 50 * (starts + 12))]
    rows = estimate(problem, LLMProposer(llm, per_call=2), steps=3, proposals=4, max_rounds=2)
    assert [r.role for r in rows] == ["scorer", "optimizer"]
    assert rows[1].calls == 3 * 2 * 2  # steps x rounds x replies of two answers
    assert rows[1].completion_tokens == rows[1].calls * llm.config.max_tokens and rows[1].prompt_tokens > 0
    assert estimate(LinearRegression(seed=0), RandomProposer(), steps=3, proposals=4, max_rounds=2) == []
    for proposer in (EvoPromptGA(llm, population=6), EvoPromptDE(llm, population=6)):
        (row,) = estimate(LinearRegression(seed=0), proposer, steps=3, proposals=4, max_rounds=3)
        assert row.calls == 3 * 6  # one request per child, no redraws


def test_no_problem_imports_a_proposer_or_a_baseline() -> None:
    for path in (ROOT / "problems").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("llmopt.proposers", "baselines")), (path, node.module)


def test_the_fixed_instructions_live_with_prompt_optimization() -> None:
    from baselines.prompts import BASELINES
    from problems.prompt_optimization.cli import fixed_instructions
    from problems.prompt_optimization.instructions import FIXED_INSTRUCTIONS

    assert fixed_instructions() == FIXED_INSTRUCTIONS == BASELINES and len(FIXED_INSTRUCTIONS) == 5
