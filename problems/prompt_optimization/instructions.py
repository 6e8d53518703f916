"""The fixed instructions every prompt-optimization result is compared with, scored like any other.

The rows of the paper's tables: no instruction, zero-shot chain of thought ("Let's think step by
step.", Kojima et al. 2022), the paper's GSM8K starting point, APE's best (Zhou et al. 2022), and
the paper's best GSM8K instruction for PaLM 2-L. They live with the problem (``llmopt evaluate``
scores them beside every optimized instruction); ``llmopt baselines prompt`` lists them.
"""

from __future__ import annotations

FIXED_INSTRUCTIONS: dict[str, str] = {
    "empty": "",
    "step by step": "Let's think step by step.",
    "solve": "Let's solve the problem.",
    "APE": "Let's work this out in a step by step way to be sure we have the right answer.",
    "OPRO (paper, GSM8K)": "Take a deep breath and work on this problem step-by-step.",
}
