"""One read path for stored runs: what compare's tables, plot's figures and the HTML report read of a run.

Reading a run rebuilds no problem and solves nothing. Everything comes from the store: the run's
record, trials, calls, usage and validations, and the facts recorded with it when it ran
(:func:`record_facts`: the problem's optimum, its ladder of targets, which trials its own success
test accepted, the baselines' values, what ran in words). A run stored before facts were recorded
reads with what its record holds (the optimum in its recorded problem settings, success judged by
value against it); :func:`read_run` says which through :attr:`StoredRun.has_facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm.usage import Usage
from llmopt.problem import Direction, Problem, gap_ladder, gap_pct
from llmopt.store import RunRecord, RunStore, ValidationRecord
from llmopt.validation import chosen

#: The axes a spend is counted on (a budget column, ``--budget AXIS=AMOUNT``).
AXES = ("evals", "tokens", "usd", "seconds")


@dataclass(frozen=True)
class Spend:
    """What a run had spent when it scored each of its solutions, in order (starting points
    included), on every axis a budget can be counted in; read from the stored trials and calls.
    Tokens and dollars are those of every call up to and including the trial's own (the
    optimizer's and the scorer's, redraws and failed calls too); seconds are wall-clock since the
    run's first step began (a resumed run's pause included)."""

    values: np.ndarray
    evals: np.ndarray
    tokens: np.ndarray
    usd: np.ndarray
    seconds: np.ndarray
    total: dict[str, float]

    def axis(self, name: str) -> np.ndarray:
        if name not in AXES:
            raise ValueError(f"unknown axis {name!r} (expected one of {', '.join(AXES)})")
        return getattr(self, name)


def run_spend(store: RunStore, run: RunRecord, history: Any) -> Spend:
    """A stored run's :class:`Spend` (``history``: its trials, in number order)."""
    calls = sorted(store.calls(run.id), key=lambda c: c.number)
    numbers = np.array([c.number for c in calls], dtype=float)
    tokens = np.cumsum([c.prompt_tokens + c.completion_tokens for c in calls], dtype=float)
    usd = np.cumsum([c.cost_usd or 0.0 for c in calls], dtype=float)
    created = {r["number"]: r["created"] for r in store.records("trials", run.id)}
    began = min((r["started"] for r in store.records("steps", run.id)), default=min(created.values(), default=0.0))
    scored = [t for t in history if t.state is TrialState.COMPLETE]

    def spent_by(cumulative: np.ndarray, number: int) -> float:
        i = int(np.searchsorted(numbers, number, side="right"))
        return float(cumulative[i - 1]) if i else 0.0

    last = max((c.number for c in calls), default=-1)
    return Spend(values=np.array([float(t.value) for t in scored]),
                 evals=np.arange(1, len(scored) + 1, dtype=float),
                 tokens=np.array([spent_by(tokens, t.number) for t in scored]),
                 usd=np.array([spent_by(usd, t.number) for t in scored]),
                 seconds=np.array([max(0.0, created.get(t.number, began) - began) for t in scored]),
                 total={"evals": float(len(scored)), "tokens": spent_by(tokens, last), "usd": spent_by(usd, last),
                        "seconds": max([0.0, *(c - began for c in created.values())])})


@dataclass(frozen=True)
class Reference:
    """A non-LLM answer to the same instance: a classical solver, a fixed prompt, the optimum."""

    name: str
    value: float
    seconds: float | None = None
    solution: Any = field(default=None, compare=False)


def reaches(value: float, target: float, direction: Direction) -> bool:
    """``value`` is at least as good as ``target`` (up to a relative 1e-9, for floating sums)."""
    slack = 1e-9 * max(1.0, abs(target))
    return value <= target + slack if direction is Direction.MINIMIZE else value >= target - slack


@dataclass(frozen=True)
class ProblemFacts:
    """A run's problem as its readers need it, with no Problem object: its direction, optimum, ladder
    of targets, what its values are called, and which trials its own success test accepted.

    ``solved``: the numbers of the trials the problem's ``is_solved`` accepted (empty for a problem
    without a success test); None when that was not recorded (a run stored before facts were), in
    which case a trial solves the run when it reaches the recorded optimum."""

    name: str
    direction: Direction
    optimum: float | None = None
    value_noun: str = "value"
    ladder: tuple[tuple[str, float], ...] | None = None  # None: the default gaps to the optimum
    success_test: bool = False
    solved: frozenset[int] | None = None
    drawable: bool = False  # the problem can draw a solution (a grid rebuilds it for that figure only)
    recorded: dict[str, Any] = field(default_factory=dict, compare=False)  # the run's recorded problem settings

    def config(self) -> dict[str, Any]:
        return self.recorded

    def gap_pct(self, value: float) -> float | None:
        return gap_pct(value, self.optimum, self.direction)

    def targets(self) -> list[tuple[str, float]]:
        return list(self.ladder) if self.ladder is not None else gap_ladder(self.optimum, self.direction)

    def is_solved_trial(self, trial: Trial) -> bool:
        """Whether ``trial`` solved the run: by the problem's own test where recorded, else by value."""
        if self.solved is not None:
            return trial.number in self.solved
        return self.optimum is not None and trial.ok and reaches(float(trial.value), self.optimum, self.direction)

    @classmethod
    def of(cls, problem: Problem, history: Iterable[Trial] = ()) -> "ProblemFacts":
        """The facts of a live problem, with the trials of ``history`` that its success test accepts."""
        test = has_success_test(problem)
        optimum = getattr(problem, "optimum", None)
        return cls(name=problem.name, direction=problem.direction, optimum=None if optimum is None else float(optimum),
                   value_noun=getattr(problem, "value_noun", None) or "value",
                   ladder=tuple((str(n), float(v)) for n, v in problem.targets()), success_test=test,
                   solved=frozenset(t.number for t in history if test and t.ok and problem.is_solved(t.solution)),
                   drawable=hasattr(problem, "draw"), recorded=problem.config())

    @classmethod
    def of_record(cls, run: RunRecord, facts: dict[str, Any] | None = None) -> "ProblemFacts":
        """The facts recorded with ``run`` (``facts``: its stored facts), else what its record holds."""
        data = (facts or {}).get("problem")
        recorded = run.config.get("problem", {})
        if data is None:
            return cls(name=run.problem, direction=run.direction, optimum=run.optimum, recorded=recorded)
        return cls(name=run.problem, direction=Direction(data["direction"]), optimum=data.get("optimum"),
                   value_noun=data.get("value_noun") or "value",
                   ladder=tuple((str(n), float(v)) for n, v in data.get("targets") or ()),
                   success_test=bool(data.get("success_test")), solved=frozenset(data.get("solved") or ()),
                   drawable=bool(data.get("drawable")), recorded=recorded)

    def to_json(self) -> dict[str, Any]:
        return {"direction": self.direction.value, "optimum": self.optimum, "value_noun": self.value_noun,
                "targets": [list(t) for t in self.targets()], "success_test": self.success_test,
                "solved": sorted(self.solved or ()), "drawable": self.drawable}


def has_success_test(problem: Any) -> bool:
    """The problem says which solutions are optimal (``is_solved``), beyond a known optimum value."""
    return getattr(type(problem), "is_solved", Problem.is_solved) is not Problem.is_solved


@dataclass
class StoredResult:
    """What the figures and tables read of a run, from its stored trials, calls and validations alone
    (the parts of :class:`llmopt.optimizer.RunResult` that a reader needs, under the same names)."""

    history: SolutionHistory
    steps: int
    usage: Usage
    elapsed_s: float
    solved_step: int | None = None
    validations: tuple[ValidationRecord, ...] = ()  # the run's validation scores (--eval-every), if any
    usage_by_role: dict[str, Usage] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return sum(1 for t in self.history if t.ok)

    @property
    def best(self) -> Trial | None:
        return self.history.best()

    @property
    def counts(self) -> dict[str, int]:
        return self.history.counts()

    @property
    def chosen(self) -> Trial | None:
        """The run's pick: the trial best on validation when it validated any, else ``best``."""
        rows = self.validations
        return (chosen(rows, self.history.completed(), self.history.direction) if rows else None) or self.best


@dataclass
class StoredRun:
    """One run as read back: its record, facts, result, spend, references and what ran in words."""

    record: RunRecord
    facts: ProblemFacts
    result: StoredResult
    spend: Spend
    references: list[Reference] | None  # None: none recorded with the run
    ran: str | None  # the proposer's own words (Proposer.describe), if recorded
    budget: dict[str, Any]  # the budget the run last ran under
    has_facts: bool  # facts were recorded with it (False: a run stored before they were)


def stored_history(store: RunStore, run: RunRecord, trials: Sequence[Trial] | None = None) -> SolutionHistory:
    """A stored run's history, with no solutions (no Problem decodes them). A trial keeps the stored
    ``repr`` of its key (so that a duplicate shares its original's, as counted by unique proposals),
    or is keyed by its number where it has none or two solutions' reprs collide."""
    out = SolutionHistory(run.direction)
    for t in store.trials(run.id) if trials is None else trials:
        key = t.key if t.key is not None else ("trial", t.number)
        if t.ok and out.find(key) is not None:
            key = ("trial", t.number)
        out.append(replace(t, key=key))
    return out


def read_run(store: RunStore, run: RunRecord) -> StoredRun:
    """Everything a reader needs of ``run``, from the store alone."""
    facts = store.facts(run.id)
    problem = ProblemFacts.of_record(run, facts)
    history = stored_history(store, run)
    solved = next((t.step for t in history if t.ok and problem.is_solved_trial(t)), None)
    last_step = max((s.step for s in store.steps(run.id)), default=0)
    result = StoredResult(history, max(last_step, max((t.step for t in history), default=0)), Usage(), run.elapsed_s,
                          solved, tuple(store.validations(run.id)), {})
    recorded = {t.number for t in history}
    for call in store.calls(run.id):  # the calls of recorded trials, as a resumed run counts them
        if call.number in recorded:
            result.usage = result.usage.add(call.completion())
            result.usage_by_role[call.role] = result.usage_by_role.get(call.role, Usage()).add(call.completion())
    refs = facts.get("references")
    return StoredRun(run, problem, result, run_spend(store, run, history),
                     None if refs is None else [Reference(str(n), float(v), s) for n, v, s in refs],
                     facts.get("ran"), facts.get("budget") or run.config.get("budget") or {}, "problem" in facts)


def record_facts(store: RunStore, run: RunRecord, problem: Problem, history: Iterable[Trial], *,
                 references: Sequence[Reference] | None = None, ran: str | None = None,
                 budget: dict[str, Any] | None = None) -> None:
    """Record with ``run`` what its readers would otherwise rebuild ``problem`` to learn (see the module)."""
    facts: dict[str, Any] = {"problem": ProblemFacts.of(problem, history).to_json()}
    if references is not None:
        facts["references"] = [[r.name, float(r.value), r.seconds] for r in references]
    if ran is not None:
        facts["ran"] = ran
    if budget is not None:
        facts["budget"] = budget
    store.set_facts(run.id, facts)
