"""``llmopt run cap-set``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from typing import Any

from llmopt.experiments.programs import add_program_arguments, program_options
from llmopt.programs.problem import ProgramProblem
from problems.cap_set import DESCRIPTION, initial_program


class CLI:
    """``llmopt run cap-set``: FunSearch's cap set in dimension 8, the priority function evolved."""

    HELP = "cap set in dimension 8 (FunSearch): evolve the priority of a greedy construction; score = its size"

    @staticmethod
    def add_arguments(group: Any) -> None:
        """The instance is FunSearch's dimension 8; the options are the sandbox's
        limits and the form of the replies."""
        add_program_arguments(group)

    @staticmethod
    def from_args(args: Any) -> ProgramProblem:
        return ProgramProblem("problems.cap_set.evaluator:evaluate", initial_program(),
                              description=DESCRIPTION, direction="maximize", name="cap-set", **program_options(args))
