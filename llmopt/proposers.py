"""Proposers: where candidate solutions come from.

:class:`LLMProposer` is OPRO: one meta-prompt per step, one sample per proposal, each with its
own seed. :class:`RandomProposer` is the control every LLM result must be judged against. Both
number their proposals with the trial numbers the optimizer hands them, and derive all their
randomness from (run seed, trial number), so a resumed run proposes exactly what the original did.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

from llmopt.history import SolutionHistory
from llmopt.llm.client import LLM, Completion, ResponseCache, response_format
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.problem import ParseError, Problem
from llmopt.seeding import derive_seed, stream

#: Structured output: auto (where supported), on / json_schema (OpenAI style), json_object
#: (llama.cpp server style), off (free text, as in the paper).
Structured = Literal["auto", "on", "json_schema", "json_object", "off"]
STRUCTURED = ("auto", "on", "json_schema", "json_object", "off")

#: Called as each LLM call finishes: (trial number, model, completion).
CallHook = Callable[[int, str, Completion], None]


@dataclass(frozen=True)
class Proposal:
    """One proposal before it becomes a trial."""

    number: int
    source: str
    solution: Any = None
    raw: str | None = None  # the LLM's reply, verbatim
    error: str | None = None  # why there is no solution
    call_failed: bool = False  # the call itself failed (FAILED), not the reply (INVALID)


class Proposer(ABC):
    """Produces proposals for given trial numbers."""

    kind: str = "proposer"

    @property
    @abstractmethod
    def source(self) -> str:
        """Provenance label recorded on every trial ("random", "llm:<model>")."""

    def validate(self) -> None:
        """Raise a clear error for unusable settings, before any budget is spent."""

    def prepare(self, problem: Problem) -> None:
        """Adapt to the problem before the run (e.g. decide on structured output)."""

    def uses_llm(self) -> bool:
        return False

    def bind_cache(self, cache: ResponseCache) -> None:
        """Offered the run store's response cache; proposers without a model ignore it."""

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Prepare a step; returns the meta-prompt to record (None if the proposer has none)."""
        return None

    @abstractmethod
    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        """One proposal per trial number, in the same order."""

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}


class RandomProposer(Proposer):
    """Random search: ``problem.random_solution`` from a stream named by the trial number."""

    kind = "random"

    @property
    def source(self) -> str:
        return "random"

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return [Proposal(n, self.source, solution=problem.random_solution(stream(seed, "random", n)))
                for n in numbers]


def decode_reply(problem: Problem, number: int, source: str, text: str) -> Proposal:
    """Decode one reply; a reply that does not decode is an INVALID proposal, never an exception."""
    try:
        return Proposal(number, source, solution=problem.decode(text), raw=text)
    except ParseError as exc:
        return Proposal(number, source, raw=text, error=f"ParseError: {exc}"[:1000])
    except Exception as exc:  # a decoder bug must not kill a paid-for run; the contract tests catch it
        return Proposal(number, source, raw=text,
                        error=f"decode raised {type(exc).__name__} (should raise ParseError): {exc}"[:1000])


class LLMProposer(Proposer):
    """OPRO: render the meta-prompt once per step, sample one reply per proposal."""

    kind = "llm"

    def __init__(self, llm: LLM, metaprompt: MetaPromptConfig | None = None, *,
                 system_prompt: str | None = None, use_store_cache: bool = True,
                 structured: Structured = "auto") -> None:
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {', '.join(STRUCTURED)}, got {structured!r}")
        self.llm = llm
        self.metaprompt = metaprompt or MetaPromptConfig()
        self.system_prompt = system_prompt
        self.use_store_cache = use_store_cache
        self.structured = structured
        self._format: dict[str, Any] | None = None  # the response_format, decided in prepare()

    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}"

    def validate(self) -> None:
        self.llm.validate()

    def uses_llm(self) -> bool:
        return True

    def bind_cache(self, cache: ResponseCache) -> None:
        if self.use_store_cache and self.llm.cache is None:
            self.llm = self.llm.with_cache(cache)

    def prepare(self, problem: Problem) -> None:
        """Decide structured output: on where the problem has a schema and the model supports it."""
        schema, mode = problem.answer_schema(), self.structured
        if mode == "auto":
            mode = "json_schema" if self.llm.supports_structured() else "off"
        self._format = None if schema is None or mode == "off" else response_format(
            schema, "json_object" if mode == "json_object" else "json_schema")
        self.metaprompt = replace(self.metaprompt, structured=self._format is not None)

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        return build_meta_prompt(problem, history, self.metaprompt)

    def messages(self, prompt: str) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return out + [{"role": "user", "content": prompt}]

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        if prompt is None:
            raise ValueError("LLMProposer.propose needs the step's meta-prompt")
        seeds = [derive_seed(seed, "llm", n) for n in numbers]
        hook = None if on_call is None else (lambda i, c: on_call(numbers[i], self.llm.model, c))
        completions = self.llm.complete(self.messages(prompt), seeds, on_complete=hook, response_format=self._format)
        out = []
        for n, c in zip(numbers, completions):
            if c.text is None:
                out.append(Proposal(n, self.source, error=c.error, call_failed=True))
            else:
                out.append(decode_reply(problem, n, self.source, c.text))
        return out

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "llm": self.llm.config.to_dict(), "metaprompt": self.metaprompt.to_dict(),
                "system_prompt": self.system_prompt, "structured": self.structured, "response_format": self._format}
