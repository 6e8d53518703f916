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
import math
from typing import Any, Iterable

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import ParseError, Problem
from llmopt.proposers.base import CallHook, Proposal, Proposer
from llmopt.seeding import derive_seed
from llmopt.space import Dimension, SpaceError, describe, dimensions, flatten, unflatten

ALGORITHMS = ("tpe", "cmaes")
#: The user attribute of each optuna trial that names its llmopt trial number (to read the study).
NUMBER_ATTR = "llmopt:number"
#: optuna's CmaEsSampler samples this many trials at random before its first generation
#: (its ``n_startup_trials`` default): until then, a step asks only the missing ones.
CMA_STARTUP = 1
#: TPE's ``constant_liar`` for a step's batch of asks (optuna 5's default is True; in optuna's own
#: one-at-a-time loop it changes nothing). Chosen by measurement (docs/results/classical-parity.md):
#: with optuna 5's multivariate TPE, 8 asks a step with the liar were worse than ``study.optimize``
#: on a 2-D sphere (30 seeds, one-sided Mann-Whitney p = 0.003 after Holm), without it at parity
#: everywhere; with optuna 4's independent TPE it is the other way round (hence optuna>=5).
TPE_CONSTANT_LIAR = False
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


def cma_popsize(distributions: Iterable[Any]) -> int | None:
    """CMA-ES's default population over these optuna distributions, as optuna's CmaEsSampler builds
    it: the ``cmaes`` package's ``4 + floor(3 ln n)`` over the n numeric ones with more than one
    value (categorical ones are sampled apart, single-valued ones skipped); None when there is none
    (CMA-ES then samples every dimension independently and has no generations)."""
    optuna = _import_optuna()
    numeric = (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)
    n = sum(1 for d in distributions if isinstance(d, numeric) and not d.single())
    return 4 + math.floor(3 * math.log(n)) if n else None


def cma_sampler(optuna: Any, **options: Any) -> Any:
    """optuna's CmaEsSampler, restoring CMA-ES from the newest trial that stored it, finished or not.

    Why: optuna stores the CMA-ES state on the trial whose ask told a generation, and restores it
    from finished trials only. Its own loop finishes that trial before the next ask; a step of
    llmopt asks a whole generation first, so each later ask of the step found only the previous
    state, told the generation again (and pickled and stored it again) and drew an extra random
    seed: the same search, at twice optuna's time per evaluation in 5-D. Restoring from the newest
    trial, running ones included, is what ``study.optimize`` sees: every sampling call is then the
    one optuna's own loop makes, and the run asks, trial for trial, what ``study.optimize`` asks
    (tested). Nothing else is changed; an optuna without ``_restore_optimizer`` gets the plain
    sampler's behaviour (correct, slower).
    """

    class GenerationCmaEsSampler(optuna.samplers.CmaEsSampler):  # type: ignore[misc, name-defined]
        _trials: list[Any] | None = None

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            self._trials = study.get_trials(deepcopy=False)  # every state, in number order
            try:
                return super().sample_relative(study, trial, search_space)
            finally:
                self._trials = None

        def _restore_optimizer(self, completed_trials: list[Any]) -> Any:
            return super()._restore_optimizer(completed_trials if self._trials is None else self._trials)

    return GenerationCmaEsSampler(**options)


class OptunaProposer(Proposer):
    """optuna's TPE (``"tpe"``) or CMA-ES (``"cmaes"``) sampler over a problem's search space.

    Each proposal is one ``study.ask``. The sampler is seeded with ``derive_seed(run seed,
    "optuna", algorithm)`` and otherwise left at optuna's defaults: the control is optuna's
    sampler as its library runs it, and ``benchmarks/classical_parity.py`` measures that it is as
    good through llmopt as in optuna's own ``study.optimize``.

    CMA-ES: **a step is one generation**. The step's size comes from the population (optuna's
    default ``4 + floor(3 ln d)`` over the numeric dimensions: 6 in 2-D, 8 in 5-D), not the
    population from the step (``proposals_per_step`` is not used): with 8 proposals a step and a
    population of 6, each step began a generation that the next step's first ask closed, two of
    every eight evaluations were never told to CMA-ES, and the control lost by orders of magnitude
    on a sphere. optuna tells a generation its first ``popsize`` COMPLETE trials; a failed one
    (INVALID, FAILED) does not count, and optuna's own loop asks one more. So the proposer does not
    redraw (``redraws = False``: a redrawn member would be one too many when a DUPLICATE, told
    with the value it repeats, already counts), and a step asks what the open generation lacks:
    ``popsize``, or after failures the missing members (a short step that closes the generation).
    Before any trial is scored, CMA-ES samples one trial at random (optuna's
    ``n_startup_trials=1``), so a run without starting solutions begins with a step of one. The
    sizes are a function of the history (:meth:`_cma_gap`), so a resumed run asks the same. The
    sampler is optuna's with one adapter (:func:`cma_sampler`) so that asking a generation at once
    costs what optuna's own loop costs; a run without starting solutions then asks, trial for
    trial, what ``study.optimize`` asks (tested).
    Categorical dimensions are sampled independently (at random) by CMA-ES. Integer dimensions
    are rounded, so CMA-ES and TPE may repeat a point: the optimizer records it DUPLICATE, and it
    is told the repeated point's value.

    TPE: steps of ``proposals_per_step`` asks (redrawn up to ``max_rounds``), with optuna's
    defaults but ``constant_liar=False`` (:data:`TPE_CONSTANT_LIAR`): the liar counts a running
    trial as a bad one so that a batch's asks spread out, which with optuna 5's multivariate TPE
    made the batch worse than ``study.optimize``, not better. Asked one at a time, the run is
    ``study.optimize``'s, trial for trial (tested).

    One proposer serves one run (the study follows the history it is given).
    """

    kind = "optuna"

    def __init__(self, algorithm: str = "tpe") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown optuna algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")
        self.algorithm = algorithm
        self._source = f"optuna:{algorithm}"
        self.redraws = algorithm != "cmaes"  # see prepare
        self._popsize: int | None = None  # CMA-ES's population (None: no numeric dimension, or TPE)
        self._problem: Problem | None = None
        self._direction = "minimize"
        self._distributions: dict[str, Any] = {}  # the problem's, from prepare (a new run keeps them)
        self._reset(None)

    def bind(self, problem: Problem, seed: int) -> None:
        """The run's problem (its search space, from :meth:`prepare`) and seed: the sampler is built
        here, seeded with ``derive_seed(seed, "optuna", algorithm)``, before the first ask."""
        super().bind(problem, seed)
        self._direction = problem.direction.value
        self._reset(None)

    def _reset(self, history: SolutionHistory | None) -> None:
        """A fresh study for the history of a run (the bound seed's sampler; none before :meth:`bind`)."""
        self._history = history
        self._study: Any = None if self.seed is None else self._new_study()
        self._asked: dict[int, Any] = {}  # llmopt trial number -> optuna trial (asked, maybe told)
        self._done: set[int] = set()  # trial numbers told or added to the study (or skipped for good)
        self._synced_to = 0  # every step below this is told
        self._target = 0  # the step begun last: the steps below it are to be told

    @property
    def source(self) -> str:
        return self._source

    @property
    def label(self) -> str:
        return self.source

    def describe(self, problem: Problem) -> str:
        schema = problem.search_space()
        return self.source if schema is None else f"{self.source} in {describe(schema)}"

    @property
    def study(self) -> Any:
        """The run's optuna study (None before :meth:`bind`), to read (optuna's plots, the
        trials' records), never to ask or tell: the proposer replays the history into it."""
        return self._study

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
        self._popsize = cma_popsize(self._distributions.values()) if self.algorithm == "cmaes" else None
        self.redraws = self._popsize is None  # CMA-ES's generations: a failed member is asked at the next step

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "algorithm": self.algorithm, "sampler": self._sampler_settings(),
                "step": self._step_rule()}

    def _sampler_settings(self) -> dict[str, Any]:
        seed = f"derive_seed(run seed, 'optuna', '{self.algorithm}')"
        if self.algorithm == "tpe":
            return {"class": "TPESampler", "seed": seed, "constant_liar": TPE_CONSTANT_LIAR,
                    "options": "otherwise optuna defaults (multivariate for one objective, since optuna 5)"}
        return {"class": "CmaEsSampler", "seed": seed, "popsize": "optuna default (4 + floor(3 ln d))",
                "warn_independent_sampling": False, "options": "otherwise optuna defaults",
                "restore": "from the newest trial that stored CMA-ES, running or not (as study.optimize sees it)"}

    def _step_rule(self) -> str:
        """The step's size, in words, as the run records it."""
        if self.algorithm == "tpe":
            return "proposals_per_step asks, redrawn up to max_rounds"
        if self._popsize is None:
            return "proposals_per_step asks, redrawn up to max_rounds (no numeric dimension: CMA-ES samples at random)"
        return (f"one CMA-ES generation: popsize {self._popsize} asks, or the members the open generation "
                f"lacks after failed ones; {CMA_STARTUP} random startup ask before any trial is scored; "
                "no redraws (proposals_per_step and max_rounds unused)")

    # --- the study ------------------------------------------------------------------------
    def _new_study(self) -> Any:
        """An in-memory study whose sampler takes the bound run seed when built."""
        optuna = _import_optuna()
        _quiet(optuna)
        sampler_seed = derive_seed(int(self.seed), "optuna", self.algorithm)  # type: ignore[arg-type]
        if self.algorithm == "tpe":
            sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=TPE_CONSTANT_LIAR)
        else:
            sampler = cma_sampler(optuna, seed=sampler_seed, warn_independent_sampling=False)
        return optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                   direction=self._direction)

    def _ask(self, number: int) -> Any:
        trial = self._study.ask(self._distributions)
        trial.set_user_attr(NUMBER_ATTR, number)  # after sampling: samplers never see it
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
        self._target, self._problem = step, problem
        if self._study is not None:
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
        frozen = self._frozen(problem, trial)
        if frozen is not None:
            self._study.add_trial(frozen)

    def _frozen(self, problem: Problem, trial: Trial) -> Any:
        """A scored trial as a finished optuna trial, if optuna can be shown it (None: unscored, or
        outside the search space)."""
        if not trial.ok:
            return None
        optuna = _import_optuna()
        try:
            params = flatten(problem.search_space(), problem.to_json(trial.solution))  # type: ignore[arg-type]
            return optuna.trial.create_trial(params=params, distributions=self._distributions,
                                             value=float(trial.value),  # type: ignore[arg-type]
                                             user_attrs={NUMBER_ATTR: trial.number})
        except (SpaceError, ValueError, TypeError, NotImplementedError) as exc:
            _log.debug("trial %d (%s) is outside the search space, not shown to optuna: %s",
                       trial.number, trial.source, exc)
            return None

    # --- the step's size ------------------------------------------------------------------------
    def step_size(self, requested: int) -> int:
        """TPE: ``requested``; CMA-ES: the asks that close the open generation (see the class docstring)."""
        if self._popsize is None or self._problem is None:
            return requested
        return self._cma_gap(self._problem)

    def _cma_gap(self, problem: Problem) -> int:
        """How many asks the step begun last needs so that it closes a CMA-ES generation.

        Worked out from the history alone (the study may not exist yet: it is built at the first
        ``propose``, which a resumed run reaches only after sizing its step), by following optuna's
        rules over the steps before it: a step's asks all see the same scored trials (they are told
        at its end), so they join one generation; an ask finds the next generation once the open
        one has ``popsize`` COMPLETE members; before :data:`CMA_STARTUP` trials are scored, asks
        are random and join none. Checked against the study's own generation records in the tests.
        """
        popsize, history = self._popsize, self._history
        assert popsize is not None and history is not None
        scored, generation, members = 0, -1, 0
        steps: dict[int, list[Trial]] = {}
        for trial in history:
            if trial.step < self._target:
                steps.setdefault(trial.step, []).append(trial)
        for step in sorted(steps):
            trials = steps[step]
            joins = scored >= CMA_STARTUP and any(self._mine(t) for t in trials)
            if joins and (generation < 0 or members >= popsize):
                generation, members = generation + 1, 0
            for trial in trials:
                if self._mine(trial):
                    told = self._value(trial) is not None
                    members += int(told and joins)
                else:
                    told = scored < CMA_STARTUP and self._frozen(problem, trial) is not None
                scored += int(told)
        if scored < CMA_STARTUP:
            return CMA_STARTUP - scored
        return popsize - members if 0 <= generation and members < popsize else popsize

    # --- asking ------------------------------------------------------------------------------
    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        if self._study is None:
            raise ValueError(f"{type(self).__name__}: bind(problem, seed) before the first ask (the optimizer does)")
        self._sync(problem)
        wanted = set(numbers)
        out = []
        earlier = self._recorded_unasked(max(numbers, default=-1))
        for n in sorted(numbers):
            while earlier and earlier[0] < n:  # recorded before an interruption: asked, not proposed again
                self._ask(earlier.pop(0))
            trial = self._asked.get(n) or self._ask(n)
            out.append(self._proposal(problem, n, trial.params))
        order = {p.number: p for p in out}
        assert set(order) == wanted
        return [order[n] for n in numbers]

    def _recorded_unasked(self, below: int) -> list[int]:
        """Trials of this proposer below ``below`` that are recorded but not asked in this process,
        ascending (found once a round: a scan per proposal made long runs quadratic)."""
        if self._history is None:
            return []
        return sorted(t.number for t in self._history
                      if t.number < below and self._mine(t) and t.number not in self._asked
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
