"""The Problem interface: everything llmopt needs to know about one optimization problem.

llmopt itself knows nothing about linear regression, tours or instructions. A problem turns
solutions into text for the meta-prompt (``encode``), turns LLM replies back into solutions
(``decode``, which may only raise :class:`ParseError`), gives each solution a canonical ``key``
for de-duplication, and scores it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, Hashable, Sequence, TypeVar

import numpy as np

from llmopt.space import describe

S = TypeVar("S")


class ParseError(ValueError):
    """An LLM reply (or any text) could not be decoded into a solution.

    Problems raise this, or a subclass, from ``decode`` and nothing else: the optimizer records
    the reply as an INVALID trial with this message.
    """


_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")


def json_objects(text: str) -> list[dict[str, Any]]:
    """The flat JSON objects in a reply, in order: how a structured answer is found in any text.

    Only brace pairs with no nesting are tried, so hostile replies (deep nesting, huge numbers)
    cost one bounded ``json.loads`` each and never raise.
    """
    out = []
    for blob in _FLAT_OBJECT.findall(text):
        try:
            obj = json.loads(blob)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


@dataclass(frozen=True)
class CallCost:
    """The model calls of one unit of work, bounded (every reply at its max tokens): scoring one
    solution (a problem's scorer, :meth:`Problem.evaluation_cost`) or one step (a proposer's,
    ``Proposer.step_cost``). The estimate before a run multiplies them by the budget's counts and
    prices them with the model's ``token_cost``."""

    role: str  # "scorer", "validation", "optimizer"
    llm: Any  # the LLM that makes the calls (its model names the row; its token_cost prices it)
    calls: int
    prompt_tokens: int
    completion_tokens: int

    def times(self, count: int) -> "CallCost":
        return CallCost(self.role, self.llm, self.calls * count, self.prompt_tokens * count,
                        self.completion_tokens * count)


@dataclass(frozen=True)
class Evaluation:
    """A score, with the LLM calls made to compute it (a scorer model's, for prompt optimization).

    ``calls`` holds ``(item, model, completion)``: ``item`` numbers the call within this
    evaluation (an example index), so a re-scored solution's calls are recorded once.
    """

    value: float
    calls: tuple[tuple[int, str, Any], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)  # recorded with the trial (e.g. a race cut short)
    #: Text for the model on why the solution scored as it did (an exception and its line, a check
    #: that failed, examples an instruction got wrong): recorded with the trial (its
    #: ``metrics["feedback"]``) and shown beside it in the meta-prompt with ``--feedback``.
    feedback: str | None = None


class Direction(str, enum.Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def better(self, a: float, b: float) -> bool:
        """True if value ``a`` is strictly better than ``b``."""
        return a < b if self is Direction.MINIMIZE else a > b


GAP_LADDER = (50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.0)  # percent: the fixed-target ladder with a known optimum


def gap_ladder(optimum: float | None, direction: Direction | str) -> list[tuple[str, float]]:
    """Targets at :data:`GAP_LADDER` gaps to ``optimum`` (easiest first); none for an unknown or zero optimum."""
    if optimum is None or optimum == 0:
        return []
    sign = 1.0 if Direction(direction) is Direction.MINIMIZE else -1.0
    return [(f"gap {g:g}%", float(optimum) + sign * abs(float(optimum)) * g / 100.0) for g in GAP_LADDER]


def gap_pct(value: float, optimum: float | None, direction: Direction | str) -> float | None:
    """How far ``value`` falls short of ``optimum``, in percent of ``|optimum|``: positive when worse,
    0 at the optimum, negative if better (an optimum that was only the best known). Direction-aware:
    ``100 * (value - optimum) / |optimum|`` when minimizing, ``100 * (optimum - value) / |optimum|``
    when maximizing. None when the optimum is unknown (None) or 0 (no relative gap to it).

    For code that holds only stored numbers; with a problem at hand, :meth:`Problem.gap_pct`.
    """
    if optimum is None or optimum == 0:
        return None
    optimum = float(optimum)
    shortfall = value - optimum if Direction(direction) is Direction.MINIMIZE else optimum - value
    return 100.0 * shortfall / abs(optimum)


def clamp(values: Sequence[float], ranges: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """``values`` each clamped into its (low, high) of ``ranges``; a non-finite value becomes its
    range's low end (a feature is always a finite number inside its range)."""
    return tuple(min(max(float(v), lo), hi) if math.isfinite(float(v)) else float(lo)
                 for v, (lo, hi) in zip(values, ranges))


class Problem(ABC, Generic[S]):
    """One optimization problem, as the OPRO loop sees it.

    Subclasses set ``name`` and ``direction`` and implement the abstract methods. The defaults
    of the other methods render the paper's linear-regression layout (``input:`` / ``value:``).
    """

    name: str = "problem"
    direction: Direction = Direction.MINIMIZE
    #: What one solution is called in the meta-prompt ("(w, b) pair", "trace", "text").
    solution_noun: str = "solution"
    solution_plural: str = "solutions"
    #: What the score is called ("function value", "length", "score").
    value_noun: str = "value"
    #: Label above a solution and above its score in the meta-prompt.
    solution_label: str = "input"
    value_label: str = "value"
    #: Past solutions the paper shows for this problem (the CLI's default for --show).
    default_shown: int = 20
    #: How the meta-prompt shows scores unless told (``MetaPromptConfig(scores="auto")``, the CLI's
    #: default for --scores): a few significant digits of their spread, so that different scores stay
    #: different; the paper's problems pin its integers ("rounded").
    default_scores: str = "significant"
    #: Whether the meta-prompt adds the generic "arranged in ascending order" sentence after
    #: ``describe()`` (False: the description words it itself, as the prompt-optimization paper does).
    states_order: bool = True
    #: How evolutionary operators (``--proposer evoprompt-ga`` / ``evoprompt-de``) speak of solutions:
    #: "generic" (this problem's nouns, its encoding and description) or "prompt" (EvoPrompt's own
    #: words for instructions, with its worked examples). See :mod:`llmopt.proposers.evoprompt_templates`.
    operator_style: str = "generic"

    # --- text ---------------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> str:
        """The task description that opens the meta-prompt (what is optimized, how to read it)."""

    def operator_context(self) -> str:
        """What an evolutionary operator's request opens with (``--proposer evoprompt-ga|de`` on a
        "generic" problem): the task and what a solution means, without the meta-prompt's talk of
        past solutions and scores. By default :meth:`describe`."""
        return self.describe()

    @abstractmethod
    def answer_format(self) -> str:
        """The sentence telling the LLM how to write its answer (closes the meta-prompt)."""

    def closing_instruction(self) -> str | None:
        """The request for a new solution that closes the meta-prompt (None: the generic one,
        "Give me a new <solution> that is different from all <solutions> above, and has a
        <value> lower/higher than any of the above.")."""
        return None

    def answer_schema(self) -> dict[str, Any] | None:
        """JSON schema of a structured answer (None: this problem has no structured form).

        Where the model supports it the LLM door asks for output matching it: a grammar for the
        embedded model, ``response_format`` for hosted providers. ``decode`` must accept it.
        """
        return None

    def structured_answer_format(self) -> str:
        """The answer-format sentence used instead of ``answer_format`` under structured output."""
        return f"Reply with only a JSON object that follows this schema: {json.dumps(self.answer_schema())}"

    # --- several answers in one reply (a proposer's ``per_call``) -------------------------
    def closing_instruction_many(self, count: int) -> str | None:
        """The request for ``count`` new solutions in one reply (None: the generic one, "Give me
        <count> new <solutions> that are different from all <solutions> above and from each other,
        and have <value>s lower/higher than any of the above.")."""
        return None

    def answers_format(self, count: int, structured: bool) -> str:
        """How to write ``count`` answers in one reply: the JSON object of :meth:`answers_schema`,
        or the one-answer format repeated, one answer after the other."""
        if structured:
            return (f'Reply with only a JSON object of the form {{"answers": [...]}} whose list holds {count} '
                    f"answers, each a JSON object that follows this schema: {json.dumps(self.answer_schema())}")
        return (f"{self.answer_format()} Write the {count} {self.solution_plural} one after another, each on its "
                "own line in that format.")

    def answers_schema(self, count: int) -> dict[str, Any] | None:
        """The structured form of ``count`` answers: ``{"answers": [<answer_schema>, ...]}``."""
        one = self.answer_schema()
        if one is None:
            return None
        answers = {"type": "array", "items": one, "minItems": count, "maxItems": count}
        return {"type": "object", "properties": {"answers": answers}, "required": ["answers"],
                "additionalProperties": False}

    def split_answers(self, text: str, count: int) -> list[str]:
        """The texts of up to ``count`` answers in one reply, in order, each for :meth:`decode`.

        A JSON object with an ``answers`` list gives its items (each re-serialized); otherwise the
        reply's lines are read in order and a run of lines becomes an answer as soon as it
        decodes (an answer may span lines: a tag opened on one line and closed on another).
        Problems whose answers are written some other way override this."""
        start = text.find("{")
        if start >= 0:
            try:
                obj = json.loads(text[start:text.rfind("}") + 1])
            except (ValueError, RecursionError):
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("answers"), list):
                return [json.dumps(item) for item in obj["answers"][:count]]
        out: list[str] = []
        lines: list[str] = []
        for line in text.splitlines():
            lines.append(line)
            chunk = "\n".join(lines).strip()
            try:
                self.decode(chunk)
            except Exception:  # not yet an answer: read on
                continue
            out.append(chunk)
            lines = []
            if len(out) == count:
                break
        return out

    @abstractmethod
    def encode(self, solution: S) -> str:
        """Solution -> the text shown in the meta-prompt. ``decode(encode(s))`` must equal ``s``."""

    @abstractmethod
    def decode(self, text: str) -> S:
        """LLM reply -> solution. Raises :class:`ParseError` (only) when the reply has none."""

    def from_text(self, text: str) -> S:
        """The solution whose ``encode`` is ``text`` (how stored trials are read back on resume)."""
        return self.decode(text)

    def key(self, solution: S) -> Hashable:
        """Canonical identity for de-duplication (two solutions with one key are one solution)."""
        return self.encode(solution)

    def similarity_text(self, solution: S) -> str:
        """The text novelty filtering compares (``--novelty-threshold``, :mod:`llmopt.novelty`): the
        encoded text; a problem whose texts differ in what does not matter (a program's comments)
        returns a normalized form, so that only what matters counts as different."""
        return self.encode(solution)

    def render(self, text: str, value: str | None) -> str:
        """One exemplar of the meta-prompt; ``value`` is None when scores are hidden."""
        if value is None:
            return f"{self.solution_label}:\n{text}"
        return f"{self.solution_label}:\n{text}\n{self.value_label}:\n{value}"

    def context(self, rng: np.random.Generator) -> str | None:
        """Text placed between the past solutions and the closing instruction (None: nothing).

        Drawn anew each step from ``rng`` (prompt optimization shows 3 random training examples).
        """
        return None

    # --- search space -------------------------------------------------------------------
    @abstractmethod
    def score(self, solution: S) -> float:
        """The objective value (lower is better when minimizing)."""

    def evaluate(self, solution: S) -> Evaluation:
        """The score with the LLM calls it took; problems that call a model override this."""
        return Evaluation(float(self.score(solution)))

    def evaluate_raced(self, solution: S, bar: float) -> Evaluation:
        """Score ``solution``, but stop early once it cannot beat ``bar``: a problem whose score is
        an average over many costly items (prompt optimization's scorer calls) overrides this to
        score a growing sample and give up when a confidence bound of the score stays worse than
        ``bar``; the value is then the sample's estimate and ``metrics["race"]`` says how much was
        scored. The optimizer's ``race`` option calls it; by default it scores in full."""
        return self.evaluate(solution)

    @property
    def has_validation(self) -> bool:
        """Whether the problem holds data apart from what it scores on (a validation split), so the
        optimizer can watch for overfitting (``Optimizer(validate_every=K)``); False by default."""
        return False

    def evaluate_validation(self, solution: S) -> Evaluation:
        """``solution``'s score on the validation split, with the calls it took, as :meth:`evaluate`
        gives its training score; problems whose ``has_validation`` is True override this."""
        raise NotImplementedError(f"{type(self).__name__} has no validation split (has_validation is False): it "
                                  "cannot score solutions on held-out data")

    @property
    def can_race(self) -> bool:
        """Whether :meth:`evaluate_raced` can stop early (the problem overrides it)."""
        return type(self).evaluate_raced is not Problem.evaluate_raced

    def bind_cache(self, cache: Any) -> None:
        """Offered the run store's response cache (problems that call a model keep it)."""

    @abstractmethod
    def initial_solutions(self, rng: np.random.Generator) -> list[S]:
        """Starting solutions (the paper's warm start), drawn from the given generator."""

    @abstractmethod
    def random_solution(self, rng: np.random.Generator) -> S:
        """One draw of the random-search control (a problem with none sets ``can_draw = False``)."""

    #: Whether :meth:`random_solution` draws (False: the problem has no random draw, as programs
    #: have none: the random control refuses it in one line and the contract checks starts only).
    can_draw: bool = True

    # --- cost estimates before a run ------------------------------------------------------------
    def evaluation_cost(self, split: str = "train") -> CallCost | None:
        """Upper bound of the model calls that scoring one solution on ``split`` ("train", or
        "validation") makes, for the estimate before a run; None: scoring calls no model."""
        return None

    def typical_text(self) -> str:
        """A solution's text as long as a typical proposal, for estimating the tokens of prompts that
        show solutions: the longest starting solution's (a problem may know better)."""
        texts = [self.encode(s) for s in self.initial_solutions(np.random.default_rng(0))]
        return max(texts, key=len, default="")

    def search_space(self) -> dict[str, Any] | None:
        """A bounded JSON schema of the solutions' JSON form (:meth:`to_json`), or None (no such form).

        What schema-driven search works on: optuna's samplers (``--proposer optuna:tpe``) draw from it,
        and :mod:`llmopt.testing` derives valid solutions from it. Every number in it has bounds,
        every string an ``enum`` (see :mod:`llmopt.space`). It may be narrower than what ``decode``
        accepts (linear regression: the random-search box, while the LLM may propose any pair).
        """
        return None

    def random_space(self) -> str:
        """What :meth:`random_solution` draws from, in a few words, for the table row of the random
        control (``random in [10, 20]²``): a control states its search space. By default the
        :meth:`search_space` described (:func:`llmopt.space.describe`), which is right when
        ``random_solution`` draws uniformly from it; problems that draw otherwise override this."""
        schema = self.search_space()
        return "the draws of random_solution" if schema is None else describe(schema)

    def to_json(self, solution: S) -> Any:
        """The solution as a JSON value of :meth:`search_space`'s shape (problems with one override this)."""
        raise NotImplementedError(f"{type(self).__name__} has no JSON form of its solutions (search_space is None)")

    def from_json(self, value: Any) -> S:
        """The solution of a JSON value, the inverse of :meth:`to_json`; raises :class:`ParseError` if
        ``value`` is none. The default decodes it as a reply (``decode`` accepts ``answer_schema()``'s JSON)."""
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ParseError(f"not a JSON value: {exc}") from None
        return self.decode(text)

    @property
    def optimum(self) -> float | None:
        """The best value this instance can reach, if known (None: unknown, the default). A problem
        that knows it returns it here (and records it under ``"optimum"`` in ``config()``, where
        stored runs read it back); optimality gaps are measured against it."""
        return None

    def gap_pct(self, value: float) -> float | None:
        """The optimality gap of ``value`` in percent (see :func:`gap_pct`); None if no optimum is known."""
        return gap_pct(value, self.optimum, self.direction)

    def is_solved(self, solution: S) -> bool:
        """True if ``solution`` is the known optimum (the paper's success criterion)."""
        return False

    def targets(self) -> list[tuple[str, float]]:
        """The ladder of targets of the fixed-target views (``llmopt plot``'s ECDF), easiest first, as
        (label, value) pairs: by default gaps of 50, 20, 10, 5, 2, 1 and 0 % to the known optimum; none when
        no optimum is known (the figure then uses the best value any run found)."""
        return gap_ladder(self.optimum, self.direction)

    def config(self) -> dict[str, Any]:
        """JSON-able parameters that identify the instance; recorded with every run."""
        return {"name": self.name}

    def metrics(self, history: Any) -> dict[str, Any]:
        """Problem-specific summary numbers of a finished run (steps to optimum, gap, ...)."""
        return {}

    # --- features (quality-diversity: ``--proposer map-elites``) --------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """Names of the measures :meth:`features` returns, in order (MAP-Elites bins the first two
        unless told which). By default two generic measures of the encoded text: its length in
        characters and the number of distinct characters in it; problems name their own."""
        return ("chars", "distinct_chars")

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        """(low, high) of each feature, so that bins mean something: :meth:`features` never leaves
        them (a larger value is clamped to ``high``). Fixed per instance (recorded with a run). By
        default: up to four times the typical solution's length (at least 100 characters), and up to
        100 distinct characters."""
        if getattr(self, "_text_range", None) is None:  # typical_text() draws the starts: once per instance
            self._text_range = float(max(100, 4 * len(self.typical_text())))
        return ((0.0, self._text_range), (0.0, 100.0))

    def features(self, solution: S) -> tuple[float, ...]:
        """Cheap measures of ``solution`` itself (no evaluation), one per :meth:`feature_names`, each
        finite and inside its :meth:`feature_ranges`: where a solution sits in a MAP-Elites archive.
        A pure function of the solution, so it is computed when a proposal is made and again from
        stored trials on resume, with the same result."""
        text = self.encode(solution)
        return clamp((float(len(text)), float(len(set(text)))), self.feature_ranges())

    def revise(self, text: str, parent: S | None) -> S:
        """The solution a reply makes of ``parent``, the solution the proposer showed the model as the
        one to change (None: none was). By default the reply stands alone (:meth:`decode`); a problem
        whose replies may be edits of a parent (a program's SEARCH/REPLACE blocks) applies them.
        Raises :class:`ParseError` only."""
        return self.decode(text)
