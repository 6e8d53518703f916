"""The scorer: a model's accuracy on examples with an instruction inserted into each prompt.

Instruction positions, as in the paper (``Q:``/``A:`` format, its official prompt layout):

* ``Q_begin``: ``Q: {instruction}\\n{question}\\n\\nA:``
* ``Q_end``: ``Q: {question}\\n{instruction}\\n\\nA:``
* ``A_begin``: ``Q: {question}\\n\\nA: {instruction}``; a chat model gets this whole text as the
  user message, so the instruction stands where its answer would begin (no assistant prefill,
  which few providers support).

Every call is at temperature 0 with one fixed seed, so a prompt is one cache key: within a
store, the same (instruction, example) pair is asked once, whichever run or evaluation asks.
The scorer keeps no cache of its own: its calls are the LLM's, looked up by the LLM's key (the
full request: model, endpoint, the prompt with the instruction in its position, temperature,
max tokens, seed) in the LLM's cache, the run store's once one is bound and until then
:class:`llmopt.llm.MemoryCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from llmopt.llm.cache import MemoryCache, ResponseCache
from llmopt.llm.client import LLM, Completion
from problems.prompt_optimization.data import Example
from problems.prompt_optimization.grading import Grade, Kind, grade

Position = Literal["Q_begin", "Q_end", "A_begin"]
POSITIONS: tuple[str, ...] = ("Q_begin", "Q_end", "A_begin")
SCORER_SEED = 0


def scorer_prompt(instruction: str, question: str, position: Position) -> str:
    """The scorer's prompt for one example."""
    instruction = instruction.strip()
    if not instruction:
        return f"Q: {question}\n\nA:"
    if position == "Q_begin":
        return f"Q: {instruction}\n{question}\n\nA:"
    if position == "Q_end":
        return f"Q: {question}\n{instruction}\n\nA:"
    if position == "A_begin":
        return f"Q: {question}\n\nA: {instruction}"
    raise ValueError(f"unknown instruction position {position!r} (expected one of {', '.join(POSITIONS)})")


@dataclass(frozen=True)
class ScoreResult:
    """An instruction's result on a set of examples."""

    correct: int
    total: int
    grades: tuple[Grade | None, ...]  # None where the call failed
    completions: tuple[Completion, ...]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def failed(self) -> int:
        return sum(1 for c in self.completions if not c.ok)


class Scorer:
    """Scores instructions with a model behind :class:`llmopt.llm.LLM` (any litellm model)."""

    def __init__(self, llm: LLM, position: Position = "Q_begin") -> None:
        if position not in POSITIONS:
            raise ValueError(f"unknown instruction position {position!r} (expected one of {', '.join(POSITIONS)})")
        if llm.config.temperature != 0.0:
            raise ValueError(f"the scorer samples at temperature 0 (got {llm.config.temperature})")
        self.llm = llm if llm.cache is not None else llm.with_cache(MemoryCache())
        self.position = position

    @property
    def model(self) -> str:
        return self.llm.model

    def bind_cache(self, cache: ResponseCache) -> None:
        """Use a run store's cache (replies persist: a resumed run or a later evaluation reuses them),
        unless the LLM came with a cache of its own."""
        if isinstance(self.llm.cache, MemoryCache):
            self.llm = self.llm.with_cache(cache)

    def messages(self, instruction: str, example: Example) -> list[dict[str, str]]:
        return [{"role": "user", "content": scorer_prompt(instruction, example.question, self.position)}]

    def score(self, instruction: str, examples: Sequence[Example], kind: Kind,
              on_call: Callable[[int, Completion], None] | None = None) -> ScoreResult:
        """Ask the model every example (concurrently, cached) and grade the replies.

        ``on_call(i, completion)`` runs as the call of example ``i`` is answered (a progress bar)."""
        items = [(self.messages(instruction, ex), SCORER_SEED) for ex in examples]
        completions = self.llm.complete_batch(items, on_call)
        grades = tuple(None if c.text is None else grade(c.text, ex.answer, kind, ex.question)
                       for c, ex in zip(completions, examples))
        correct = sum(1 for g in grades if g is not None and g.correct)
        return ScoreResult(correct, len(examples), grades, tuple(completions))

    def config(self) -> dict[str, Any]:
        return {"llm": self.llm.config.to_dict(), "position": self.position, "seed": SCORER_SEED}
