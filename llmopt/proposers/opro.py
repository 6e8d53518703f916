"""OPRO: one meta-prompt per step, sampled replies turned into proposals, each reply with its own seed.

By default (the paper's protocol) one reply is one proposal. The cost options group a round's
trial numbers: ``per_call=K`` asks one reply for K answers (K numbers share one call);
``samples_per_request=n`` asks one request for n choices (the prompt billed once);
``redraw_temperature`` samples a step's redraw rounds hotter; ``prompt_cache`` marks the
meta-prompt for providers' prompt caches. Groups are cut from the round's full list of numbers,
so a resumed round makes the same calls with the same seeds (served from the cache).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm.client import LLM, Completion
from llmopt.metaprompt import SCORES, MetaPromptConfig, build_meta_prompt, build_sampling_prompt
from llmopt.problem import CallCost, Problem
from llmopt.proposers.base import CallHook, ModelProposer, Proposal, answer_format, decode_reply
from llmopt.seeding import derive_seed

#: Structured output: auto (where supported), on / json_schema (OpenAI style), json_object
#: (llama.cpp server style), off (free text, as in the paper).
Structured = Literal["auto", "on", "json_schema", "json_object", "off"]
STRUCTURED = ("auto", "on", "json_schema", "json_object", "off")

def _drop_if(recorded: dict[str, Any], key: str, value: Any) -> None:
    """Remove ``key`` from ``recorded`` if it holds ``value`` (a setting recorded elsewhere now)."""
    if key in recorded and recorded[key] == value:
        del recorded[key]


class LLMProposer(ModelProposer):
    """OPRO: render the meta-prompt once per step, sample one reply per proposal."""

    kind = "llm"

    def __init__(self, llm: LLM, metaprompt: MetaPromptConfig | None = None, *,
                 system_prompt: str | None = None, use_store_cache: bool = True,
                 structured: Structured = "auto", per_call: int = 1, samples_per_request: int = 1,
                 redraw_temperature: float | None = None, prompt_cache: bool = False) -> None:
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {', '.join(STRUCTURED)}, got {structured!r}")
        if not 1 <= per_call <= 64:
            raise ValueError(f"per_call must be in 1..64 (answers asked for in one reply), got {per_call}")
        if not 1 <= samples_per_request <= 128:
            raise ValueError(f"samples_per_request must be in 1..128 (choices of one request), got {samples_per_request}")
        if redraw_temperature is not None and not 0.0 <= redraw_temperature <= 2.0:
            raise ValueError(f"redraw_temperature must be in [0, 2], got {redraw_temperature}")
        self.llm = llm
        self.metaprompt = metaprompt or MetaPromptConfig()
        self._scores_left_to_problem = self.metaprompt.scores == "auto"
        self.system_prompt = system_prompt
        self.use_store_cache = use_store_cache
        self.structured = structured
        self.per_call, self.samples_per_request = per_call, samples_per_request
        self.redraw_temperature, self.prompt_cache = redraw_temperature, prompt_cache
        self._format: dict[str, Any] | None = None  # the response_format, decided in prepare()
        self._parent: Trial | None = None  # the trial this step's replies may edit (begin_step)

    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}"

    def describe(self, problem: Problem) -> str:
        return f"opro {self.llm.model}"

    def resuming(self, recorded: dict[str, Any]) -> None:
        """Scores left to the problem (``scores="auto"``) are shown as the run recorded them: a run
        from before a problem's default display changed resumes with its own. A run recorded while
        the meta-prompt's config also held the run seed and ``per_call`` (each recorded twice) had
        them equal to the run's: they are dropped from ``recorded`` where they are (a run whose
        shuffle seed was not its run seed is then refused as different settings)."""
        shown = recorded.get("metaprompt") or {}
        _drop_if(shown, "shuffle_seed", self.seed if self.seed is not None else 0)
        _drop_if(shown, "per_call", self.per_call)
        _drop_if(recorded.get("sampling") or {}, "context_seed", self.seed if self.seed is not None else 0)
        if self._scores_left_to_problem and shown.get("scores") in SCORES:
            self.metaprompt = replace(self.metaprompt, scores=shown["scores"], decimals=shown.get("decimals", 0),
                                      digits=shown.get("digits", MetaPromptConfig.digits))

    def prepare(self, problem: Problem) -> None:
        """Decide structured output: on where the problem has a schema and the model supports it."""
        schema = problem.answer_schema()
        if schema is not None and self.per_call > 1:
            schema = problem.answers_schema(self.per_call)
        self._format = answer_format(schema, self.llm, self.structured)
        self.metaprompt = replace(self.metaprompt.for_problem(problem), structured=self._format is not None)

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        self._parent = self.parent(problem, history, step)
        return build_meta_prompt(problem, history, self.metaprompt, seed=self.seed or 0, per_call=self.per_call)

    def parent(self, problem: Problem, history: SolutionHistory, step: int) -> Trial | None:
        """The trial a step's replies may edit (a problem whose replies can be edits: a program's
        SEARCH/REPLACE blocks): the best shown, from the steps before ``step`` only, so a resumed
        step edits what the uninterrupted one did. None for problems whose replies stand alone."""
        if type(problem).revise is Problem.revise:
            return None
        return SolutionHistory(problem.direction, (t for t in history if t.step < step)).best()

    def step_cost(self, problem: Problem, proposals: int, max_rounds: int) -> CallCost | None:
        """Every round's replies (``per_call`` answers each) at max tokens; the prompt: this
        proposer's own for a full history of the problem's typical solutions."""
        text = problem.typical_text()
        shown = [Trial(number=i, step=0, state=TrialState.COMPLETE, source="estimate", text=text, key=i, value=float(i))
                 for i in range(self.metaprompt.max_shown)]
        prompt = self.begin_step(problem, SolutionHistory(problem.direction, shown), 1) or ""
        calls = max_rounds * math.ceil(proposals / self.per_call)
        return CallCost("optimizer", self.llm, calls, calls * self.llm.count_tokens(prompt),
                        calls * self.llm.config.max_tokens)

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages of a step: the system prompt if any, then the meta-prompt. With
        ``prompt_cache`` each is a text block marked ``cache_control`` (Anthropic's prompt cache;
        litellm passes it on where a provider has one): the stable system prompt first, then the
        step's meta-prompt, which the step's other calls and redraws reuse."""
        if not self.prompt_cache:
            out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            return out + [{"role": "user", "content": prompt}]

        def block(text: str) -> list[dict[str, Any]]:
            return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]

        out = [{"role": "system", "content": block(self.system_prompt)}] if self.system_prompt else []
        return out + [{"role": "user", "content": block(prompt)}]

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return self.propose_round(problem, prompt, numbers, numbers, seed, on_call)

    def propose_round(self, problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: CallHook | None = None, *, attempt: int = 0) -> list[Proposal]:
        """Cut ``numbers`` into replies of ``per_call`` answers and those into requests of
        ``samples_per_request`` choices; ask the requests that serve a number of ``todo``.

        A reply's seed derives from (run seed, its first number), its call is accounted to that
        number (reported only when that number is to do: a recorded one's call was counted when
        the run was loaded), and its i-th answer is the proposal of its i-th number; answers a
        reply lacks are INVALID proposals."""
        if prompt is None:
            raise ValueError("LLMProposer.propose needs the step's meta-prompt")
        wanted = set(todo)
        replies = [numbers[i:i + self.per_call] for i in range(0, len(numbers), self.per_call)]
        requests = [replies[i:i + self.samples_per_request] for i in range(0, len(replies), self.samples_per_request)]
        requests = [r for r in requests if any(n in wanted for group in r for n in group)]
        groups = [group for r in requests for group in r]
        llm = self.llm
        if attempt > 0 and self.redraw_temperature is not None:
            llm = llm.with_settings(temperature=self.redraw_temperature)
        messages = self.messages(prompt)

        def hook(i: int, completion: Completion) -> None:
            if on_call is not None and groups[i][0] in wanted:
                on_call(groups[i][0], llm.model, completion)

        asked = [(messages, tuple(derive_seed(seed, "llm", group[0]) for group in r)) for r in requests]
        completions = llm.complete_requests(asked, hook, response_format=self._format)
        out = []
        for group, c in zip(groups, completions):
            out += [p for p in self._decode(problem, group, c) if p.number in wanted]
        order = {n: i for i, n in enumerate(todo)}
        return sorted(out, key=lambda p: order[p.number])

    def _decode(self, problem: Problem, group: list[int], c: Completion) -> list[Proposal]:
        if c.text is None:
            return [Proposal(n, self.source, error=c.error, call_failed=True) for n in group]
        if self.per_call == 1:
            return [decode_reply(problem, group[0], self.source, c.text, self._parent)]
        try:
            answers = problem.split_answers(c.text, self.per_call)
        except Exception as exc:  # a splitter bug must not kill a paid-for run
            answers, why = [], f"split_answers raised {type(exc).__name__}: {exc}"
        else:
            why = f"ParseError: the reply held {len(answers)} of the {self.per_call} answers asked for"
        return [decode_reply(problem, n, self.source, answers[i], self._parent) if i < len(answers)
                else Proposal(n, self.source, raw=c.text, error=why[:1000]) for i, n in enumerate(group)]

    def config(self) -> dict[str, Any]:
        out = {"kind": self.kind, "llm": self.llm.config.to_dict(), "metaprompt": self.metaprompt.to_dict(),
               "system_prompt": self.system_prompt, "structured": self.structured, "response_format": self._format}
        costs = {"per_call": (self.per_call, 1), "samples_per_request": (self.samples_per_request, 1),
                 "redraw_temperature": (self.redraw_temperature, None), "prompt_cache": (self.prompt_cache, False)}
        out.update({k: v for k, (v, default) in costs.items() if v != default})  # the paper's protocol: as before
        return out


class SamplingProposer(LLMProposer):
    """The LLM controls every LLM-search row needs beside it ("Simple Baselines are Competitive with
    Code Evolution", arXiv 2602.16805): the same model, problem, answer format, structured output
    and cost options as OPRO, and no search.

    ``shown=0`` (``--proposer llm-iid``): independent samples. Every step sends the same prompt
    (:func:`~llmopt.metaprompt.build_sampling_prompt`: no solution, no score); each proposal is a
    fresh sample with its own seed (from the run seed and its trial number, as OPRO's), and a
    repeated or invalid one is redrawn as OPRO's are. What is left of OPRO is the model's prior
    over solutions for this task: if OPRO does no better, its history did not help.

    ``shown=N`` (``--proposer llm-scs``): sequential conditioned sampling. The prompt shows the N
    latest scored solutions, oldest first, without their scores (so nothing ranks them) and asks
    for a new one: the history as a list of what was tried, without the scores that make OPRO an
    optimizer.
    """

    def __init__(self, llm: LLM, *, shown: int = 0, system_prompt: str | None = None,
                 use_store_cache: bool = True, structured: Structured = "auto", per_call: int = 1,
                 samples_per_request: int = 1, redraw_temperature: float | None = None,
                 prompt_cache: bool = False) -> None:
        if isinstance(shown, bool) or not isinstance(shown, int) or shown < 0:
            raise ValueError(f"shown must be an integer >= 0 (latest solutions shown without scores), got {shown!r}")
        meta = MetaPromptConfig(max_shown=shown, scores="hidden")
        super().__init__(llm, meta, system_prompt=system_prompt, use_store_cache=use_store_cache,
                         structured=structured, per_call=per_call, samples_per_request=samples_per_request,
                         redraw_temperature=redraw_temperature, prompt_cache=prompt_cache)
        self.kind = "llm-iid" if shown == 0 else "llm-scs"

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.llm.model}"

    @property
    def label(self) -> str:
        return self.kind

    def describe(self, problem: Problem) -> str:
        shown = f" (latest {self.metaprompt.max_shown} shown, no scores)" if self.metaprompt.max_shown else ""
        return f"{self.kind} {self.llm.model}{shown}"

    def parent(self, problem: Problem, history: SolutionHistory, step: int) -> Trial | None:
        """None: the controls show no best program; an edit applies to the problem's initial one."""
        return None

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        self._parent = None
        return build_sampling_prompt(problem, history, self.metaprompt, seed=self.seed or 0, per_call=self.per_call)

    def config(self) -> dict[str, Any]:
        out = super().config()
        del out["metaprompt"]
        out["sampling"] = {"shown": self.metaprompt.max_shown}  # its context's seed: the run's, recorded once
        return out
