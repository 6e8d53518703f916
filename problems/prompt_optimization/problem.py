"""Prompt optimization as an OPRO problem (the paper's Section 4 and its official code).

A solution is an instruction; its score is the scorer model's accuracy (0-100) on the task's
training examples with the instruction inserted into each prompt. The meta-prompt shows the
best instructions so far with integer scores, worst to best (top 20), then 3 random training
examples with their answers, then asks for a new instruction in the paper's delimiters:

* ``style="ins"`` (default; the official prompt for chat optimizers such as GPT-4): "Your task
  is to generate the instruction <INS>. ..." and the reply's ``<INS>...</INS>``;
* ``style="brackets"`` (the paper's Figure 3, for PaLM 2): "I have some texts along with their
  corresponding scores. ..." and the reply's ``[...]``.

New instructions are filtered as the official code does: at most 500 characters, no "INS"
inside, and no digits for GSM8K (they leak answers); each filter is configurable. Duplicates are
found by content (whitespace-normalised text).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Sequence

import numpy as np

from llmopt.experiments.stats import wilson
from llmopt.history import SolutionHistory
from llmopt.problem import CallCost, Direction, Evaluation, ParseError, Problem, clamp, json_objects
from llmopt.seeding import stream
from problems.prompt_optimization.data import Example, Task
from problems.prompt_optimization.scorer import Position, Scorer, scorer_prompt

Style = Literal["ins", "brackets"]
STYLES: tuple[str, ...] = ("ins", "brackets")

#: Sentences the random-search control recombines (1 to 3 per instruction): generic advice of the
#: kind instructions are made of, none specific to a task.
RANDOM_FRAGMENTS: tuple[str, ...] = (
    "Let's think step by step.", "Let's solve the problem.", "Take a deep breath.", "Read the question carefully.",
    "Answer the question.", "Be concise.", "Double-check your answer.", "Consider every option before answering.",
    "Give only the final answer.", "Explain your reasoning first.", "Break the problem into smaller parts.",
    "Focus on the key facts.", "Think logically.", "Use common sense.", "Eliminate the wrong answers.",
    "State the answer clearly.", "Work carefully.", "Check each statement in turn.", "Be precise.",
    "Reason it out before you answer.",
)

_INS = re.compile(r"<INS>(.*?)</INS>", re.DOTALL | re.IGNORECASE)
_START = re.compile(r"<Start>(.*?)</Start>", re.DOTALL | re.IGNORECASE)
_BRACKETS = re.compile(r"\[(.*?)\]", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")


#: Racing (``Optimizer(race=k)``): examples scored before the first look, then doubled at each
#: look; the chance that a look drops an instruction whose full score reaches the bar.
RACE_FIRST = 8
RACE_DELTA = 0.05
RACE_ORDER_SEED = 20230907  # the order examples are raced in (fixed: a rerun races the same way)


def race_looks(total: int, first: int = RACE_FIRST) -> list[int]:
    """How many examples are scored at each look of a race: first, 2 first, 4 first, ..., total."""
    out, size = [], first
    while size < total:
        out.append(size)
        size *= 2
    return out + [total]


def normalise(instruction: str) -> str:
    return " ".join(instruction.split())


#: An instruction as long as a typical proposal, for the estimate before a run.
TYPICAL_INSTRUCTION = "Let's think step by step and answer the question carefully."


#: Training examples an instruction got wrong, shown as its feedback (``--feedback``), at most.
FEEDBACK_EXAMPLES = 3


def wrong_examples(examples: Sequence[Example], grades: Sequence[Any], count: int = FEEDBACK_EXAMPLES) -> str | None:
    """The first ``count`` training examples an instruction got wrong, each with the expected answer
    and what was read from the scorer's reply (GEPA's feedback for instructions); None: none wrong."""
    lines = []
    for example, g in zip(examples, grades):
        if g is not None and not g.correct:
            question = " ".join(example.question.split())
            question = question if len(question) <= 200 else question[:197] + "..."
            lines.append(f"Q: {question} | expected {example.answer!r}, got {g.extracted!r}")
            if len(lines) == count:
                break
    return "\n".join(lines) if lines else None

class PromptOptimization(Problem[str]):
    name = "prompt"
    direction = Direction.MAXIMIZE
    solution_noun = "instruction"
    solution_plural = "instructions"
    value_noun = "score"
    solution_label = "text"
    value_label = "score"
    default_shown = 20
    default_scores = "rounded"  # the paper shows integer accuracies (0-100)
    states_order = False  # the paper's descriptions word it themselves
    operator_style = "prompt"  # EvoPrompt's GA and DE speak of prompts, with their worked examples

    def __init__(self, task: Task, scorer: Scorer, *, style: Style = "ins", exemplars: int = 3,
                 max_length: int = 500, forbid_digits: bool | None = None,
                 initial: Sequence[str] | None = None, race_first: int = RACE_FIRST,
                 race_delta: float = RACE_DELTA) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown meta-prompt style {style!r} (expected one of {', '.join(STYLES)})")
        if exemplars < 0:
            raise ValueError(f"exemplars must be >= 0, got {exemplars}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if race_first < 1:
            raise ValueError(f"race_first must be >= 1, got {race_first}")
        if not 0.0 < race_delta < 1.0:
            raise ValueError(f"race_delta must be in (0, 1), got {race_delta}")
        self.race_first, self.race_delta = race_first, race_delta
        if not task.train:
            raise ValueError(f"task {task.name} has no training examples to score instructions on "
                             "(give it a training share, e.g. --train-fraction 0.2)")
        self.task, self.scorer, self.style = task, scorer, style
        self.exemplars, self.max_length = exemplars, max_length
        self.forbid_digits = task.name.startswith("gsm8k") if forbid_digits is None else forbid_digits
        if initial is None:  # the paper's starting points
            initial = ["Let's solve the problem."] if task.name.startswith("gsm8k") else [""]
        self.initial = [normalise(i) for i in initial]

    @property
    def position(self) -> Position:
        return self.scorer.position

    @property
    def _answer_start(self) -> bool:
        return self.position == "A_begin"

    # --- text ----------------------------------------------------------------------------
    def describe(self) -> str:
        if self.style == "brackets":
            return ("I have some texts along with their corresponding scores. The texts are arranged in ascending "
                    "order based on their scores, where higher scores indicate better quality.")
        if self._answer_start:
            return ("Your task is to generate the answer starting sentence <Start>. Below are some previous "
                    "starting sentences with their scores. The score ranges from 0 to 100.")
        return ("Your task is to generate the instruction <INS>. Below are some previous instructions with their "
                "scores. The score ranges from 0 to 100.")

    def operator_context(self) -> str:
        """The task without the talk of previous instructions and scores (the LLM controls' opening,
        ``--proposer llm-iid`` / ``llm-scs``; EvoPrompt's prompt-style requests use their own words)."""
        if self.style == "brackets":
            return "Your task is to write a text that replaces <INS> in the exemplars below and gets high-quality outputs."
        if self._answer_start:
            return ("Your task is to generate the answer starting sentence <Start>. Its score is the accuracy, from 0 "
                    "to 100, on problems like those below.")
        return ("Your task is to generate the instruction <INS>. Its score is the accuracy, from 0 to 100, on problems "
                "like those below.")

    def render(self, text: str, value: str | None) -> str:
        return f"text:\n{text}" if value is None else f"text:\n{text}\nscore:\n{value}"

    def _slot(self, question: str) -> str:
        tag = "<Start>" if self._answer_start and self.style == "ins" else "<INS>"
        if self.position == "Q_end":
            return f"Q: {question}\n{tag}\nA:"
        if self.position == "A_begin":
            return f"Q: {question}\nA: {tag}"
        return f"Q: {tag}\n{question}\nA:"

    def context(self, rng: np.random.Generator) -> str | None:
        if self.exemplars == 0:
            return None
        picks = rng.choice(len(self.task.train), size=min(self.exemplars, len(self.task.train)), replace=False)
        shown = [self.task.train[i] for i in sorted(picks)]
        if self.style == "brackets":
            head = ("The following exemplars show how to apply your text: you replace <INS> in each input with your "
                    "text, then read the input and give an output. We say your output is wrong if your output is "
                    "different from the given output, and we say your output is correct if they are the same.")
            blocks = [f"input:\n{self._slot(ex.question)}\noutput:\n{ex.answer}" for ex in shown]
        else:
            head = "Below are some problems."
            blocks = [f"{'' if self._answer_start else 'input:' + chr(10)}{self._slot(ex.question)}\n"
                      f"Ground truth answer:\n{ex.answer}" for ex in shown]
        return "\n\n".join([head, *blocks])

    def closing_instruction(self) -> str:
        if self.style == "brackets":
            return "Write your new text that is different from the old ones and has a score as high as possible."
        if self._answer_start:
            return ("Generate a starting sentence that is different from all the <Start> sentences above, and has a "
                    "higher score than all the <Start> sentences above.")
        return ("Generate an instruction that is different from all the instructions <INS> above, and has a higher "
                "score than all the instructions <INS> above.")

    def closing_instruction_many(self, count: int) -> str:
        if self.style == "brackets":
            return (f"Write {count} new texts that are different from the old ones and from each other and have "
                    "scores as high as possible.")
        what, tag = ("starting sentences", "<Start> sentences") if self._answer_start else ("instructions",
                                                                                          "instructions <INS>")
        return (f"Generate {count} {what} that are different from all the {tag} above and from each other, and "
                f"have higher scores than all the {tag} above.")

    def answer_format(self) -> str:
        if self.style == "brackets":
            return "Write the text in square brackets."
        if self._answer_start:
            return ("The starting sentence should begin with <Start> and end with </Start>. The starting sentence "
                    "should be concise, effective, and generally applicable to all QA pairs above.")
        return ("The instruction should begin with <INS> and end with </INS>. The instruction should be concise, "
                "effective, and generally applicable to all problems above.")

    def answer_schema(self) -> dict[str, Any]:
        text = {"type": "string", "maxLength": self.max_length}
        return {"type": "object", "properties": {"instruction": text}, "required": ["instruction"],
                "additionalProperties": False}

    def structured_answer_format(self) -> str:
        return ("The instruction should be concise, effective, and generally applicable to all problems above. "
                'Reply with only a JSON object of the form {"instruction": "<your instruction>"}.')

    # --- decoding ------------------------------------------------------------------------
    def encode(self, solution: str) -> str:
        return solution

    def decode(self, text: str) -> str:
        """The instruction in a reply: ``<INS>..</INS>`` (``<Start>``), ``[...]``, ``{"instruction": ..}``,
        or a reply that is one bare line; then the official filters."""
        found = self._extract(text)
        instruction = normalise(found)
        if len(instruction) > self.max_length:
            raise ParseError(f"instruction too long ({len(instruction)} > {self.max_length} characters)")
        if "INS" in instruction:
            raise ParseError("instruction contains 'INS' (an echo of the meta-prompt's tags)")
        if self.forbid_digits and any(ch.isdigit() for ch in instruction):
            raise ParseError("instruction contains digits (not allowed for this task: they can leak answers)")
        return instruction

    def _extract(self, text: str) -> str:
        order = (_INS, _START, _BRACKETS) if self.style == "ins" else (_BRACKETS, _INS, _START)
        for pattern in order:
            m = pattern.search(text)
            if m is not None:
                return m.group(1)
        for obj in json_objects(text):
            if isinstance(obj.get("instruction"), str):
                return obj["instruction"]
        bare = text.strip()
        if "\n" in bare:
            raise ParseError("no instruction found: expected <INS>...</INS>, [...] or {\"instruction\": ...}")
        return bare

    def from_text(self, text: str) -> str:
        return text  # stored instructions are the instructions themselves

    def key(self, solution: str) -> str:
        return normalise(solution)

    # --- features (MAP-Elites) -------------------------------------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """The instruction's length in words (capped at 100) and its sentences (capped at 10): a
        one-line nudge, a paragraph of advice, a list of steps."""
        return ("words", "sentences")

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        return ((0.0, 100.0), (0.0, 10.0))

    def features(self, solution: str) -> tuple[float, ...]:
        text = normalise(solution)
        sentences = len([s for s in _SENTENCE_END.split(text) if s.strip()])
        return clamp((float(len(text.split())), float(sentences)), self.feature_ranges())

    # --- scoring -------------------------------------------------------------------------
    def bind_cache(self, cache: Any) -> None:
        self.scorer.bind_cache(cache)

    def evaluate(self, solution: str) -> Evaluation:
        result = self.scorer.score(solution, self.task.train, self.task.kind)
        calls = tuple((i, self.scorer.model, c) for i, c in enumerate(result.completions))
        return Evaluation(100.0 * result.accuracy, calls, feedback=wrong_examples(self.task.train, result.grades))

    @property
    def has_validation(self) -> bool:
        return bool(self.task.validation)

    def evaluate_validation(self, solution: str) -> Evaluation:
        """Accuracy on the task's validation split (``--validation-fraction``), scored as :meth:`evaluate`
        scores on the training split: same scorer, same cache; ``item`` is the validation example's index."""
        if not self.task.validation:
            raise NotImplementedError(f"task {self.task.name} has no validation split (--validation-fraction F "
                                      "gives the task one)")
        result = self.scorer.score(solution, self.task.validation, self.task.kind)
        calls = tuple((i, self.scorer.model, c) for i, c in enumerate(result.completions))
        return Evaluation(100.0 * result.accuracy, calls)

    def evaluate_raced(self, solution: str, bar: float) -> Evaluation:
        """Score on a growing sample of the training examples (:func:`race_looks`, a fixed random
        order, the same for every instruction) and stop once the Wilson upper bound of the
        accuracy is below ``bar``: a one-sided error of ``race_delta`` in all, split over the looks.
        An instruction that is not stopped gets its full score (the same calls, so the same value
        as :meth:`evaluate`); a stopped one gets its sample's accuracy and ``metrics["race"]``."""
        train, total = self.task.train, len(self.task.train)
        order = np.random.default_rng(RACE_ORDER_SEED).permutation(total)
        looks = race_looks(total, self.race_first)
        level = 1.0 - 2.0 * self.race_delta / max(len(looks) - 1, 1)  # two-sided level: one-sided delta / looks
        calls: list[tuple[int, str, Any]] = []
        correct = done = 0
        for size in looks:
            batch = [int(i) for i in order[done:size]]
            result = self.scorer.score(solution, [train[i] for i in batch], self.task.kind)
            calls += [(i, self.scorer.model, c) for i, c in zip(batch, result.completions)]
            correct, done = correct + result.correct, size
            if result.failed or size == total:
                break
            high = 100.0 * wilson(correct, size, level)[1]  # type: ignore[index]
            if high < bar:
                race = {"scored": size, "of": total, "upper": round(high, 4), "bar": bar}
                return Evaluation(100.0 * (correct / size), tuple(calls), {"race": race})
        return Evaluation(100.0 * (correct / done), tuple(calls))

    def score(self, solution: str) -> float:
        return self.evaluate(solution).value

    def score_on(self, solution: str, examples: Sequence[Example]) -> float:
        return 100.0 * self.scorer.score(solution, examples, self.task.kind).accuracy

    # --- cost estimates (llmopt.experiments.estimate) -----------------------------------------------
    def typical_text(self) -> str:
        """An instruction as long as a typical proposal (the starting ones may be empty)."""
        return TYPICAL_INSTRUCTION

    def evaluation_cost(self, split: str = "train") -> CallCost | None:
        """One scorer call per example of ``split``, each prompt as long as the mean over up to 20
        training examples with a typical instruction, each reply at the scorer's max tokens."""
        train, examples = self.task.train, self.task.validation if split == "validation" else self.task.train
        llm = self.scorer.llm
        picks = stream(0, "estimate").choice(len(train), size=min(20, len(train)), replace=False)
        per_prompt = math.ceil(sum(llm.count_tokens(scorer_prompt(TYPICAL_INSTRUCTION, train[i].question,
                                                                  self.position)) for i in picks) / len(picks))
        calls = len(examples)
        return CallCost("scorer" if split == "train" else split, llm, calls, calls * per_prompt,
                        calls * llm.config.max_tokens)

    def initial_solutions(self, rng: np.random.Generator) -> list[str]:
        return list(self.initial)

    def random_solution(self, rng: np.random.Generator) -> str:
        k = int(rng.integers(1, 4))
        picks = rng.choice(len(RANDOM_FRAGMENTS), size=k, replace=False)
        return " ".join(RANDOM_FRAGMENTS[i] for i in picks)

    def random_space(self) -> str:
        return f"joins of 1 to 3 of {len(RANDOM_FRAGMENTS)} fixed instruction fragments"

    def is_solved(self, solution: str) -> bool:
        return False  # 100% training accuracy is not "the optimum" of held-out accuracy; budgets stop runs

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task.name, "kind": self.task.kind, "split": self.task.split,
                "style": self.style, "exemplars": self.exemplars, "max_length": self.max_length,
                "forbid_digits": self.forbid_digits, "initial": self.initial, "scorer": self.scorer.config(),
                **({"race_first": self.race_first} if self.race_first != RACE_FIRST else {}),
                **({"race_delta": self.race_delta} if self.race_delta != RACE_DELTA else {})}

    def metrics(self, history: SolutionHistory) -> dict[str, Any]:
        best = history.best()
        return {"task": self.task.name, "training examples": len(self.task.train),
                **({"validation examples": len(self.task.validation)} if self.task.validation else {}),
                "best training accuracy %": None if best is None else best.value}
