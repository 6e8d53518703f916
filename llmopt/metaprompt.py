"""The meta-prompt: a pure function of (problem, history, config).

Layout, as in the paper: the problem's description and a sentence on how the exemplars are
ordered; the best past solutions with their scores; the closing instruction and the answer
format. Every knob the paper ablates is a field of :class:`MetaPromptConfig`.

:func:`build_sampling_prompt` is the prompt of the LLM controls that search no history
("Simple Baselines are Competitive with Code Evolution", arXiv 2602.16805): the same problem,
answer format and structured output, with no solution and no score shown (independent samples),
or only the latest solutions without their scores (sequential conditioned sampling).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Sequence

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction, Problem
from llmopt.seeding import stream

Order = Literal["worst_to_best", "best_to_worst", "random"]
ScoreDisplay = Literal["auto", "exact", "rounded", "significant", "buckets", "hidden"]
SCORES = ("auto", "exact", "rounded", "significant", "buckets", "hidden")
#: Most decimals ``scores="significant"`` shows (values closer than this print alike).
MAX_DECIMALS = 12


@dataclass(frozen=True, kw_only=True)
class MetaPromptConfig:
    """How past solutions are shown. Defaults are the paper's (top 20, best last), with the scores as
    the problem shows them (``scores="auto"``: its ``default_scores``, the paper's integers for linear
    regression, TSP and prompt optimization; significant digits for a user's function)."""

    max_shown: int = 20
    order: Order = "worst_to_best"
    scores: ScoreDisplay = "auto"
    decimals: int = 0  # for scores="rounded"
    digits: int = 3  # for scores="significant": significant digits of the shown scores' spread
    buckets: int = 10  # for scores="buckets"
    bucket_range: tuple[float, float] | None = None  # None: the range of the shown scores
    instruction: str | None = None  # replaces the default closing instruction
    #: Show each exemplar's feedback (its evaluation's text: the exception and its line, the check
    #: that failed) under its score; off by default, so the paper's meta-prompts stay word for word.
    feedback: bool = False
    feedback_chars: int = 600  # the most of one exemplar's feedback shown
    structured: bool = False  # answer format for structured output (set by the proposer)

    def __post_init__(self) -> None:
        if self.max_shown < 0:
            raise ValueError(f"max_shown must be >= 0, got {self.max_shown}")
        if self.order not in ("worst_to_best", "best_to_worst", "random"):
            raise ValueError(f"order must be worst_to_best, best_to_worst or random, got {self.order!r}")
        if self.scores not in SCORES:
            raise ValueError(f"scores must be {', '.join(SCORES[:-1])} or {SCORES[-1]}, got {self.scores!r}")
        if self.decimals < 0:
            raise ValueError(f"decimals must be >= 0, got {self.decimals}")
        if not 1 <= self.digits <= MAX_DECIMALS:
            raise ValueError(f"digits must be in 1..{MAX_DECIMALS}, got {self.digits}")
        if not 0 < self.feedback_chars <= 20_000:
            raise ValueError(f"feedback_chars must be in 1..20000, got {self.feedback_chars}")
        if self.buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {self.buckets}")
        if self.bucket_range is not None and not self.bucket_range[0] < self.bucket_range[1]:
            raise ValueError(f"bucket_range must be (low, high) with low < high, got {self.bucket_range}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.scores != "significant":
            del out["digits"]  # nor do runs recorded before digits existed need it
        if not self.feedback:  # runs recorded before feedback existed resume unchanged
            del out["feedback"], out["feedback_chars"]
        return out

    def for_problem(self, problem: Problem) -> "MetaPromptConfig":
        """``scores="auto"`` made the problem's own display (what a run records)."""
        return self if self.scores != "auto" else replace(self, scores=problem.default_scores)


def significant_decimals(values: Sequence[float], digits: int) -> int:
    """Decimals that show the spread of ``values`` to ``digits`` significant digits (the magnitude
    of a single value when they are all equal), and more while two different values would print
    alike: 1.569 and 2.5 are 1.569 and 2.500, never both 2."""
    finite = sorted({float(v) for v in values if math.isfinite(v)})
    if not finite:
        return 0
    scale = (finite[-1] - finite[0]) or max(abs(v) for v in finite)
    decimals = 0 if scale == 0 else max(0, digits - 1 - math.floor(math.log10(scale)))
    while decimals < MAX_DECIMALS and len({f"{v:.{decimals}f}" for v in finite}) < len(finite):
        decimals += 1
    return min(decimals, MAX_DECIMALS)


def _fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.00"


def format_value(value: float, config: MetaPromptConfig, low: float, high: float,
                 decimals: int | None = None) -> str | None:
    """The score as the meta-prompt shows it (None when hidden); ``decimals``: those of
    ``scores="significant"``, chosen once for all the shown scores (:func:`significant_decimals`)."""
    if config.scores == "hidden":
        return None
    if not math.isfinite(value) and config.scores != "buckets":
        return str(value)
    if config.scores == "exact":
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text
    if config.scores == "rounded":
        if config.decimals == 0:
            return str(int(round(value)))
        return f"{value:.{config.decimals}f}"
    if config.scores in ("significant", "auto"):
        return _fixed(value, significant_decimals([low, high, value], config.digits) if decimals is None else decimals)
    low, high = config.bucket_range or (low, high)
    if not math.isfinite(value) or high <= low:
        return "1"
    fraction = min(max((value - low) / (high - low), 0.0), 1.0)
    return str(min(int(fraction * config.buckets), config.buckets - 1) + 1)


def order_sentence(problem: Problem, config: MetaPromptConfig) -> str:
    plural = f"The {problem.solution_plural}"
    better = "lower" if problem.direction is Direction.MINIMIZE else "higher"
    if config.order == "random":
        return f"{plural} are listed in random order; {better} {problem.value_noun}s are better."
    worst_first = config.order == "worst_to_best"
    descending = worst_first == (problem.direction is Direction.MINIMIZE)
    if config.scores == "hidden":
        first, last = ("worst", "best") if worst_first else ("best", "worst")
        return f"{plural} are arranged from the {first} to the {last}."
    way = "descending" if descending else "ascending"
    return (f"{plural} are arranged in {way} order based on their {problem.value_noun}s, "
            f"where {better} values are better.")


def closing_instruction(problem: Problem, config: MetaPromptConfig, per_call: int = 1) -> str:
    if config.instruction is not None:
        return config.instruction
    better = "lower" if problem.direction is Direction.MINIMIZE else "higher"
    if per_call > 1:
        own = problem.closing_instruction_many(per_call)
        if own is not None:
            return own
        return (f"Give me {per_call} new {problem.solution_plural} that are different from all "
                f"{problem.solution_plural} above and from each other, and have {problem.value_noun}s {better} "
                "than any of the above.")
    own = problem.closing_instruction()
    if own is not None:
        return own
    return (
        f"Give me a new {problem.solution_noun} that is different from all {problem.solution_plural} above, "
        f"and has a {problem.value_noun} {better} than any of the above."
    )


def shown_trials(history: SolutionHistory, config: MetaPromptConfig, seed: int = 0) -> list[Trial]:
    """The exemplars in the order they appear in the prompt (``seed``: the run's, for ``order="random"``)."""
    trials = history.top_k(config.max_shown)  # worst-to-best
    if config.order == "best_to_worst":
        return trials[::-1]
    if config.order == "random":
        rng = stream(seed, "metaprompt-order", len(history))
        return [trials[i] for i in rng.permutation(len(trials))]
    return trials


def feedback_of(trial: Trial, config: MetaPromptConfig) -> str:
    """The lines an exemplar's feedback adds under it (``config.feedback``; "" when off or none)."""
    text = trial.metrics.get("feedback") if config.feedback else None
    if not isinstance(text, str) or not text.strip():
        return ""
    text = text.strip()
    if len(text) > config.feedback_chars:
        text = text[:config.feedback_chars].rstrip() + " [...]"
    return f"\nfeedback:\n{text}"


def answer_format(problem: Problem, config: MetaPromptConfig, per_call: int = 1) -> str:
    """How to write the answer(s): the problem's format, structured or not, for one or ``per_call``."""
    if per_call > 1:
        return problem.answers_format(per_call, config.structured)
    return problem.structured_answer_format() if config.structured else problem.answer_format()


def build_meta_prompt(problem: Problem, history: SolutionHistory, config: MetaPromptConfig, *, seed: int = 0,
                      per_call: int = 1) -> str:
    """Render the meta-prompt. Same inputs, same string: it is recorded with every step. ``seed``:
    the run's (a random order, the problem's context draws); ``per_call``: answers asked for in one
    reply (the proposer's)."""
    config = config.for_problem(problem)
    trials = shown_trials(history, config, seed)
    values = [float(t.value) for t in trials if t.value is not None and math.isfinite(t.value)]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    decimals = significant_decimals(values, config.digits) if config.scores == "significant" else None
    exemplars = "\n\n".join(
        problem.render(t.text or "", format_value(float(t.value), config, low, high, decimals))  # type: ignore[arg-type]
        + feedback_of(t, config) for t in trials
    )
    head = problem.describe()
    if problem.states_order:
        head = f"{head} {order_sentence(problem, config)}"
    context = problem.context(stream(seed, "metaprompt-context", len(history)))
    tail = f"{closing_instruction(problem, config, per_call)} {answer_format(problem, config, per_call)}".strip()
    return "\n\n".join(part for part in (head, exemplars, context, tail) if part)


def recent_trials(history: SolutionHistory, count: int) -> list[Trial]:
    """The ``count`` latest scored solutions, oldest first (what sequential conditioned sampling shows)."""
    scored = sorted((t for t in history if t.state is TrialState.COMPLETE), key=lambda t: t.number)
    return scored[-count:] if count > 0 else []


def sampling_instruction(problem: Problem, count: int, conditioned: bool) -> str:
    """The request of the LLM controls: a solution as good as possible, never "better than the above"
    (they see no score); with ``conditioned``, one different from the solutions shown."""
    way = "low" if problem.direction is Direction.MINIMIZE else "high"
    plural, noun, value = problem.solution_plural, problem.solution_noun, problem.value_noun
    if count > 1:
        differ = f"different from all {plural} above and from each other" if conditioned else "different from each other"
        return f"Give me {count} {'new ' if conditioned else ''}{plural}, {differ}, whose {value}s are as {way} as possible."
    if conditioned:
        return f"Give me one new {noun}, different from all {plural} above, whose {value} is as {way} as possible."
    return f"Give me one {noun} whose {value} is as {way} as possible."


def build_sampling_prompt(problem: Problem, history: SolutionHistory, config: MetaPromptConfig, *, seed: int = 0,
                          per_call: int = 1) -> str:
    """The prompt of ``llm-iid`` (``config.max_shown == 0``: the same text at every step) and ``llm-scs``
    (the ``max_shown`` latest solutions, oldest first, without scores). It opens with the problem's
    :meth:`~llmopt.problem.Problem.operator_context` (the task without OPRO's talk of past solutions
    and scores); its context (prompt optimization's examples) is drawn once per run, from
    ``seed`` (the run's), so independent samples share one prompt; then the request and the
    problem's answer format, as OPRO's."""
    shown = recent_trials(history, config.max_shown)
    head = problem.operator_context().strip()
    exemplars = ""
    if shown:
        lead = f"Below are the latest {problem.solution_plural} proposed, oldest first, without their {problem.value_noun}s."
        exemplars = lead + "\n\n" + "\n\n".join(problem.render(t.text or "", None) for t in shown)
    context = problem.context(stream(seed, "sampling-context"))
    tail = f"{sampling_instruction(problem, per_call, bool(shown))} {answer_format(problem, config, per_call)}".strip()
    return "\n\n".join(part for part in (head, exemplars, context, tail) if part)
