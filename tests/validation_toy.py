"""A toy prompt-optimization task that overfits on purpose, for the validation tests.

Examples ask "Is N even?": N = 1..8 are the training split, 9..16 the validation split, 17..20
the test split. An instruction "train K val M" makes the scripted scorer right on the first K
training examples and the first M validation examples (on the test split it behaves as on
validation), so an instruction's training accuracy is 12.5 K and its validation accuracy 12.5 M.
The scripted optimizer proposes PLAN in order (the next one after as many as the meta-prompt
shows), so the run's best on training (K = 8) is not its best on validation (M = 6).
"""

from __future__ import annotations

import re

from llmopt.testing import ScriptedLLM
from problems.prompt_optimization.data import Example, Task
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer


def _example(n: int) -> Example:
    return Example(f"toy:{n}", f"Is {n} even?\nOptions:\n- Yes\n- No", "Yes" if n % 2 == 0 else "No")


TASK = Task("toy", "bool", tuple(_example(n) for n in range(1, 9)), tuple(_example(n) for n in range(17, 21)),
            validation=tuple(_example(n) for n in range(9, 17)))
NO_VALIDATION = Task("toy", "bool", TASK.train, TASK.test)

START = "train 2 val 2"
#: (training, validation) accuracy of each: 50/75, 75/37.5, 87.5/25, 100/12.5, then worse ones
PLAN = ["train 4 val 6", "train 6 val 3", "train 7 val 2", "train 8 val 1", "train 3 val 3", "train 1 val 7",
        "train 5 val 5", "train 2 val 8", "train 1 val 1", "train 3 val 2", "train 4 val 1", "train 2 val 4"]


def scorer_script(prompt: str) -> str:
    n = int(re.search(r"Is (\d+) even", prompt).group(1))
    rule = re.search(r"train (\d+) val (\d+)", prompt)
    if rule is None:
        return "Maybe."
    known = int(rule.group(1)) if n <= 8 else int(rule.group(2))
    right = (n - 1) % 8 < known
    even = (n % 2 == 0) == right
    return "Yes" if even else "No"


def optimizer_script(prompt: str) -> str:
    shown = prompt.count("\nscore:\n")
    return f"<INS>{PLAN[(shown - 1) % len(PLAN)]}</INS>"


def toy_problem(task: Task = TASK, fail: bool = False) -> tuple[PromptOptimization, ScriptedLLM]:
    """The toy problem and its scorer model (``fail``: every validation call for 'train 6' fails)."""
    def script(prompt: str) -> str | BaseException:
        if fail and "train 6" in prompt and int(re.search(r"Is (\d+) even", prompt).group(1)) > 8:
            return RuntimeError("scorer down")
        return scorer_script(prompt)

    scorer = ScriptedLLM(script, model="fake/scorer", temperature=0.0)
    return PromptOptimization(task, Scorer(scorer), initial=[START]), scorer


def optimizer_llm() -> ScriptedLLM:
    return ScriptedLLM(optimizer_script, model="fake/optimizer")
