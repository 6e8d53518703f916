"""OPRO: one meta-prompt per step, one sampled reply per proposal, each with its own seed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from llmopt.history import SolutionHistory
from llmopt.llm.client import LLM, ResponseCache, response_format
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.problem import Problem
from llmopt.proposers.base import CallHook, Proposal, Proposer, decode_reply
from llmopt.seeding import derive_seed

#: Structured output: auto (where supported), on / json_schema (OpenAI style), json_object
#: (llama.cpp server style), off (free text, as in the paper).
Structured = Literal["auto", "on", "json_schema", "json_object", "off"]
STRUCTURED = ("auto", "on", "json_schema", "json_object", "off")

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
