"""The proposer contract: what the loop relies on a Proposer for, as checks a user can run (as
``optuna.testing`` ships contract tests for its samplers).

    from llmopt.testing import ProposerContract, check_proposer

    def make(llm):                       # a fresh proposer per run, from the run's model
        return MyProposer(llm)

    check_proposer(make)                 # every property; ContractViolation names the broken one
    class TestMyProposer(ProposerContract):  # or in pytest, one test per property
        proposer = make

The properties, each checked on short runs of a toy problem (:func:`toy_problem`, or the user's)
with a scripted model whose replies are a function of (prompt, seed) (:func:`scripted_llm`):

- same seed, same proposals: two runs with one seed record the same trials, in this process and in
  a new one (where hash seeds, module state and import order differ);
- a different seed, different proposals (a stochastic proposer, from an empty history);
- resume equals an uninterrupted run: stopped at a step's end, or interrupted inside a step, and
  resumed by a fresh proposer from the store, a run records what one uninterrupted run records;
- every asked number gets a trial: ``propose_round`` returns one proposal per number it is asked
  for, in order, and every number handed out ends as a recorded trial (no gaps);
- no duplicate numbers, and no solution scored twice.

Why factories, not proposers: a proposer serves one run (optuna's study follows its history), and
a resumed run, like a new process, builds its own. The new-process check rebuilds the run in a
child process, so there the factories must pickle (module-level functions or classes,
``functools.partial`` of them; not lambdas).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import multiprocessing
import pickle
import tempfile
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable, Iterator

import numpy as np

from llmopt.budget import Budget, StopReason
from llmopt.function_problem import FunctionProblem
from llmopt.history import Trial, TrialState
from llmopt.llm.client import LLM
from llmopt.optimizer import Optimizer
from llmopt.problem import Problem
from llmopt.proposers.base import Proposal, Proposer
from llmopt.store import RunStore, open_store
from llmopt.testing.contract import _named
from llmopt.testing.scripted import ScriptedLLM
from llmopt.testing.strategies import ContractViolation

__all__ = ["ProposerCase", "ProposerContract", "ScriptedReplies", "check_every_number_recorded",
           "check_no_duplicates", "check_proposer", "check_resume", "check_same_seed",
           "check_same_seed_in_new_process", "check_seed_matters", "new_process_pool", "scripted_llm", "toy_problem"]

SAME_SEED = "same seed, same proposals"
NEW_PROCESS = "same seed, same proposals in a new process"
SEED_MATTERS = "a different seed, different proposals"
RESUME = "resume equals an uninterrupted run"
NUMBERS = "every asked number gets a trial"
DUPLICATES = "no duplicate numbers, no solution scored twice"

#: Share of the scripted model's replies that are not an answer (so INVALID trials are exercised).
INVALID_SHARE = 0.15
#: Seconds the new-process run may take (a child imports llmopt, the factories' modules, numpy...).
NEW_PROCESS_TIMEOUT_S = 300.0

Row = tuple[Any, ...]


# --- the toy problem and the scripted model -----------------------------------------------------
def _toy_objective(point: dict[str, int]) -> float:
    return float((point["x"] - 1) ** 2 + (point["y"] + 2) ** 2)


TOY_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["x", "y"],
              "properties": {"x": {"type": "integer", "minimum": -4, "maximum": 4},
                             "y": {"type": "integer", "minimum": -4, "maximum": 4}}}


def toy_problem() -> Problem:
    """An integer point on a 9 x 9 grid: small enough that proposals repeat (the duplicates rule is
    exercised), a search space for optuna, JSON text for the LLM proposers."""
    return FunctionProblem(_toy_objective, TOY_SCHEMA, name="contract-toy", num_starts=4,
                           description="Minimize (x - 1)^2 + (y + 2)^2 over integers x and y in [-4, 4].")


class ScriptedReplies:
    """A model for any problem: each reply is a function of (prompt, seed) only, so runs that ask the
    same are answered the same, in any process: a solution drawn by the problem's
    ``random_solution`` from a generator seeded by both, encoded, or (a share of
    :data:`INVALID_SHARE`) a reply that is no answer."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem

    def __call__(self, prompt: str, seed: int) -> str:
        digest = hashlib.sha256(f"{seed}\n{prompt}".encode("utf-8")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        if rng.random() < INVALID_SHARE:
            return "I am not sure what to try next."
        return self.problem.encode(self.problem.random_solution(rng))


def scripted_llm(problem: Problem) -> LLM:
    """The contract's default model: a :class:`ScriptedLLM` answering with :class:`ScriptedReplies`."""
    return ScriptedLLM(ScriptedReplies(problem))


# --- one case: what is run --------------------------------------------------------------------------
@dataclass(frozen=True)
class ProposerCase:
    """The runs the contract makes: ``proposer(llm)`` builds a fresh proposer, ``problem()`` a fresh
    problem, ``llm(problem)`` the model; ``steps`` steps of ``proposals_per_step`` proposals (up to
    ``max_rounds`` rounds) from ``seed``. ``stochastic=False``: a proposer that draws nothing (the
    different-seed check is skipped)."""

    proposer: Callable[[LLM], Proposer]
    problem: Callable[[], Problem] = toy_problem
    llm: Callable[[Problem], LLM] = scripted_llm
    steps: int = 4
    proposals_per_step: int = 4
    max_rounds: int = 2
    seed: int = 0
    stochastic: bool = True

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise ValueError(f"the contract needs steps >= 2 (a run is cut and resumed), got {self.steps}")


@dataclass
class _Run:
    """What one run recorded, and what the contract saw on the way."""

    result: Any  # RunResult
    trials: list[Trial]  # the history, by number
    stored: list[Trial] | None  # the store's trials, as it returns them (None: no store)
    rounds: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (asked, returned) numbers
    scored: list[Hashable] = field(default_factory=list)  # keys of the solutions scored, in order


def _watch_rounds(proposer: Proposer, rounds: list[tuple[list[int], list[int]]]) -> None:
    """Record each ``propose_round``'s numbers to do and the numbers of what it returned."""
    inner = proposer.propose_round

    def propose_round(problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: Any = None, **options: Any) -> list[Proposal]:
        out = inner(problem, prompt, numbers, todo, seed, on_call, **options)
        rounds.append((list(todo), [p.number for p in out]))
        return out

    proposer.propose_round = propose_round  # type: ignore[method-assign]


def _watch_scores(problem: Problem, scored: list[Hashable]) -> None:
    """Record the key of every solution the problem scores."""
    inner = problem.evaluate

    def evaluate(solution: Any) -> Any:
        scored.append(problem.key(solution))
        return inner(solution)

    problem.evaluate = evaluate  # type: ignore[method-assign]


def _run(case: ProposerCase, *, seed: int | None = None, starts: bool = True, store: RunStore | None = None,
         resume: bool = False, steps: int | None = None, stop: Callable[[Any, Any], None] | None = None) -> _Run:
    """One run of ``case`` with fresh problem, model and proposer (a store's run is named "contract")."""
    problem = case.problem()
    proposer = case.proposer(case.llm(problem))
    if not isinstance(proposer, Proposer):
        raise TypeError(f"the proposer factory returned {type(proposer).__name__}, not a Proposer")
    run = _Run(None, [], None)
    _watch_rounds(proposer, run.rounds)
    _watch_scores(problem, run.scored)
    budget = Budget(max_steps=case.steps if steps is None else steps, stop_when_solved=False)
    opt = Optimizer(problem, proposer, seed=case.seed if seed is None else seed, budget=budget, starts=starts,
                    proposals_per_step=case.proposals_per_step, max_rounds=case.max_rounds, store=store,
                    name="contract" if store is not None else None, resume=resume)
    if stop is not None:
        opt.register_callback("trial", stop)
    run.result = opt.run()
    run.trials = sorted(run.result.history, key=lambda t: t.number)
    if store is not None and opt.run_record is not None:
        run.stored = store.trials(opt.run_record.id)
    return run


def _row(t: Trial) -> Row:
    """What a trial records, as compared between runs (its metrics, timings aside)."""
    return (t.number, t.step, t.state.value, t.source, t.text, t.raw, t.value, t.error, t.duplicate_of,
            tuple(t.parents))


def _rows(trials: list[Trial]) -> list[Row]:
    return [_row(t) for t in sorted(trials, key=lambda t: t.number)]


def _short(value: Any, limit: int = 240) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _difference(first: list[Row], second: list[Row], names: tuple[str, str]) -> str | None:
    """The first trial where two runs differ, in words (None: they are the same)."""
    for a, b in zip(first, second):
        if a != b:
            return f"trial #{a[0]}: {names[0]} recorded {_short(a)}, {names[1]} {_short(b)}"
    if len(first) != len(second):
        return f"{names[0]} recorded {len(first)} trials, {names[1]} {len(second)}"
    return None


@contextlib.contextmanager
def _directory(directory: str | Path | None) -> Iterator[Path]:
    """``directory`` (made if missing; it should hold no earlier contract run), else a temporary one."""
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix="llmopt-contract-") as made:
        yield Path(made)


# --- the checks --------------------------------------------------------------------------------------
def check_same_seed(case: ProposerCase) -> None:
    """Two runs with the same seed record the same trials (numbers, steps, states, texts, replies,
    values, duplicates, parents)."""
    with _named(SAME_SEED):
        first, second = _rows(_run(case).trials), _rows(_run(case).trials)
    diff = _difference(first, second, ("the first run", "the second"))
    if diff:
        raise ContractViolation(SAME_SEED, f"two runs with seed {case.seed} differ at {diff}: draw from (seed, "
                                           "trial number) or replay the history, never from global or leftover state")


def _rows_of_run(case: ProposerCase) -> list[Row]:
    """The rows of one run of ``case`` (what the new process computes and sends back)."""
    return _rows(_run(case).trials)


def _picklable(case: ProposerCase) -> None:
    try:
        pickle.dumps(case)
    except Exception as exc:
        raise TypeError(f"{NEW_PROCESS}: the factories must pickle to be rebuilt in a new process (module-level "
                        f"functions or classes, functools.partial of them; not lambdas or local functions): "
                        f"{type(exc).__name__}: {exc}") from None


def check_same_seed_in_new_process(case: ProposerCase, pool: Executor | None = None) -> None:
    """A run in a new process (spawned: fresh interpreter, its own hash seed) records what a run with
    the same seed records here. ``pool``: an executor of spawned processes to reuse (one is made
    and closed otherwise)."""
    _picklable(case)
    with _named(NEW_PROCESS):
        here = _rows(_run(case).trials)
        if pool is not None:
            there = pool.submit(_rows_of_run, case).result(timeout=NEW_PROCESS_TIMEOUT_S)
        else:
            with new_process_pool() as made:
                there = made.submit(_rows_of_run, case).result(timeout=NEW_PROCESS_TIMEOUT_S)
    diff = _difference(here, there, ("this process", "a new process"))
    if diff:
        raise ContractViolation(NEW_PROCESS, f"runs with seed {case.seed} differ at {diff}: a draw depends on the "
                                             "process (hash order of a set or dict of strings, id(), time, a global "
                                             "generator)")


def new_process_pool() -> ProcessPoolExecutor:
    """One spawned worker process: a fresh interpreter, as a resumed run or a grid's worker gets."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def check_seed_matters(case: ProposerCase) -> None:
    """From an empty history (no starting solutions), runs with seeds ``seed`` and ``seed + 1``
    propose different solutions: a stochastic proposer draws from the run's seed."""
    if not case.stochastic:
        return
    with _named(SEED_MATTERS):
        runs = [_run(case, seed=seed, starts=False) for seed in (case.seed, case.seed + 1)]
    proposed = [[(t.state.value, t.text, t.raw) for t in run.trials] for run in runs]
    if proposed[0] == proposed[1]:
        raise ContractViolation(SEED_MATTERS, f"seeds {case.seed} and {case.seed + 1} proposed the same "
                                              f"{len(proposed[0])} trials: the proposer ignores the run's seed (a "
                                              "proposer that draws nothing says stochastic=False)")


def _stop_in(step: int) -> Callable[[Any, Trial], None]:
    """A trial callback that interrupts the run (as Ctrl-C does) at the first trial of ``step``."""

    def stop(optimizer: Any, trial: Trial) -> None:
        if trial.step >= step:
            raise KeyboardInterrupt

    return stop


def _resumed(case: ProposerCase, path: Path, *, steps: int | None = None,
             stop: Callable[[Any, Any], None] | None = None) -> _Run:
    """A run cut short (after ``steps`` steps, or by ``stop``), then resumed to the end from the
    store by fresh objects (a new store connection, problem, model and proposer)."""
    with open_store(path) as store:
        cut = _run(case, store=store, steps=steps, stop=stop)
    if stop is not None and cut.result.stop_reason is not StopReason.INTERRUPTED:
        raise ContractViolation(RESUME, f"the run ended ({cut.result.stop_reason.value}) before it could be "
                                        "interrupted inside a step: give the case more steps")
    with open_store(path) as store:
        return _run(case, store=store, resume=True)


def check_resume(case: ProposerCase, directory: str | Path | None = None) -> None:
    """A run stopped at the end of a step, and a run interrupted inside one (at its first recorded
    trial), each resumed to the end by a fresh proposer, record the trials of one uninterrupted
    run. ``directory``: where the stores go (a temporary directory otherwise)."""
    cut = max(1, case.steps // 2)
    with _directory(directory) as where, _named(RESUME):
        with open_store(where / "whole.db") as store:
            whole = _rows(_run(case, store=store).trials)
        ways = {f"stopped after step {cut} and resumed": _resumed(case, where / "boundary.db", steps=cut),
                f"interrupted inside step {cut + 1} and resumed": _resumed(case, where / "inside.db",
                                                                          stop=_stop_in(cut + 1))}
    for way, run in ways.items():
        for what, rows in (("history", _rows(run.trials)), ("store", _rows(run.stored or []))):
            diff = _difference(whole, rows, ("the uninterrupted run", f"the run {way} ({what})"))
            if diff:
                raise ContractViolation(RESUME, f"{diff}: rebuild every state from the history (a resumed "
                                                "proposer has seen nothing before), and derive draws from "
                                                "(seed, trial number)")


def _stored_run(case: ProposerCase, prop: str, directory: str | Path | None) -> _Run:
    """One run of ``case`` with a store (in ``directory``, else a temporary one)."""
    with _directory(directory) as where, _named(prop), open_store(where / "runs.db") as store:
        return _run(case, store=store)


def check_every_number_recorded(case: ProposerCase, directory: str | Path | None = None) -> None:
    """``propose_round`` returns one proposal per number it is asked for, in order; every number
    handed out is a recorded trial (scored, invalid, duplicate or failed), with no gaps."""
    run = _stored_run(case, NUMBERS, directory)
    for todo, returned in run.rounds:
        if returned != todo:
            raise ContractViolation(NUMBERS, f"propose_round was asked for trials {todo} and returned proposals "
                                             f"numbered {returned}: one proposal per number, in the same order")
    numbers = {t.number for t in run.trials}
    asked = {n for todo, _ in run.rounds for n in todo}
    missing = sorted(asked - numbers) or sorted(set(range(max(numbers, default=-1) + 1)) - numbers)
    if missing:
        raise ContractViolation(NUMBERS, f"trial numbers {missing} were handed out and never recorded")
    stored = {t.number for t in run.stored or []}
    if stored != numbers:
        raise ContractViolation(NUMBERS, f"the store holds trials {sorted(stored ^ numbers)} that the history "
                                         "does not, or lacks them")


def check_no_duplicates(case: ProposerCase, directory: str | Path | None = None) -> None:
    """No trial number is recorded twice (history and store); no solution is scored twice; each
    DUPLICATE trial names an earlier trial of the same solution."""
    run = _stored_run(case, DUPLICATES, directory)
    for what, trials in (("history", run.trials), ("store", run.stored or [])):
        numbers = [t.number for t in trials]
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        if twice:
            raise ContractViolation(DUPLICATES, f"the {what} holds trial numbers {twice} more than once")
    scored = sorted({_short(k) for k in run.scored if run.scored.count(k) > 1})
    if scored:
        raise ContractViolation(DUPLICATES, f"solutions scored more than once: {', '.join(scored)}")
    by_number = {t.number: t for t in run.trials}
    for t in (t for t in run.trials if t.state is TrialState.DUPLICATE):
        first = by_number.get(t.duplicate_of) if t.duplicate_of is not None else None
        if first is None or first.key != t.key or first.state is TrialState.DUPLICATE:
            raise ContractViolation(DUPLICATES, f"trial #{t.number} (key {_short(t.key)}) is a DUPLICATE of "
                                                f"#{t.duplicate_of}, which is {_short(first and _row(first))}: it must "
                                                "name the first trial of the same solution")


def check_proposer(proposer: Callable[[LLM], Proposer], problem: Callable[[], Problem] = toy_problem, *,
                   new_process: bool = True, directory: str | Path | None = None, **options: Any) -> None:
    """Check every property of the proposer contract (the module docstring); the first that fails
    raises :class:`ContractViolation` (an AssertionError) naming it. ``proposer``: a function of the
    model returning a fresh proposer; ``problem``: a function returning a fresh problem (default:
    :func:`toy_problem`); ``options``: :class:`ProposerCase`'s (``llm``, ``steps``,
    ``proposals_per_step``, ``max_rounds``, ``seed``, ``stochastic``); ``new_process=False`` skips
    the run in a new process (factories that do not pickle)."""
    case = ProposerCase(proposer, problem, **options)
    with _directory(directory) as where:
        check_every_number_recorded(case, where / "numbers")
        check_no_duplicates(case, where / "duplicates")
        check_same_seed(case)
        check_seed_matters(case)
        check_resume(case, where / "resume")
    if new_process:
        check_same_seed_in_new_process(case)


def _class_factory(cls: type, name: str) -> Any:
    """A factory set as a class attribute, unbound (a plain function there would become a method)."""
    value = inspect.getattr_static(cls, name)
    return value.__func__ if isinstance(value, (staticmethod, classmethod)) else value


class ProposerContract:
    """The contract as a pytest base class: subclass it as ``TestMyProposer`` and set ``proposer``
    (a function of the model returning a fresh proposer; module-level, so that the new-process test
    can pickle it) and optionally ``problem`` (a function returning a fresh problem), ``llm``,
    ``steps``, ``proposals_per_step``, ``max_rounds``, ``seed``, ``stochastic``; pytest reports each
    property. Its own name does not start with ``Test``, so pytest collects only the subclasses."""

    proposer: ClassVar[Callable[[LLM], Proposer]]
    problem: ClassVar[Callable[[], Problem]] = toy_problem
    llm: ClassVar[Callable[[Problem], LLM]] = scripted_llm
    steps: ClassVar[int] = 4
    proposals_per_step: ClassVar[int] = 4
    max_rounds: ClassVar[int] = 2
    seed: ClassVar[int] = 0
    stochastic: ClassVar[bool] = True

    def case(self) -> ProposerCase:
        cls = type(self)
        made = ProposerCase(_class_factory(cls, "proposer"), _class_factory(cls, "problem"),
                            _class_factory(cls, "llm"))
        return replace(made, steps=cls.steps, proposals_per_step=cls.proposals_per_step, max_rounds=cls.max_rounds,
                       seed=cls.seed, stochastic=cls.stochastic)

    def test_same_seed_same_proposals(self) -> None:
        check_same_seed(self.case())

    def test_same_seed_same_proposals_in_a_new_process(self) -> None:
        check_same_seed_in_new_process(self.case())

    def test_a_different_seed_proposes_differently(self) -> None:
        check_seed_matters(self.case())

    def test_resume_equals_an_uninterrupted_run(self, tmp_path: Path) -> None:
        check_resume(self.case(), tmp_path)

    def test_every_asked_number_gets_a_trial(self, tmp_path: Path) -> None:
        check_every_number_recorded(self.case(), tmp_path)

    def test_no_duplicate_numbers(self, tmp_path: Path) -> None:
        check_no_duplicates(self.case(), tmp_path)
