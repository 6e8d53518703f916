"""Toy tasks shared by several test modules (a helper module: no test module imports another).

The parity toy: "Is N even?" for N = 1..12, eight for training and four for testing; its scripted
scorer is right only when the instruction says to check parity, so an instruction's score tells
whether the optimizer's proposal was used. (The overfitting toy of the validation tests, used by
tests/scripts/validation_run.py too, is tests/validation_toy.py.)
"""

from __future__ import annotations

import re

from fakes import scripted_llm

from problems.prompt_optimization.data import Example, Task
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer

QUESTIONS = [(f"Is {n} even?\nOptions:\n- Yes\n- No", "Yes" if n % 2 == 0 else "No") for n in range(1, 13)]
TRAIN = tuple(Example(f"toy:{i}", q, a) for i, (q, a) in enumerate(QUESTIONS[:8]))
TEST = tuple(Example(f"toy:{i + 8}", q, a) for i, (q, a) in enumerate(QUESTIONS[8:]))
TASK = Task("toy", "bool", TRAIN, TEST)


def scorer_script(prompt: str, seed: int) -> str:
    """A scorer that answers right only when told to 'check parity'; otherwise always 'No'."""
    n = int(re.search(r"Is (\d+) even", prompt).group(1))
    if "check parity" in prompt.lower():
        return "Yes" if n % 2 == 0 else "No"
    return "No, I do not think so."


def optimizer_script(prompt: str, seed: int) -> str:
    return ["<INS>Check parity.</INS>", "Sure! <INS>Be careful.</INS>", "no tags\nat all",
            "<INS>Check parity, then answer.</INS>"][seed % 4]


def make_problem(**kw) -> tuple[PromptOptimization, object]:
    llm, backend = scripted_llm(scorer_script, model="fake/scorer", temperature=0.0)
    return PromptOptimization(TASK, Scorer(llm), **kw), backend
