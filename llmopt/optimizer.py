"""The ask/tell optimizer: the loop, and nothing else.

``ask(n)`` runs one OPRO step's proposals (drawing again, a bounded number of rounds, until it
has ``n`` new valid candidates) and records every invalid or duplicate reply on the way;
``tell(candidate, value)`` records a score; ``suggest(solution)`` adds a warm start or a
baseline's solution; ``run()`` is a thin loop over them that stops on the first budget that
runs out and says which. What stops a run is :mod:`llmopt.budget`'s (pure rules over a snapshot
of what was spent), when to validate :mod:`llmopt.validation`'s, and what is recorded (or resumed)
:mod:`llmopt.recording`'s.

Numbering makes runs reproducible and resumable: each proposal gets its trial number before it
is drawn, all its randomness derives from (seed, number), and a resumed run replays the open
step from the stored meta-prompt, skipping the numbers already recorded. Before that replay the
proposer's ``begin_step`` runs once more for the open step (its prompt is ignored), so a proposer
with state rebuilt from the history (optuna's study) catches up first.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Hashable, Iterable

from llmopt.budget import Budget, Spent, StopReason, last_improvement, out_of_spend, round_allowance, stop_reason
from llmopt.events import Callbacks, CallEvent
from llmopt.history import SolutionHistory, Trial, TrialState, with_origin
from llmopt.llm import observe_calls
from llmopt.llm.usage import Usage
from llmopt.novelty import SIMILARITY, NoveltyFilter
from llmopt.problem import Evaluation, Problem
from llmopt.proposers import Proposal, Proposer
from llmopt.recording import Loaded, RunSpec, open_recorder
from llmopt.recording import default_run_name as default_run_name  # re-exported: experiments import it from here
from llmopt.recording import settings_diff as settings_diff  # re-exported: tests import it from here
from llmopt.scoring import evaluation, failed_calls, race_bar
from llmopt.seeding import stream
from llmopt.store import RunRecord, RunStore, ValidationRecord
from llmopt.validation import ValidationScheduler, ValidationSettings, chosen, validation_scores


@dataclass(frozen=True)
class Candidate:
    """A new, valid, not-yet-scored proposal handed out by ``ask``."""

    number: int
    step: int
    solution: Any
    text: str
    key: Hashable
    source: str
    raw: str | None = None
    parents: tuple[int, ...] = ()  # trial numbers it was made from (an evolutionary operator's)
    origin: dict[str, Any] | None = None  # where in a population it was made (Proposal.origin)


@dataclass(frozen=True)
class RunResult:
    """What a run ended with: why it stopped, its best and its chosen trial, counts, usage, history."""

    name: str | None
    stop_reason: StopReason
    stop_detail: str
    best: Trial | None
    steps: int
    solved_step: int | None
    counts: dict[str, int]
    usage: Usage
    elapsed_s: float
    metrics: dict[str, Any]
    history: SolutionHistory = field(repr=False)
    usage_by_role: dict[str, Usage] = field(default_factory=dict)  # "optimizer" (proposals), "scorer", "validation"
    #: The validation scores (``validate_every``), by step and trial number, as the store holds them.
    validations: tuple[ValidationRecord, ...] = ()
    #: The run's pick: the trial best on validation (ties: better training score, then the earlier
    #: trial) when the run validated any, else ``best`` (the best training score).
    chosen: Trial | None = None

    @property
    def evaluations(self) -> int:
        return self.counts[TrialState.COMPLETE.value]


@dataclass
class _OpenStep:
    step: int
    prompt: str | None


def _check_options(problem: Problem, proposals_per_step: int, max_rounds: int, resume_without_store: bool,
                   race: int | None) -> None:
    """Refuse bad settings in one line, before anything is written or spent."""
    if proposals_per_step < 1:
        raise ValueError(f"proposals_per_step must be >= 1, got {proposals_per_step}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    if resume_without_store:
        raise ValueError("resume=True needs a store")
    if race is not None and race < 1:
        raise ValueError(f"race must be >= 1 (the rank a proposal must be able to reach), got {race}")
    if race is not None and not problem.can_race:
        raise ValueError(f"problem {problem.name!r} cannot race its scoring (it does not override evaluate_raced)")


class Optimizer:
    """Ask/tell OPRO optimizer. See the module docstring."""

    def __init__(self, problem: Problem, proposer: Proposer, *, seed: int = 0, budget: Budget | None = None,
                 proposals_per_step: int = 8, max_rounds: int = 3, store: RunStore | None = None,
                 name: str | None = None, resume: bool = False, starts: bool = True, race: int | None = None,
                 validate_every: int | None = None, validate_top: int | None = 3,
                 validation_patience: int | None = None, accept_changed_objective: bool = False,
                 command: str | None = None, novelty_threshold: float | None = None) -> None:
        _check_options(problem, proposals_per_step, max_rounds, resume and store is None, race)
        self.novelty = NoveltyFilter(novelty_threshold)  # a bad threshold: one line, before anything is written
        settings = ValidationSettings(validate_every, validate_top, validation_patience)
        self.race, self.accept_changed_objective = race, accept_changed_objective
        self.command = command  # the command line that started the run, recorded with it (its resume hint)
        self.problem, self.proposer = problem, proposer
        self.seed, self.budget = int(seed), budget or Budget()
        self.proposals_per_step, self.max_rounds, self.starts = proposals_per_step, max_rounds, starts
        self.store, self.history = store, SolutionHistory(problem.direction)
        self.validation = ValidationScheduler(settings, problem, self.history, record=self._record_validation,
                                              account=self._account_validation, out_of_spend=self._out_of_spend)
        self.proposer.validate()  # unknown model etc.: fail before anything is written or spent
        self.proposer.bind(problem, self.seed)  # its problem and seed, once, before the first ask
        self._step, self._next_number = 0, 0
        self._open: _OpenStep | None = None  # the step whose proposals are not all recorded yet
        self._replaying = False  # the open step was loaded from the store: its proposer has not begun it
        self._pending: dict[int, Candidate] = {}
        self._usage, self._elapsed_base = Usage(), 0.0
        self._role_usage: dict[str, Usage] = {}
        self._session_start = time.monotonic()
        self._solved_step: int | None = None
        self._failure: str | None = None
        self._started = False
        self._callbacks = Callbacks()
        self.recorder = open_recorder(store, name, resume, RunSpec(problem, proposer, self.seed, self.config,
                                                                   command, accept_changed_objective))
        loaded = self.recorder.load()
        if loaded is not None:
            self._load(loaded)

    # --- callbacks ---------------------------------------------------------------------------
    def register_callback(self, name: str, callback: Callable[["Optimizer", Any], None]) -> None:
        """Call ``callback(optimizer, event)`` on every ``name`` event (see :data:`llmopt.events.CALLBACKS`).

        They run in the loop's thread (a proposal's call: on the event loop, between other calls'
        replies), so they should be quick: a progress bar, a log line. What they raise is raised.
        """
        self._callbacks.register(name, callback)

    def _emit(self, name: str, event: Any) -> None:
        self._callbacks.emit(self, name, event)

    # --- configuration and the record --------------------------------------------------------
    def config(self) -> dict[str, Any]:
        settings = self.validation.settings
        return {"seed": self.seed, "direction": self.problem.direction.value,
                "proposals_per_step": self.proposals_per_step, "max_rounds": self.max_rounds,
                "starts": self.starts, "budget": asdict(self.budget), "problem": self.problem.config(),
                "proposer": self.proposer.config(), **({"race": self.race} if self.race is not None else {}),
                **({"validation": settings.config()} if settings.every is not None else {}), **self.novelty.config()}

    @property
    def name(self) -> str | None:
        return self.recorder.name

    @property
    def run_record(self) -> RunRecord | None:
        """The stored run (None: no store)."""
        return self.recorder.run

    def _load(self, loaded: Loaded) -> None:
        """Replay a resumed run's record: its history, validation rows, usage, and the open step."""
        for trial in loaded.trials:
            self._remember(trial)
        self.validation.load(loaded.validations, [s.step for s in loaded.steps if s.finished])
        self._usage, self._role_usage = loaded.usage(self.validation.validated)
        self._elapsed_base = loaded.elapsed_s
        self._next_number = max((t.number for t in self.history), default=-1) + 1
        if loaded.steps:
            last = loaded.steps[-1]
            self._step = last.step
            self._started = last.step > 0 or last.finished
            if not last.finished:  # replay the open step from its recorded meta-prompt
                self._open = _OpenStep(last.step, last.prompt)
                self._next_number = last.first_number
                self._replaying = last.step > 0  # step 0 holds the starting solutions, not proposals

    # --- recording -----------------------------------------------------------------------
    def _remember(self, trial: Trial) -> None:
        self.history.append(trial)
        if trial.ok and self._solved_step is None and self.problem.is_solved(trial.solution):
            self._solved_step = trial.step

    def _record(self, trial: Trial) -> Trial:
        self.recorder.trial(trial)
        self._remember(trial)
        self._emit("trial", trial)
        return trial

    def _on_call(self, number: int, model: str, completion: Any, role: str = "optimizer", item: int = 0,
                 prompt: str | None = None) -> None:
        self._usage = self._usage.add(completion)
        self._role_usage[role] = self._role_usage.get(role, Usage()).add(completion)
        self.recorder.call(number, self._step, model, completion, role, item, prompt)
        self._emit("call", CallEvent(number, self._step, role, model, completion))

    def _account_validation(self, number: int, model: str, completion: Any, item: int) -> None:
        self._on_call(number, model, completion, "validation", item)

    def _record_validation(self, step: int, number: int, value: float | None, error: str | None) -> ValidationRecord:
        return self.recorder.validation(step, number, value, error)

    # --- ask / tell / suggest ------------------------------------------------------------
    def start(self) -> None:
        """Evaluate the problem's starting solutions as step 0 (once; a resume skips or finishes it)."""
        if self._started:
            return
        self._started = True
        if not self.starts:
            return
        step = self._open if self._open is not None else self._begin_step(0, None)
        solutions = self.problem.initial_solutions(stream(self.seed, "start"))
        numbers = [self._take_number() for _ in solutions]
        fresh = [Proposal(n, "start", solution=s) for n, s in zip(numbers, solutions) if self.history.get(n) is None]
        self._evaluate(self._admit_all(fresh, step.step), None)
        self._finish_step_if_done()

    def ask(self, n: int | None = None) -> list[Candidate]:
        """Propose up to ``n`` new valid candidates for one step (fewer if a budget runs out).

        Invalid, failed and duplicate proposals are recorded on the way and never returned.
        """
        if self._pending:
            raise RuntimeError(f"tell the {len(self._pending)} pending candidates before asking again")
        self.start()
        want = self.proposals_per_step if n is None else n
        step = self._step_to_ask()
        if n is None:
            want = self.proposer.step_size(want)
        out = self._draw(step, want)
        self._finish_step_if_done()
        return out

    def _step_to_ask(self) -> _OpenStep:
        """The open step, or a new one begun (a resumed run's validation that a kill cut short first)."""
        if self._open is None:
            self.validation.run_due()
            prompt = self.proposer.begin_step(self.problem, self.history, self._step + 1)
            return self._begin_step(self._step + 1, prompt)
        if self._replaying:  # a resumed open step: the proposer catches up (e.g. optuna's study);
            self._replaying = False  # the stored meta-prompt is kept, whatever it would render now
            self.proposer.begin_step(self.problem, self.history, self._open.step)
        return self._open

    def _draw(self, step: _OpenStep, want: int) -> list[Candidate]:
        """Up to ``max_rounds`` rounds of proposals (one if the proposer does not redraw) until ``want``
        are valid; numbers recorded before an interruption are skipped, not drawn again."""
        valid, out = 0, []
        for attempt in range(self.max_rounds if self.proposer.redraws else 1):
            size = min(want - valid, round_allowance(self.budget, self._spent()))
            if size <= 0 or self._failure is not None:
                break
            numbers = [self._take_number() for _ in range(size)]
            known = [self.history.get(x) for x in numbers]  # recorded before an interruption
            valid += sum(1 for t in known if t is not None and t.ok)
            todo = [x for x, t in zip(numbers, known) if t is None]
            proposals = self.proposer.propose_round(self.problem, step.prompt, numbers, todo, self.seed, self._on_call,
                                                    attempt=attempt) if todo else []
            if proposals and all(p.call_failed for p in proposals):
                self._failure = proposals[0].error or "LLM call failed"
            admitted = self._admit_all(proposals, step.step, novel=True)
            valid += len(admitted)
            out += admitted
        return out

    def tell(self, candidate: Candidate, value: float | None = None, error: str | None = None,
             metrics: dict[str, Any] | None = None) -> Trial:
        """Record the score of an asked candidate (or why it could not be scored), with any
        ``metrics`` of its evaluation (stored with the trial)."""
        if self._pending.pop(candidate.number, None) is None:
            raise ValueError(f"candidate {candidate.number} is not pending (already told, or not from ask)")
        if error is None and (value is None or not math.isfinite(float(value))):
            error = f"score is {value!r}, not a finite number"
        base = dict(number=candidate.number, step=candidate.step, source=candidate.source,
                    solution=candidate.solution, text=candidate.text, key=candidate.key, raw=candidate.raw,
                    metrics=with_origin(metrics, candidate.origin), parents=candidate.parents)
        if error is not None:
            trial = self._record(Trial(state=TrialState.FAILED, error=error[:2000], **base))
        else:
            trial = self._record(Trial(state=TrialState.COMPLETE, value=float(value), **base))  # type: ignore[arg-type]
        self._finish_step_if_done()
        return trial

    def suggest(self, solution: Any, value: float | None = None, source: str = "user") -> Trial:
        """Add a solution from outside (a warm start, a baseline); scored unless ``value`` is given."""
        self.start()
        number = self._take_number()
        admitted = self._admit_all([Proposal(number, source, solution=solution)], self._step)
        if not admitted:  # a duplicate or an unencodable solution, already recorded
            return self.history.get(number)  # type: ignore[return-value]
        if value is not None:
            return self.tell(admitted[0], value)
        self._evaluate(admitted, None)
        return self.history.get(number)  # type: ignore[return-value]

    # --- step plumbing -------------------------------------------------------------------
    def _take_number(self) -> int:
        self._next_number += 1
        return self._next_number - 1

    def _begin_step(self, step: int, prompt: str | None) -> _OpenStep:
        self.recorder.begin_step(step, self._next_number, prompt)
        self._step, self._open = step, _OpenStep(step, prompt)
        return self._open

    def _finish_step_if_done(self) -> None:
        if self._open is None or self._pending:
            return
        self.recorder.finish_step(self._open.step, self.elapsed_s)
        finished, self._open = self._open.step, None
        self.validation.step_finished(finished)

    def _admit_all(self, proposals: Iterable[Proposal], step: int, novel: bool = False) -> list[Candidate]:
        """Record invalid, failed and duplicate proposals; return the new valid ones as pending.
        ``novel``: proposals (not starts or suggestions) too similar to a scored or pending solution
        (``novelty_threshold``) are recorded as duplicates too."""
        out = []
        for p in proposals:
            base = dict(number=p.number, step=step, source=p.source, raw=p.raw, parents=tuple(p.parents),
                        metrics=with_origin(None, p.origin))
            if p.error is not None:
                state = TrialState.FAILED if p.call_failed else TrialState.INVALID
                self._record(Trial(state=state, error=p.error, **base))
                continue
            try:
                text, key = self.problem.encode(p.solution), self.problem.key(p.solution)
            except Exception as exc:
                self._record(Trial(state=TrialState.INVALID, error=f"cannot encode: {exc}"[:1000], **base))
                continue
            first = self.history.find(key)
            twin = first.number if first else next((c.number for c in self._pending.values() if c.key == key), None)
            similar = None if twin is not None or not novel else self.novelty.similar(
                self.problem, p.solution, self.history, self._pending.values())
            if twin is not None or similar is not None:
                if similar is not None:
                    base.update(metrics={**base["metrics"], SIMILARITY: similar.similarity}, error=similar.error)
                self._record(Trial(state=TrialState.DUPLICATE, solution=p.solution, text=text, key=key,
                                   duplicate_of=twin if similar is None else similar.number, **base))
                continue
            candidate = Candidate(p.number, step, p.solution, text, key, p.source, p.raw, tuple(p.parents), p.origin)
            self._pending[p.number] = candidate
            out.append(candidate)
        return out

    # --- budgets -------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return self._elapsed_base + (time.monotonic() - self._session_start)

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def step(self) -> int:
        return self._step

    def _uses_llm(self) -> bool:
        """Whether call, token and dollar budgets apply: the proposer or the problem calls a model."""
        return self.proposer.uses_llm() or any(self._role_usage.get(role, Usage()).calls > 0
                                               for role in ("scorer", "validation"))

    def _spent(self) -> Spent:
        """What the limits count, now (the goals' fields are left out: :meth:`stop_reason` adds them)."""
        evaluations = self.history.evaluated() + len(self._pending)
        u = self._usage
        return Spent(steps=self._step, evaluations=evaluations, calls=u.calls, tokens=u.tokens, usd=u.cost_usd,
                     seconds=self.elapsed_s, uses_llm=self._uses_llm(), solved_step=self._solved_step,
                     failure=self._failure)

    def _out_of_spend(self) -> bool:
        return out_of_spend(self.budget, self._spent())

    def stop_reason(self) -> tuple[StopReason, str] | None:
        """The first limit reached (success first), with a one-line explanation; None to go on."""
        best = self.history.best()
        spent = replace(self._spent(), best=None if best is None else best.value,
                        last_improvement=last_improvement(self.history.best_so_far()),
                        validation_stall=self.validation.stall())
        return stop_reason(self.budget, spent, self.problem.direction)

    # --- the loop ------------------------------------------------------------------------
    def run(self, *, executor: Any = None, on_step: Callable[["Optimizer"], None] | None = None) -> RunResult:
        """Ask, score, tell until a budget stops the run. Ctrl-C stops cleanly; resume later.

        ``executor``: anything with ``submit(fn, *args)`` returning futures
        (``concurrent.futures`` pools, ``dask.distributed.Client``) to score a step in parallel.
        ``on_step(optimizer)`` runs after each step; :meth:`register_callback` reports finer
        events (each LLM call, each trial) within a step.
        """
        reason: tuple[StopReason, str] | None = None
        self.recorder.running()
        try:
            self.start()
            while True:
                if self._open is None:
                    self.validation.run_due()  # a resumed run first finishes a validation a kill cut short
                if self._open is None and (reason := self.stop_reason()) is not None:
                    break  # an open step (a resumed run's) is always finished first
                candidates = self.ask()
                bar = race_bar(self.history, self.race, candidates[0].step) if candidates else None
                self._evaluate(candidates, executor, bar)
                if on_step is not None:
                    on_step(self)
        except KeyboardInterrupt:
            resume = f" (resume with --resume --name {self.name})" if self.name else ""
            reason = (StopReason.INTERRUPTED, f"interrupted at step {self._step}; every recorded trial is kept{resume}")
        assert reason is not None
        self.recorder.stopped(reason[0], reason[1], self.elapsed_s)
        return self.result(reason)

    def _evaluate(self, candidates: list[Candidate], executor: Any, bar: float | None = None) -> None:
        if executor is None:
            for c in candidates:
                self._tell_scored(c, lambda c=c: self._evaluate_here(c, bar))
            return
        if bar is not None:
            futures = [executor.submit(self.problem.evaluate_raced, c.solution, bar) for c in candidates]
        else:
            futures = [executor.submit(self.problem.evaluate, c.solution) for c in candidates]
        for c, future in zip(candidates, futures):  # record in proposal order: reproducible numbering
            self._tell_scored(c, future.result)

    def _evaluate_here(self, candidate: Candidate, bar: float | None = None) -> Evaluation:
        """Score in the loop (raced against ``bar`` if given), reporting each scorer call to the
        "scoring" callbacks as it is answered."""
        def score() -> Evaluation:
            if bar is None:
                return self.problem.evaluate(candidate.solution)
            return self.problem.evaluate_raced(candidate.solution, bar)

        if not self._callbacks.wanted("scoring"):
            return score()

        def scoring(model: str, completion: Any) -> None:
            self._emit("scoring", CallEvent(candidate.number, self._step, "scorer", model, completion))

        with observe_calls(scoring):
            return score()

    def _tell_scored(self, candidate: Candidate, compute: Callable[[], Evaluation]) -> None:
        done, value, error = evaluation(compute, "score")
        if done is None:  # a scoring error is a FAILED trial, not a dead run
            self.tell(candidate, error=error)
            return
        for item, model, completion in done.calls:
            self._on_call(candidate.number, model, completion, "scorer", item)
        metrics = done.metrics if done.feedback is None else {**done.metrics, "feedback": done.feedback}
        self.tell(candidate, value, error=failed_calls(done, "scorer"), metrics=metrics)

    def result(self, reason: tuple[StopReason, str] | None = None) -> RunResult:
        reason = reason or self.stop_reason() or (StopReason.INTERRUPTED, "not finished")
        rows = self.validation.sorted_rows()
        best = self.history.best()
        pick = chosen(rows, self.history.completed(), self.problem.direction) if rows else best
        return RunResult(name=self.name, stop_reason=reason[0], stop_detail=reason[1], best=best,
                         steps=self._step, solved_step=self._solved_step, counts=self.history.counts(),
                         usage=self._usage, elapsed_s=self.elapsed_s, metrics=self.problem.metrics(self.history),
                         history=self.history, usage_by_role=dict(self._role_usage), validations=rows,
                         chosen=pick or best)

    def validation_scores(self) -> dict[int, float]:
        """Each validated trial's score on the validation split, by trial number."""
        return validation_scores(self.validation.rows)
