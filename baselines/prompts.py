"""Fixed instructions every prompt-optimization result is compared with, scored like any other.

The rows of the paper's tables: no instruction, zero-shot chain of thought ("Let's think step by
step.", Kojima et al. 2022), the paper's GSM8K starting point, APE's best (Zhou et al. 2022), and
the paper's best GSM8K instruction for PaLM 2-L.
"""

from __future__ import annotations

from typing import Any

from llmopt.experiments.report import format_table

BASELINES: dict[str, str] = {
    "empty": "",
    "step by step": "Let's think step by step.",
    "solve": "Let's solve the problem.",
    "APE": "Let's work this out in a step by step way to be sure we have the right answer.",
    "OPRO (paper, GSM8K)": "Take a deep breath and work on this problem step-by-step.",
}


class CLI:
    """``llmopt baselines prompt`` (group ``llmopt.baselines``): the fixed instructions, which
    ``llmopt evaluate`` scores beside every optimized one (its ``--no-baselines`` leaves them out)."""

    HELP = "the fixed instructions prompt optimization is compared with (scored by llmopt evaluate)"
    INSTRUCTIONS = BASELINES

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.description = "List the fixed instructions; `llmopt evaluate --task T` scores them on held-out data."

    @staticmethod
    def run(args: Any) -> int:
        print(format_table([["baseline", "instruction"]] + [[k, repr(v)] for k, v in BASELINES.items()]))
        return 0
