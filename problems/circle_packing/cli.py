"""``llmopt run circle-packing``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from llmopt.experiments.programs import BuiltinProgramCLI
from problems.circle_packing import DESCRIPTION, initial_program


class CLI(BuiltinProgramCLI):
    """``llmopt run circle-packing``: 26 circles in the unit square, the score the sum of the radii. The
    instance is the published benchmark (26 circles, tolerance 1e-9)."""

    HELP = "circle packing: a program places 26 circles in the unit square; the score is the sum of radii"
    NAME = "circle-packing"
    EVALUATOR = "problems.circle_packing.evaluator:evaluate"
    DESCRIPTION = DESCRIPTION
    initial = staticmethod(initial_program)
