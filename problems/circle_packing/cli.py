"""``llmopt run circle-packing``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from typing import Any

from llmopt.experiments.programs import add_program_arguments, program_options
from llmopt.programs.problem import ProgramProblem
from problems.circle_packing import DESCRIPTION, initial_program


class CLI:
    """``llmopt run circle-packing``: 26 circles in the unit square, the score the sum of the radii."""

    HELP = "circle packing: a program places 26 circles in the unit square; the score is the sum of radii"

    @staticmethod
    def add_arguments(group: Any) -> None:
        """The instance is the published benchmark (26 circles, tolerance 1e-9); the options are the sandbox's
        limits and the form of the replies."""
        add_program_arguments(group)

    @staticmethod
    def from_args(args: Any) -> ProgramProblem:
        return ProgramProblem("problems.circle_packing.evaluator:evaluate", initial_program(),
                              description=DESCRIPTION, direction="maximize", name="circle-packing", **program_options(args))
