"""The cost of a run, estimated before it: a proposer's requests per step
(``Proposer.step_cost``) times the steps, and a problem's cost per evaluation
(``Problem.evaluation_cost``) times the solutions scored (and validated). Generic for every
problem and proposer: neither knows the other, and no problem imports a proposer class.

Upper bounds: every proposal new and scored, every round redrawn, every reply at its max tokens;
priced as the calls will be (the model's ``token_cost``: the price map that prices the replies).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from llmopt.problem import CallCost, Problem
from llmopt.proposers import Proposer
from llmopt.seeding import stream


@dataclass(frozen=True)
class Estimate:
    role: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    usd: float | None  # None: litellm has no price for the model (LLM.token_cost: the price of its replies)


def _row(cost: CallCost) -> Estimate:
    usd = cost.llm.token_cost(cost.prompt_tokens, cost.completion_tokens)
    return Estimate(cost.role, cost.llm.model, cost.calls, cost.prompt_tokens, cost.completion_tokens, usd)


def estimate(problem: Problem, proposer: Proposer, steps: int, proposals: int, max_rounds: int,
             max_evals: int | None = None, eval_every: int | None = None,
             validate_top: int | None = 3) -> list[Estimate]:
    """Upper bounds of a run's calls and tokens, one row per model role: the scoring, the
    validation (with ``eval_every``: each validation's top solutions all new) and the proposer's."""
    scored = len(problem.initial_solutions(stream(0, "estimate"))) + steps * proposals
    if max_evals is not None:
        scored = min(scored, max_evals)
    validated = 0
    if eval_every is not None and problem.has_validation:
        validations = steps // eval_every + 1
        validated = scored if validate_top is None else min(scored, validations * validate_top)
    rows = []
    for split, count in (("train", scored), ("validation", validated)):
        cost = problem.evaluation_cost(split) if count else None
        if cost is not None:
            rows.append(_row(cost.times(count)))
    step = proposer.step_cost(problem, proposals, max_rounds)
    if step is not None:
        rows.append(_row(step.times(steps)))
    return rows


def _usd(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:.4f}"


def print_estimate(rows: Sequence[Estimate], file: Any = None) -> None:
    file = file or sys.stderr
    print("estimate (upper bound: every solution new, every reply at max tokens):", file=file)
    for r in rows:
        print(f"  {r.role:9s} {r.model}: <= {r.calls} calls, <= {r.prompt_tokens + r.completion_tokens} tokens "
              f"({r.prompt_tokens} prompt + {r.completion_tokens} completion), <= {_usd(r.usd)}", file=file)


def check_estimate(rows: Sequence[Estimate], max_calls: int | None, max_usd: float | None) -> None:
    """Refuse a run whose estimate exceeds the given limits, before any call."""
    calls = sum(r.calls for r in rows)
    if max_calls is not None and calls > max_calls:
        raise ValueError(f"the run may make up to {calls} calls, more than --max-calls {max_calls}: raise the limit, "
                         "or lower --steps, --proposals or --max-train")
    if max_usd is not None:
        unknown = [r.model for r in rows if r.usd is None]
        if unknown:
            raise ValueError(f"--max-usd {max_usd} cannot be checked: litellm has no price for {', '.join(unknown)}")
        usd = sum(r.usd or 0.0 for r in rows)
        if usd > max_usd:
            raise ValueError(f"the run may cost up to ${usd:.4f}, more than --max-usd {max_usd}: raise the limit, "
                             "or lower --steps, --proposals or --max-train")
