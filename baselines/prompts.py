"""``llmopt baselines prompt``: the fixed instructions every prompt-optimization result is
compared with (they live with the problem, :mod:`problems.prompt_optimization.instructions`)."""

from __future__ import annotations

from typing import Any

from llmopt.experiments.report import format_table
from problems.prompt_optimization.instructions import FIXED_INSTRUCTIONS

BASELINES = FIXED_INSTRUCTIONS


class CLI:
    """``llmopt baselines prompt`` (group ``llmopt.baselines``): the fixed instructions, which
    ``llmopt evaluate`` scores beside every optimized one (its ``--no-baselines`` leaves them out)."""

    HELP = "the fixed instructions prompt optimization is compared with (scored by llmopt evaluate)"

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.description = "List the fixed instructions; `llmopt evaluate --task T` scores them on held-out data."

    @staticmethod
    def run(args: Any) -> int:
        print(format_table([["baseline", "instruction"]] + [[k, repr(v)] for k, v in BASELINES.items()]))
        return 0
