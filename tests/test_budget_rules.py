"""The stop rules as pure functions of (Budget, Spent): small known inputs, no run."""

from __future__ import annotations

import dataclasses

import pytest

from llmopt.budget import (
    Budget,
    Spent,
    StopReason,
    exhausted,
    last_improvement,
    out_of_spend,
    round_allowance,
    spend_exhausted,
    stop_reason,
    success,
)
from llmopt.problem import Direction

MIN, MAX = Direction.MINIMIZE, Direction.MAXIMIZE


def test_nothing_reached_goes_on() -> None:
    assert stop_reason(Budget(max_steps=10), Spent(steps=9), MIN) is None


def test_a_snapshot_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Spent().steps = 3  # type: ignore[misc]


def test_success_comes_first_solved_then_target_then_patience() -> None:
    budget = Budget(max_steps=5, target=1.0, patience=2)
    everything = Spent(steps=5, best=0.5, last_improvement=1, solved_step=4, failure="down", validation_stall="flat")
    assert stop_reason(budget, everything, MIN) == (StopReason.SOLVED, "the optimum was proposed at step 4")
    no_solve = dataclasses.replace(everything, solved_step=None)
    assert stop_reason(budget, no_solve, MIN) == (StopReason.TARGET, "best 0.5 reached target 1")
    no_target = dataclasses.replace(no_solve, best=2.0)
    assert stop_reason(budget, no_target, MIN) == (StopReason.PATIENCE, "no improvement in 2 steps")
    patient = dataclasses.replace(no_target, last_improvement=4)
    assert stop_reason(budget, patient, MIN) == (StopReason.VALIDATION, "flat")
    assert stop_reason(budget, dataclasses.replace(patient, validation_stall=None), MIN) == (
        StopReason.LLM_FAILURE, "every call of a round failed: down")
    calm = dataclasses.replace(patient, validation_stall=None, failure=None)
    assert stop_reason(budget, calm, MIN) == (StopReason.MAX_STEPS, "steps budget used: 5 of 5")


def test_solved_is_ignored_when_the_budget_says_go_on() -> None:
    assert success(Budget(max_steps=5, stop_when_solved=False), Spent(solved_step=1), MIN) is None


@pytest.mark.parametrize("direction, best, stops", [(MIN, 1.0, True), (MIN, 1.5, False), (MAX, 1.0, True),
                                                    (MAX, 0.5, False), (MIN, None, False)])
def test_target_respects_the_direction(direction: Direction, best: float | None, stops: bool) -> None:
    found = success(Budget(max_steps=5, target=1.0), Spent(best=best), direction)
    assert (found is not None and found[0] is StopReason.TARGET) is stops


def test_patience_counts_steps_since_the_last_improvement() -> None:
    budget = Budget(max_steps=50, patience=3)
    assert success(budget, Spent(steps=7, last_improvement=5), MIN) is None
    assert success(budget, Spent(steps=8, last_improvement=5), MIN) == (StopReason.PATIENCE, "no improvement in 3 steps")


def test_hard_limits_in_order_with_their_numbers() -> None:
    budget = Budget(max_steps=None, max_evals=10, max_calls=20, max_tokens=100, max_usd=0.5, max_seconds=60)
    spent = Spent(evaluations=10, calls=20, tokens=100, usd=0.5, seconds=60.0, uses_llm=True)
    assert exhausted(budget, spent) == (StopReason.MAX_EVALS, "evaluations budget used: 10 of 10")
    spent = dataclasses.replace(spent, evaluations=9)
    assert exhausted(budget, spent) == (StopReason.MAX_CALLS, "LLM calls budget used: 20 of 20")
    spent = dataclasses.replace(spent, calls=19)
    assert exhausted(budget, spent) == (StopReason.MAX_TOKENS, "tokens budget used: 100 of 100")
    spent = dataclasses.replace(spent, tokens=99)
    assert exhausted(budget, spent) == (StopReason.MAX_USD, "dollars budget used: 0.5 of 0.5")
    spent = dataclasses.replace(spent, usd=0.25)
    assert exhausted(budget, spent) == (StopReason.MAX_SECONDS, "seconds budget used: 60 of 60")
    assert exhausted(budget, dataclasses.replace(spent, seconds=59.5)) is None


def test_call_token_and_dollar_limits_do_not_apply_without_a_model() -> None:
    budget = Budget(max_steps=10, max_calls=1, max_tokens=1, max_usd=0.01)
    spent = Spent(steps=3, calls=5, tokens=5, usd=1.0, uses_llm=False)
    assert stop_reason(budget, spent, MIN) is None
    assert stop_reason(budget, dataclasses.replace(spent, uses_llm=True), MIN)[0] is StopReason.MAX_CALLS


def test_spend_exhausted_says_which() -> None:
    budget = Budget(max_tokens=100, max_usd=1.0)
    assert spend_exhausted(budget, Spent(tokens=99, usd=0.9)) is None
    assert spend_exhausted(budget, Spent(tokens=100, usd=2.0)) is StopReason.MAX_TOKENS
    assert spend_exhausted(budget, Spent(tokens=0, usd=1.0)) is StopReason.MAX_USD


def test_round_allowance_is_the_tightest_remaining_limit() -> None:
    budget = Budget(max_evals=10, max_calls=8, max_seconds=60)
    assert round_allowance(budget, Spent(evaluations=7, calls=2, uses_llm=True)) == 3
    assert round_allowance(budget, Spent(evaluations=2, calls=5, uses_llm=True)) == 3
    assert round_allowance(budget, Spent(evaluations=2, calls=5, uses_llm=False)) == 8  # calls do not count
    assert round_allowance(budget, Spent(evaluations=2, seconds=60.0)) == 0
    assert round_allowance(Budget(max_tokens=10), Spent(tokens=10, uses_llm=True)) == 0
    assert round_allowance(Budget(max_tokens=10), Spent(tokens=10, uses_llm=False)) > 1000
    assert round_allowance(Budget(max_steps=3), Spent(steps=2)) > 1000  # steps limit steps, not rounds


def test_out_of_spend_stops_work_that_makes_no_step() -> None:
    budget = Budget(max_evals=10, max_calls=4, max_usd=1.0, max_seconds=30)
    assert not out_of_spend(budget, Spent(evaluations=10, calls=3, usd=0.5, seconds=1.0, uses_llm=True))
    assert out_of_spend(budget, Spent(calls=4, uses_llm=True))
    assert out_of_spend(budget, Spent(usd=1.0, uses_llm=True))
    assert not out_of_spend(budget, Spent(calls=4, usd=1.0, uses_llm=False))
    assert out_of_spend(budget, Spent(seconds=30.0))


def test_last_improvement_is_the_last_change_of_the_best_so_far() -> None:
    assert last_improvement([]) == 0
    assert last_improvement([(0, None), (1, None)]) == 0
    assert last_improvement([(0, 5.0), (1, 5.0), (2, 3.0), (3, 3.0), (4, 3.0)]) == 2
    assert last_improvement([(0, None), (1, 4.0), (2, 4.0)]) == 1
