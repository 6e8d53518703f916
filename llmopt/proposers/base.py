"""The proposer protocol: where candidate solutions come from, numbered by the optimizer.

A :class:`Proposer` turns trial numbers into :class:`Proposal` objects. Every proposer derives all
its randomness from (run seed, trial number) or replays it from the history, so a resumed run
proposes exactly what the original did. The proposers themselves live beside this module: OPRO
(:mod:`.opro`), the random-search control (:mod:`.random`) and optuna's samplers (:mod:`.classical`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

from llmopt.history import SolutionHistory, Trial
from llmopt.llm.client import LLM, ResponseCache, response_format
from llmopt.problem import CallCost, ParseError, Problem

#: Called as each LLM call finishes: (trial number, model, completion); a proposer whose calls
#: each have their own prompt (not the step's meta-prompt) passes it as the keyword ``prompt``.
CallHook = Callable[..., None]


@dataclass(frozen=True)
class Proposal:
    """One proposal before it becomes a trial."""

    number: int
    source: str
    solution: Any = None
    raw: str | None = None  # the LLM's reply, verbatim
    error: str | None = None  # why there is no solution
    call_failed: bool = False  # the call itself failed (FAILED), not the reply (INVALID)
    parents: tuple[int, ...] = ()  # trial numbers it was made from (recorded as the trial's provenance)
    #: Where in a population it was made (``{"island": 3}``, ``{"cell": [2, 5]}``): recorded with the trial
    #: (its metrics' ``origin``), shown by ``llmopt show --step``, and read back by a resumed proposer.
    origin: dict[str, Any] | None = None


class Proposer(ABC):
    """Produces proposals for given trial numbers."""

    kind: str = "proposer"

    @property
    @abstractmethod
    def source(self) -> str:
        """Provenance label recorded on every trial ("random", "llm:<model>")."""

    @property
    def label(self) -> str:
        """Short name of the proposer in default run names ("llm", "random", "optuna:tpe")."""
        return self.kind

    def describe(self, problem: Problem) -> str:
        """What ran, in a few words, for the row of a table: the method, its model, and for a control
        the space it searched (``random in [10, 20]²``, ``opro local/smollm2``), so that a row's
        label never hides what ran."""
        return self.label

    def validate(self) -> None:
        """Raise a clear error for unusable settings, before any budget is spent."""

    #: The run's seed, from :meth:`bind` (None: not bound to a run yet).
    seed: int | None = None

    def bind(self, problem: Problem, seed: int) -> None:
        """Bind to a run: its problem and seed, once, before the first ask (the optimizer calls it;
        so may a check before the run, with the same problem and seed). Everything the proposer
        draws derives from this seed (the trial numbers name the streams), so a proposer never
        learns its run late. Subclasses that build seeded state (optuna's sampler) extend it."""
        self.seed = int(seed)
        self.prepare(problem)

    def prepare(self, problem: Problem) -> None:
        """Adapt to the problem before the run (e.g. decide on structured output); see :meth:`bind`."""

    def resuming(self, recorded: dict[str, Any]) -> None:
        """Before a resumed run is checked against its recorded configuration (``recorded``, this
        proposer's part of it): a setting left to its default may take the value the run recorded,
        so that a run recorded before a default changed resumes as it ran."""

    def uses_llm(self) -> bool:
        return False

    def step_cost(self, problem: Problem, proposals: int, max_rounds: int) -> CallCost | None:
        """Upper bound of the model requests one step makes (``proposals`` asked, redrawn up to
        ``max_rounds``), with a typical request's tokens, for the estimate before a run; None: the
        proposer calls no model. Times a problem's :meth:`Problem.evaluation_cost`, it is the run's."""
        return None

    #: Whether the optimizer may draw again (``max_rounds``) to replace a step's invalid and
    #: duplicate proposals. An evolutionary proposer's generation is one draw per member: a child
    #: that fails is lost, as in EvoPrompt, so it says False.
    redraws: bool = True

    def step_size(self, requested: int) -> int:
        """How many proposals the step just begun (:meth:`begin_step`) asks for: ``requested``
        (the optimizer's ``proposals_per_step``), or the proposer's own (a population's size)."""
        return requested

    def bind_cache(self, cache: ResponseCache) -> None:
        """Offered the run store's response cache; proposers without a model ignore it."""

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Prepare a step; returns the meta-prompt to record (None if the proposer has none)."""
        return None

    @abstractmethod
    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        """One proposal per trial number, in the same order."""

    def propose_round(self, problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: CallHook | None = None, *, attempt: int = 0) -> list[Proposal]:
        """One proposal per number of ``todo``, in its order: the numbers of a round of ``ask``
        (``numbers``, all of them) that are not recorded yet (all of them, unless a resumed run
        replays a round it was interrupted in). ``attempt`` counts the step's rounds from 0 (a
        redraw round is 1 or more). The default asks :meth:`propose` for ``todo``; a proposer
        whose calls serve several numbers at once (several answers per reply) groups ``numbers``,
        so that a replayed round makes the same calls."""
        return self.propose(problem, prompt, todo, seed, on_call)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}


def decode_reply(problem: Problem, number: int, source: str, text: str, parent: Trial | None = None) -> Proposal:
    """Decode one reply; a reply that does not decode is an INVALID proposal, never an exception.

    ``parent``: the trial the model was shown as the one to change (a program's edits apply to it;
    :meth:`~llmopt.problem.Problem.revise`), recorded as the proposal's parent."""
    try:
        if parent is None:
            return Proposal(number, source, solution=problem.revise(text, None), raw=text)
        return Proposal(number, source, solution=problem.revise(text, parent.solution), raw=text,
                        parents=(parent.number,))
    except ParseError as exc:
        return Proposal(number, source, raw=text, error=f"ParseError: {exc}"[:1000])
    except Exception as exc:  # a decoder bug must not kill a paid-for run; the contract tests catch it
        return Proposal(number, source, raw=text,
                        error=f"decode raised {type(exc).__name__} (should raise ParseError): {exc}"[:1000])


class ModelProposer(Proposer):
    """A proposer whose proposals are a model's replies (OPRO, its LLM controls, EvoPrompt, islands,
    MAP-Elites): what they share about their model, so that none of them writes it again."""

    llm: LLM
    #: Whether the run store's response cache answers repeated requests (``--no-cache``: False).
    use_store_cache: bool = True

    def uses_llm(self) -> bool:
        return True

    def validate(self) -> None:
        self.llm.validate()

    def bind_cache(self, cache: ResponseCache) -> None:
        if self.use_store_cache and self.llm.cache is None:
            self.llm = self.llm.with_cache(cache)

    def request_cost(self, prompt: str, calls: int) -> CallCost:
        """The estimate of ``calls`` requests like ``prompt``, each answered in full (``max_tokens``)."""
        return CallCost("optimizer", self.llm, calls, calls * self.llm.count_tokens(prompt),
                        calls * self.llm.config.max_tokens)


def answer_format(schema: dict[str, Any] | None, llm: LLM, structured: str) -> dict[str, Any] | None:
    """The ``response_format`` of a model proposer's requests: structured output (``structured``: auto,
    json_schema, json_object or off) where the problem has an answer ``schema`` and, for "auto", the
    model supports it; None: free text."""
    mode = ("json_schema" if llm.supports_structured() else "off") if structured == "auto" else structured
    if schema is None or mode == "off":
        return None
    return response_format(schema, "json_object" if mode == "json_object" else "json_schema")
