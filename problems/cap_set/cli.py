"""``llmopt run cap-set``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from llmopt.experiments.programs import BuiltinProgramCLI
from problems.cap_set import DESCRIPTION, initial_program


class CLI(BuiltinProgramCLI):
    """``llmopt run cap-set``: FunSearch's cap set in dimension 8, the priority function evolved."""

    HELP = "cap set in dimension 8 (FunSearch): evolve the priority of a greedy construction; score = its size"
    NAME = "cap-set"
    EVALUATOR = "problems.cap_set.evaluator:evaluate"
    DESCRIPTION = DESCRIPTION
    initial = staticmethod(initial_program)
