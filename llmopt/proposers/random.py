"""Random search: the control every LLM result must be judged against."""

from __future__ import annotations

from llmopt.problem import Problem
from llmopt.proposers.base import CallHook, Proposal, Proposer
from llmopt.seeding import stream


class RandomProposer(Proposer):
    """Random search: ``problem.random_solution`` from a stream named by the trial number."""

    kind = "random"

    @property
    def source(self) -> str:
        return "random"

    def prepare(self, problem: Problem) -> None:
        if not problem.can_draw:
            raise ValueError(f"--proposer random: {problem.name} has no random draw (its solutions are not drawn "
                             "from a space); compare with --proposer llm-iid or a classical reference instead")

    def describe(self, problem: Problem) -> str:
        return f"random in {problem.random_space()}"

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return [Proposal(n, self.source, solution=problem.random_solution(stream(seed, "random", n)))
                for n in numbers]
