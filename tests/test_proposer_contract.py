"""The proposer contract (llmopt.testing.proposer_contract): every built-in proposer passes each
property, and each planted bug is caught under its own name.

The built-ins are built by a factory table, name -> function of the model, one per ``--proposer``
name (built by the proposer registry, as the command line builds them).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from llmopt.function_problem import FunctionProblem
from llmopt.llm.client import LLM
from llmopt.problem import Problem
from llmopt.proposers import LLMProposer, RandomProposer, registry
from llmopt.proposers.base import Proposal, Proposer
from llmopt.seeding import stream
from llmopt.testing import ContractViolation, ProposerContract, check_proposer
from llmopt.testing import proposer_contract as contract
from llmopt.testing.proposer_contract import ProposerCase

# --- the built-in proposers, each built by the registry as `--proposer NAME` builds it -------------
#: Options where the defaults would make the contract slow or trivial (module-level factories: the
#: new-process check pickles them).
OPTIONS: dict[str, dict[str, Any]] = {
    "llm-scs": {"show": 3},
    "evoprompt-ga": {"population": 4},  # the smallest population with crossover from step 2 on
    "evoprompt-de": {"population": 4},  # DE's minimum: a member and three donors
    "islands": {"islands": 4, "reset-every": 2, "samples-per-prompt": 2},  # resets (after step 2) inside the runs
}
BUILT_IN = sorted(name for name, ep in registry.entry_points().items() if ep.value.startswith("llmopt."))


def registered(name: str, llm: LLM) -> Proposer:
    spec = registry.get(name)
    return spec.build(OPTIONS.get(name, {}), llm if spec.uses_llm else None, contract.toy_problem())


FACTORIES: dict[str, Callable[[LLM], Proposer]] = {name: functools.partial(registered, name) for name in BUILT_IN}


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    """One spawned process for every new-process run of this module (a start costs about a second)."""
    with contract.new_process_pool() as made:
        yield made


def test_the_table_names_every_built_in_proposer() -> None:
    assert set(BUILT_IN) >= {"llm", "llm-iid", "llm-scs", "random", "optuna:tpe", "optuna:cmaes", "evoprompt-ga",
                             "evoprompt-de", "islands"}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_built_in_proposer_passes_the_contract(name: str, pool: Executor, tmp_path: Path) -> None:
    case = ProposerCase(FACTORIES[name])
    contract.check_every_number_recorded(case, tmp_path / "numbers")
    contract.check_no_duplicates(case, tmp_path / "duplicates")
    contract.check_same_seed(case)
    contract.check_seed_matters(case)
    contract.check_resume(case, tmp_path / "resume")
    contract.check_same_seed_in_new_process(case, pool)


def random_search(llm: LLM) -> Proposer:
    return RandomProposer()


def opro(llm: LLM) -> Proposer:
    return LLMProposer(llm)


class TestRandomSearchContract(ProposerContract):
    """The pytest form, as a third party writes it: a module-level factory as a class attribute."""

    proposer = random_search


class TestOPROContract(ProposerContract):
    proposer = staticmethod(opro)
    steps = 3
    proposals_per_step = 3


# --- planted bugs: each is caught, under its own name -------------------------------------------------
class Unseeded(RandomProposer):
    """Draws from fresh entropy, not from the run's seed."""

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        rng = np.random.default_rng()
        return [Proposal(n, self.source, solution=problem.random_solution(rng)) for n in numbers]


class SeedIgnored(RandomProposer):
    """Draws from (0, number) whatever the run's seed."""

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        return super().propose(problem, prompt, numbers, 0, on_call)


class Counting(RandomProposer):
    """Draws from a count of its own proposals: a resumed proposer, which has proposed nothing, differs."""

    def __init__(self) -> None:
        self.made = 0

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        out = []
        for n in numbers:
            out.append(Proposal(n, self.source, solution=problem.random_solution(stream(seed, "counting", self.made))))
            self.made += 1
        return out


class ProcessSeeded(RandomProposer):
    """Draws from the process (its id): the same in one process, different in another."""

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        return [Proposal(n, self.source, solution=problem.random_solution(stream(seed, os.getpid(), n)))
                for n in numbers]


class Dropping(RandomProposer):
    """Loses the last number of every round of more than one."""

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        return super().propose(problem, prompt, numbers[:-1] if len(numbers) > 1 else numbers, seed, on_call)


class NumberedTwice(RandomProposer):
    """Numbers every proposal of a round with the round's first number."""

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: Any = None) -> list[Proposal]:
        out = super().propose(problem, prompt, numbers, seed, on_call)
        return [Proposal(numbers[0], p.source, solution=p.solution) for p in out]


def unseeded(llm: LLM) -> Proposer:
    return Unseeded()


def seed_ignored(llm: LLM) -> Proposer:
    return SeedIgnored()


def counting(llm: LLM) -> Proposer:
    return Counting()


def process_seeded(llm: LLM) -> Proposer:
    return ProcessSeeded()


def dropping(llm: LLM) -> Proposer:
    return Dropping()


def numbered_twice(llm: LLM) -> Proposer:
    return NumberedTwice()


@pytest.mark.parametrize("factory, check, prop, detail", [
    (unseeded, contract.check_same_seed, contract.SAME_SEED, "the first run recorded"),
    (seed_ignored, contract.check_seed_matters, contract.SEED_MATTERS, "ignores the run's seed"),
    (counting, contract.check_resume, contract.RESUME, "stopped after step 2 and resumed"),
    (dropping, contract.check_every_number_recorded, contract.NUMBERS, "returned proposals numbered"),
    (numbered_twice, contract.check_no_duplicates, contract.DUPLICATES, "Error"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_each_planted_bug_is_caught_under_its_name(factory: Callable[[LLM], Proposer], check: Callable[..., None],
                                                   prop: str, detail: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        check(ProposerCase(factory))
    assert caught.value.prop == prop, str(caught.value)
    assert detail in str(caught.value), str(caught.value)


def test_a_proposer_that_draws_from_the_process_fails_only_in_a_new_process(pool: Executor, tmp_path: Path) -> None:
    case = ProposerCase(process_seeded)
    contract.check_same_seed(case)  # one process: the same draws
    contract.check_resume(case, tmp_path)
    with pytest.raises(ContractViolation) as caught:
        contract.check_same_seed_in_new_process(case, pool)
    assert caught.value.prop == contract.NEW_PROCESS and "this process recorded" in str(caught.value)


def test_state_kept_across_calls_is_caught_by_check_proposer_as_a_resume(tmp_path: Path) -> None:
    with pytest.raises(ContractViolation) as caught:
        check_proposer(counting, new_process=False, directory=tmp_path)
    assert caught.value.prop == contract.RESUME


class Mirrored(FunctionProblem):
    """The toy problem with x and -x one solution: a duplicate may be written differently."""

    def key(self, solution: Any) -> str:
        return super().key({**solution, "x": abs(solution["x"])})


def _mirrored_objective(point: dict[str, int]) -> float:
    return float((abs(point["x"]) - 1) ** 2 + (point["y"] + 2) ** 2)


def mirrored() -> Problem:
    return Mirrored(_mirrored_objective, contract.TOY_SCHEMA, description="Minimize (|x| - 1)^2 + (y + 2)^2.")


def test_a_duplicate_is_the_same_solution_by_key_not_by_text(tmp_path: Path) -> None:
    case = ProposerCase(random_search, mirrored)
    contract.check_no_duplicates(case, tmp_path)
    trials = {t.number: t for t in contract._run(case).trials}
    assert any(t.duplicate_of is not None and t.text != trials[t.duplicate_of].text for t in trials.values())


def test_a_deterministic_proposer_may_say_so() -> None:
    contract.check_seed_matters(ProposerCase(seed_ignored, stochastic=False))


def test_factories_that_do_not_pickle_are_refused_in_one_line() -> None:
    with pytest.raises(TypeError) as caught:
        contract.check_same_seed_in_new_process(ProposerCase(lambda llm: RandomProposer()))
    message = str(caught.value)
    assert "\n" not in message and "module-level functions" in message and "lambda" in message


def test_the_scripted_replies_are_a_function_of_prompt_and_seed() -> None:
    replies = contract.ScriptedReplies(contract.toy_problem())
    asked = [(prompt, seed) for prompt in ("prompt a", "prompt b") for seed in range(10)]
    answers = [replies(prompt, seed) for prompt, seed in asked]
    assert answers == [replies(prompt, seed) for prompt, seed in asked]
    assert answers[:10] != answers[10:] and len(set(answers)) > 5  # the prompt and the seed both matter
