"""Classical black-box optimizers on the same loop: optuna's TPE and CMA-ES samplers as proposers.

Any problem with a bounded :meth:`Problem.search_space` can be searched by them: the space's flat
dimensions (:func:`llmopt.space.dimensions`) are optuna distributions, a sampled parameter set is
turned back into a JSON value (:func:`llmopt.space.unflatten`) and a solution
(:meth:`Problem.from_json`). They are the baselines an LLM optimizer has to beat besides random
search, run with the same store, budgets, duplicates rule and resume. We never hand-roll TPE or
CMA-ES: optuna is the standard ask/tell black-box library (``pip install -e '.[classical]'``).

Reproducible and resumable by replay, not by saving the sampler. The study lives in memory, one per
proposer (and run), and every operation on it is a function of the run's history in trial-number
order, so a resumed run rebuilds exactly the study the original had at the same point:

- asking: trials of this proposer are asked in trial-number order, always (``propose`` asks its
  numbers ascending; a number recorded before an interruption is asked, unconverted, at its place);
- telling, at each step boundary (``begin_step``, for every step before the new one, step by step):
  first any trial of this proposer the study has not asked yet (a resumed run's), then in number
  order its outcome (COMPLETE: its value; DUPLICATE: the value of the trial it repeats; INVALID,
  FAILED, unscored: a failed trial), and the COMPLETE trials of other sources (the starting
  solutions, a user's suggestions) added as finished trials, so TPE learns from the warm start as
  the LLM does.

The original run goes through the same sequence, so a fresh run and a resumed one ask optuna's
seeded sampler the same questions in the same order and get the same answers.
"""

from __future__ import annotations

import logging
from typing import Any

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import ParseError, Problem
from llmopt.proposers.base import CallHook, Proposal, Proposer
from llmopt.seeding import derive_seed
from llmopt.space import Dimension, SpaceError, describe, dimensions, flatten, unflatten

ALGORITHMS = ("tpe", "cmaes")
INSTALL_HINT = "pip install -e '.[classical]'"

_log = logging.getLogger(__name__)


def _import_optuna() -> Any:
    """optuna, imported where used (it takes a second); missing: one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError(f"the classical proposers need optuna (and cmaes for CMA-ES): {INSTALL_HINT}") from None
    return optuna


def _quiet(optuna: Any) -> None:
    """Silence optuna's line per trial, unless the user chose a verbosity of their own."""
    if optuna.logging.get_verbosity() == optuna.logging.INFO:  # optuna's default
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def _distribution(optuna: Any, dim: Dimension) -> Any:
    if dim.kind == "int":
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), step=int(dim.step or 1))
    if dim.kind == "float":
        return optuna.distributions.FloatDistribution(float(dim.low), float(dim.high), step=dim.step)
    return optuna.distributions.CategoricalDistribution(list(dim.choices))


class OptunaProposer(Proposer):
    """optuna's TPE (``"tpe"``) or CMA-ES (``"cmaes"``) sampler over a problem's search space.

    Each proposal is one ``study.ask``. The sampler is seeded with ``derive_seed(run seed,
    "optuna", algorithm)`` and otherwise left at optuna's defaults. CMA-ES keeps optuna's default
    population size (``4 + floor(3 ln d)``, 6 for linear regression's two dimensions) rather than
    the proposals per step: the proposer is not told that number, and rounds that replace
    duplicates or failures would break the match anyway. A step of 8 proposals therefore asks 8
    points of one generation; at the next step the first 6 with a value (in asking order) are told to CMA-ES and the
    others are recorded but unused (optuna's own rule for parallel asks). Categorical dimensions
    are sampled independently (at random) by CMA-ES. Integer dimensions are rounded, so CMA-ES and
    TPE may repeat a point: the optimizer records it DUPLICATE, and it is told the repeated
    point's value.

    One proposer serves one run (the study follows the history it is given).
    """

    kind = "optuna"

    def __init__(self, algorithm: str = "tpe") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown optuna algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")
        self.algorithm = algorithm
        self._reset(None)

    def _reset(self, history: SolutionHistory | None) -> None:
        self._history = history
        self._study: Any = None
        self._seed: int | None = None
        self._distributions: dict[str, Any] = {}
        self._asked: dict[int, Any] = {}  # llmopt trial number -> optuna trial (asked, maybe told)
        self._done: set[int] = set()  # trial numbers told or added to the study (or skipped for good)
        self._synced_to = 0  # every step below this is told
        self._target = 0  # the step begun last: the steps below it are to be told

    @property
    def source(self) -> str:
        return f"optuna:{self.algorithm}"

    @property
    def label(self) -> str:
        return self.source

    def describe(self, problem: Problem) -> str:
        schema = problem.search_space()
        return self.source if schema is None else f"{self.source} in {describe(schema)}"

    # --- checks before the run --------------------------------------------------------------
    def validate(self) -> None:
        optuna = _import_optuna()
        if self.algorithm == "cmaes":
            try:
                import cmaes  # noqa: F401  (optuna's CmaEsSampler imports it on first use)
            except ImportError:
                raise ImportError(f"--proposer optuna:cmaes needs the cmaes package: {INSTALL_HINT}") from None
        _quiet(optuna)

    def prepare(self, problem: Problem) -> None:
        """The problem's search space as optuna distributions; a problem without one is refused here."""
        optuna = _import_optuna()
        schema = problem.search_space()
        if schema is None:
            raise ValueError(f"--proposer {self.source} needs a problem with a bounded numeric or categorical "
                             f"search space (Problem.search_space); {problem.name} has none")
        dims = dimensions(schema)
        if not dims:
            raise ValueError(f"--proposer {self.source}: the search space of {problem.name} has nothing to search")
        self._distributions = {dim.name: _distribution(optuna, dim) for dim in dims}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "algorithm": self.algorithm, "sampler": self._sampler_settings()}

    def _sampler_settings(self) -> dict[str, Any]:
        seed = f"derive_seed(run seed, 'optuna', '{self.algorithm}')"
        if self.algorithm == "tpe":
            return {"class": "TPESampler", "seed": seed, "options": "optuna defaults"}
        return {"class": "CmaEsSampler", "seed": seed, "popsize": "optuna default (4 + floor(3 ln d))",
                "warn_independent_sampling": False, "options": "otherwise optuna defaults"}

    # --- the study ------------------------------------------------------------------------
    def _ensure_study(self, problem: Problem, seed: int) -> Any:
        if self._study is not None:
            if seed != self._seed:
                raise ValueError(f"{type(self).__name__} serves one run: seed {seed} after seed {self._seed}")
            return self._study
        optuna = _import_optuna()
        _quiet(optuna)
        if not self._distributions:
            self.prepare(problem)
        sampler_seed = derive_seed(seed, "optuna", self.algorithm)
        if self.algorithm == "tpe":
            sampler = optuna.samplers.TPESampler(seed=sampler_seed)
        else:
            sampler = optuna.samplers.CmaEsSampler(seed=sampler_seed, warn_independent_sampling=False)
        self._study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                          direction=problem.direction.value)
        self._seed = seed
        return self._study

    def _ask(self, number: int) -> Any:
        trial = self._study.ask(self._distributions)
        self._asked[number] = trial
        return trial

    def _mine(self, trial: Trial) -> bool:
        return trial.source == self.source

    # --- the step boundary: tell -------------------------------------------------------------
    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Tell the study every outcome of the steps before ``step`` (asking first, in order, any
        trial of this proposer a resumed run has not asked yet). No meta-prompt."""
        if history is not self._history:  # a new run (or the first step): a new study
            self._reset(history)
        self._target = step
        if self._study is not None:  # the first step's study is made in propose (it needs the run seed)
            self._sync(problem)
        return None

    def _sync(self, problem: Problem) -> None:
        history, target = self._history, self._target
        if history is None or self._synced_to >= target:
            return
        by_step: dict[int, list[Trial]] = {}
        for trial in sorted(history, key=lambda t: t.number):
            if trial.step < target and trial.number not in self._done:
                by_step.setdefault(trial.step, []).append(trial)
        for step in sorted(by_step):
            trials = by_step[step]
            for trial in trials:  # a resumed run's own trials, at their place in the asking order
                if self._mine(trial) and trial.number not in self._asked:
                    self._ask(trial.number)
            for trial in trials:
                if self._mine(trial):
                    self._tell(trial)
                else:
                    self._add(problem, trial)
                self._done.add(trial.number)
        self._synced_to = target

    def _tell(self, trial: Trial) -> None:
        optuna = _import_optuna()
        value = self._value(trial)
        if value is None:
            self._study.tell(self._asked[trial.number], state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(self._asked[trial.number], value)

    def _value(self, trial: Trial) -> float | None:
        if trial.state is TrialState.COMPLETE:
            return float(trial.value)  # type: ignore[arg-type]
        if trial.state is TrialState.DUPLICATE and trial.duplicate_of is not None:
            first = self._history.get(trial.duplicate_of) if self._history is not None else None
            return float(first.value) if first is not None and first.ok else None  # type: ignore[arg-type]
        return None  # INVALID, FAILED: a failed optuna trial

    def _add(self, problem: Problem, trial: Trial) -> None:
        """A scored solution from elsewhere (a start, a suggestion) as a finished optuna trial."""
        if not trial.ok:
            return
        optuna = _import_optuna()
        try:
            params = flatten(problem.search_space(), problem.to_json(trial.solution))  # type: ignore[arg-type]
            frozen = optuna.trial.create_trial(params=params, distributions=self._distributions,
                                               value=float(trial.value))  # type: ignore[arg-type]
        except (SpaceError, ValueError, TypeError, NotImplementedError) as exc:
            _log.debug("trial %d (%s) is outside the search space, not shown to optuna: %s",
                       trial.number, trial.source, exc)
            return
        self._study.add_trial(frozen)

    # --- asking ------------------------------------------------------------------------------
    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        self._ensure_study(problem, seed)
        self._sync(problem)
        wanted = set(numbers)
        out = []
        for n in sorted(numbers):
            for m in self._recorded_before(n):  # recorded before an interruption: asked, not proposed again
                self._ask(m)
            trial = self._asked.get(n) or self._ask(n)
            out.append(self._proposal(problem, n, trial.params))
        order = {p.number: p for p in out}
        assert set(order) == wanted
        return [order[n] for n in numbers]

    def _recorded_before(self, number: int) -> list[int]:
        """Trials of this proposer below ``number`` that are recorded but not asked in this process."""
        if self._history is None:
            return []
        return sorted(t.number for t in self._history
                      if t.number < number and self._mine(t) and t.number not in self._asked
                      and t.number not in self._done)

    def _proposal(self, problem: Problem, number: int, params: dict[str, Any]) -> Proposal:
        value: Any = None
        try:
            value = unflatten(problem.search_space(), params)  # type: ignore[arg-type]
            return Proposal(number, self.source, solution=problem.from_json(value))
        except ParseError as exc:
            return Proposal(number, self.source, error=f"ParseError: {exc} (from {value!r})"[:1000])
        except Exception as exc:  # a from_json bug must not kill the run; the contract tests catch it
            return Proposal(number, self.source,
                            error=f"from_json raised {type(exc).__name__} (should raise ParseError): {exc}"[:1000])
