"""The ask/tell optimizer and its budgets.

``ask(n)`` runs one OPRO step's proposals (drawing again, a bounded number of rounds, until it
has ``n`` new valid candidates) and records every invalid or duplicate reply on the way;
``tell(candidate, value)`` records a score; ``suggest(solution)`` adds a warm start or a
baseline's solution; ``run()`` is a thin loop over them that stops on the first budget that
runs out and says which.

Numbering makes runs reproducible and resumable: each proposal gets its trial number before it
is drawn, all its randomness derives from (seed, number), and a resumed run replays the open
step from the stored meta-prompt, skipping the numbers already recorded. Before that replay the
proposer's ``begin_step`` runs once more for the open step (its prompt is ignored), so a proposer
with state rebuilt from the history (optuna's study) catches up first.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import math
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Hashable, Iterable

from llmopt.budget import Budget, StopReason
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm import observe_calls
from llmopt.llm.usage import Usage
from llmopt.problem import Evaluation, Problem
from llmopt.proposers import Proposal, Proposer
from llmopt.seeding import stream
from llmopt.store import RunExistsError, RunRecord, RunStore, StoreError, ValidationRecord
from llmopt.validation import chosen, evaluations, stalled, validation_scores


@dataclass(frozen=True)
class CallEvent:
    """One LLM call, reported to the ``"call"`` callbacks as soon as it is accounted.

    A proposal's call is reported the moment it completes, while the rest of its round is still
    being asked; a scorer's calls when the solution they scored is told (with its trial number),
    and, to the ``"scoring"`` callbacks, already as each is answered (see :data:`CALLBACKS`).
    """

    number: int  # the trial the call belongs to
    step: int
    role: str  # "optimizer" (a proposal), "scorer", or "validation" (scoring it on the validation split)
    model: str
    completion: Any  # llmopt.llm.Completion


#: Callback names of :meth:`Optimizer.register_callback`: ``"call"`` gets a :class:`CallEvent`
#: after each LLM call is accounted; ``"trial"`` gets each :class:`Trial` as it is recorded;
#: ``"scoring"`` gets a :class:`CallEvent` as each call of a problem's scorer model is answered
#: while a solution is scored in the loop (not yet accounted: it is, and reported as a ``"call"``,
#: when the solution is told; scoring on an executor reports no ``"scoring"`` events).
CALLBACKS = ("call", "trial", "scoring")


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


@dataclass(frozen=True)
class RunResult:
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


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("llmopt", "numpy", "scipy", "litellm"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class _OpenStep:
    step: int
    prompt: str | None


class Optimizer:
    """Ask/tell OPRO optimizer. See the module docstring."""

    def __init__(self, problem: Problem, proposer: Proposer, *, seed: int = 0, budget: Budget | None = None,
                 proposals_per_step: int = 8, max_rounds: int = 3, store: RunStore | None = None,
                 name: str | None = None, resume: bool = False, starts: bool = True, race: int | None = None,
                 validate_every: int | None = None, validate_top: int | None = 3,
                 validation_patience: int | None = None, accept_changed_objective: bool = False,
                 command: str | None = None) -> None:
        if proposals_per_step < 1:
            raise ValueError(f"proposals_per_step must be >= 1, got {proposals_per_step}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        if resume and store is None:
            raise ValueError("resume=True needs a store")
        if race is not None and race < 1:
            raise ValueError(f"race must be >= 1 (the rank a proposal must be able to reach), got {race}")
        if race is not None and not problem.can_race:
            raise ValueError(f"problem {problem.name!r} cannot race its scoring (it does not override evaluate_raced)")
        self._check_validation(problem, validate_every, validate_top, validation_patience)
        self.race, self.accept_changed_objective = race, accept_changed_objective
        self.command = command  # the command line that started the run, recorded with it (its resume hint)
        self.validate_every, self.validate_top = validate_every, validate_top
        self.validation_patience = validation_patience
        self.problem, self.proposer = problem, proposer
        self.seed, self.budget = int(seed), budget or Budget()
        self.proposals_per_step, self.max_rounds, self.starts = proposals_per_step, max_rounds, starts
        self.store, self.history = store, SolutionHistory(problem.direction)
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
        self._validations: list[ValidationRecord] = []  # every validation row, in recording order
        self._validated: dict[int, ValidationRecord] = {}  # trial number -> its first row (scored once)
        self._due: list[int] = []  # finished steps whose validation is not known to be complete
        self._callbacks: dict[str, list[Callable[["Optimizer", Any], None]]] = {name: [] for name in CALLBACKS}
        self.run_record: RunRecord | None = None
        if store is not None:
            self.proposer.bind_cache(store.cache())
            self.problem.bind_cache(store.cache())
            self._open_store(store, name, resume)

    @staticmethod
    def _check_validation(problem: Problem, every: int | None, top: int | None, patience: int | None) -> None:
        if every is None:
            if patience is not None:
                raise ValueError("validation_patience needs validate_every (validation scores to watch)")
            return
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"validate_every must be an integer >= 1 (steps between validations), got {every!r}")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise ValueError(f"validate_top must be an integer >= 1 or None (all), got {top!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"validation_patience must be an integer >= 1 (evaluations), got {patience!r}")
        if not problem.has_validation:
            raise ValueError(f"problem {problem.name!r} has no validation split to validate on "
                             "(prompt optimization: --validation-fraction F gives the task a validation split)")

    # --- callbacks ---------------------------------------------------------------------------
    def register_callback(self, name: str, callback: Callable[["Optimizer", Any], None]) -> None:
        """Call ``callback(optimizer, event)`` on every ``name`` event (see :data:`CALLBACKS`).

        They run in the loop's thread (a proposal's call: on the event loop, between other calls'
        replies), so they should be quick: a progress bar, a log line. What they raise is raised.
        """
        if name not in self._callbacks:
            raise ValueError(f"unknown callback {name!r} (expected one of {', '.join(CALLBACKS)})")
        self._callbacks[name].append(callback)

    def _emit(self, name: str, event: Any) -> None:
        for callback in self._callbacks[name]:
            callback(self, event)

    # --- configuration and the store -----------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"seed": self.seed, "direction": self.problem.direction.value,
                "proposals_per_step": self.proposals_per_step, "max_rounds": self.max_rounds,
                "starts": self.starts, "budget": asdict(self.budget), "problem": self.problem.config(),
                "proposer": self.proposer.config(), **({"race": self.race} if self.race is not None else {}),
                **({"validation": self._validation_config()} if self.validate_every is not None else {})}

    def _validation_config(self) -> dict[str, Any]:
        return {"every": self.validate_every, "top": self.validate_top, "patience": self.validation_patience}

    @property
    def name(self) -> str | None:
        return self.run_record.name if self.run_record else None

    def _open_store(self, store: RunStore, name: str | None, resume: bool) -> None:
        """Create the run, or (``resume``) reopen it; this Optimizer then owns it (``RunStore.claim``).

        A name that is taken is an error (``RunExistsError``); only ``name=None`` picks a free
        one: ``default_run_name``, then ``-2``, ``-3``... (``result.name`` says which). The
        command line always passes a name, so there a taken name is refused, never renamed. On a
        read-only store the run is only read (``resume=True``), never claimed.
        """
        if resume:
            if name is None:
                raise StoreError("resume needs the run's name (--name)")
            self.run_record = store.get_run(name)
            self.proposer.resuming(self.run_record.config.get("proposer") or {})
            self._check_same_config(self.run_record.config)
            if not store.readonly:
                store.claim(name)  # no other process writes it from here on, so read it now
                self.run_record = store.get_run(name)
            self._load(store, self.run_record)
            return
        if name is not None:
            self.run_record = store.create_run(name, self.problem.name, self.config(), self._versions())
            return
        base = default_run_name(self.problem, self.proposer, self.seed)
        for i in itertools.count(1):
            candidate = base if i == 1 else f"{base}-{i}"
            if store.find_run(candidate) is not None:
                continue
            try:
                self.run_record = store.create_run(candidate, self.problem.name, self.config(), self._versions())
                return
            except RunExistsError:  # another process took it a moment ago
                continue

    def _versions(self) -> dict[str, str]:
        return {**versions(), **({"command": self.command} if self.command else {})}

    def _check_same_config(self, stored: dict[str, Any]) -> None:
        """A resumed run must be the same experiment; only its budget (and its validation patience, a
        stopping rule too) may change. A problem's ``fingerprint`` (what its objective computes) is
        compared apart: a change is refused in one line naming both, unless accepted knowingly; a run
        recorded without one (older llmopt) is not checked."""
        assert self.run_record is not None
        mine = _without_stopping_rules(_jsonable(self.config()))
        theirs = _without_stopping_rules(stored)
        old, new = (dict(c.get("problem") or {}).pop("fingerprint", None) for c in (theirs, mine))
        for config in (mine, theirs):
            config["problem"] = {k: v for k, v in (config.get("problem") or {}).items() if k != "fingerprint"}
        diffs = settings_diff(theirs, mine)
        if diffs:
            one_line = ", ".join(diffs)
            details = f": {one_line}" if len(one_line) <= 120 else ":\n  " + "\n  ".join(diffs)
            raise StoreError(f"cannot resume run {self.run_record.name!r} with different settings{details}")
        if old is not None and new is not None and old != new and not self.accept_changed_objective:
            what = mine["problem"].get("objective") or self.problem.name
            raise StoreError(f"cannot resume run {self.run_record.name!r}: its objective {what} changed since the run "
                             f"began (fingerprint {old} -> {new}), so new values would mix with the recorded ones; "
                             "resume it knowingly with --accept-changed-objective (accept_changed_objective=True)")

    def _load(self, store: RunStore, run: RunRecord) -> None:
        for stored in store.trials(run.id):
            solution = self.problem.from_text(stored.text) if stored.text is not None else None
            self._remember(replace(stored, solution=solution,
                                   key=None if solution is None else self.problem.key(solution)))
        for row in store.validations(run.id):
            self._add_validation_row(row)
        self._load_usage(store, run)
        self._elapsed_base = run.elapsed_s
        steps = store.steps(run.id)
        if self.validate_every is not None:  # checked before the run goes on: a kill may have cut one short
            self._due = [s.step for s in steps if s.finished and s.step % self.validate_every == 0]
        self._next_number = max((t.number for t in self.history), default=-1) + 1
        if steps:
            last = steps[-1]
            self._step = last.step
            self._started = last.step > 0 or last.finished
            if not last.finished:  # replay the open step from its recorded meta-prompt
                self._open = _OpenStep(last.step, last.prompt)
                self._next_number = last.first_number
                self._replaying = last.step > 0  # step 0 holds the starting solutions, not proposals

    def _load_usage(self, store: RunStore, run: RunRecord) -> None:
        """The usage of the calls of recorded trials, by role; a trial's validation calls count once
        its validation row is recorded (a validation cut short by a kill is redone, from the cache,
        and counted then: never twice)."""
        recorded = {t.number for t in self.history}
        total, by_role = Usage(), {}
        for call in store.calls(run.id):
            if call.number not in recorded or (call.role == "validation" and call.number not in self._validated):
                continue
            completion = call.completion()
            total = total.add(completion)
            by_role[call.role] = by_role.get(call.role, Usage()).add(completion)
        self._usage = total
        self._role_usage = {role: used for role, used in by_role.items() if used.calls}

    # --- recording -----------------------------------------------------------------------
    def _remember(self, trial: Trial) -> None:
        self.history.append(trial)
        if trial.ok and self._solved_step is None and self.problem.is_solved(trial.solution):
            self._solved_step = trial.step

    def _record(self, trial: Trial) -> Trial:
        if self.store is not None and self.run_record is not None:
            self.store.add_trial(self.run_record.id, trial)
        self._remember(trial)
        self._emit("trial", trial)
        return trial

    def _on_call(self, number: int, model: str, completion: Any, role: str = "optimizer", item: int = 0,
                 prompt: str | None = None) -> None:
        self._usage = self._usage.add(completion)
        self._role_usage[role] = self._role_usage.get(role, Usage()).add(completion)
        if self.store is not None and self.run_record is not None:
            self.store.add_call(self.run_record.id, number, self._step, model, completion, role, item, prompt)
        self._emit("call", CallEvent(number, self._step, role, model, completion))

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
        if self._open is None:
            self._validate_due()  # a resumed run's validation that a kill cut short comes first
            prompt = self.proposer.begin_step(self.problem, self.history, self._step + 1)
            self._begin_step(self._step + 1, prompt)
        elif self._replaying:  # a resumed open step: the proposer catches up (e.g. optuna's study);
            self._replaying = False  # the stored meta-prompt is kept, whatever it would render now
            self.proposer.begin_step(self.problem, self.history, self._open.step)
        step = self._open
        assert step is not None
        if n is None:
            want = self.proposer.step_size(want)
        valid, out = 0, []
        for attempt in range(self.max_rounds if self.proposer.redraws else 1):
            size = min(want - valid, self._round_allowance())
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
            admitted = self._admit_all(proposals, step.step)
            valid += len(admitted)
            out += admitted
        self._finish_step_if_done()
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
                    metrics=dict(metrics or {}), parents=candidate.parents)
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
        if self.store is not None and self.run_record is not None:
            self.store.begin_step(self.run_record.id, step, self._next_number, prompt)
        self._step, self._open = step, _OpenStep(step, prompt)
        return self._open

    def _finish_step_if_done(self) -> None:
        if self._open is None or self._pending:
            return
        if self.store is not None and self.run_record is not None:
            self.store.finish_step(self.run_record.id, self._open.step)
            self.store.set_elapsed(self.run_record.id, self.elapsed_s)
        finished, self._open = self._open.step, None
        if self.validate_every is not None and finished % self.validate_every == 0:
            self._due.append(finished)
        self._validate_due()

    # --- validation ----------------------------------------------------------------------
    def _add_validation_row(self, row: ValidationRecord) -> None:
        self._validations.append(row)
        self._validated.setdefault(row.number, row)

    def _validation_targets(self, step: int) -> list[Trial]:
        """The solutions validated after ``step``: the top ``validate_top`` by training score (all
        if None) among the trials of steps up to ``step``, best first."""
        upto = SolutionHistory(self.problem.direction, (t for t in self.history if t.step <= step))
        return upto.top_k(len(upto) if self.validate_top is None else self.validate_top)[::-1]

    def _validate_due(self) -> None:
        """Validate each finished step that is due (every ``validate_every`` steps, step 0 included),
        in order; a step whose validation a kill cut short is finished first. A trial validated at an
        earlier step keeps its score (no new calls). Stops, leaving the rest due, once a call, token,
        dollar or time limit is used up (a resume with a larger budget does the rest first)."""
        while self._due:
            step = self._due[0]
            done = {row.number for row in self._validations if row.step == step}
            for trial in self._validation_targets(step):
                if trial.number in done:
                    continue
                if self._spent():
                    return
                self._validate(step, trial)
            self._due.pop(0)

    def _spent(self) -> bool:
        """Whether a limit on calls, tokens, dollars or time is used up (validation makes no new step)."""
        b = self.budget
        if self._uses_llm() and ((b.max_calls is not None and self._usage.calls >= b.max_calls)
                                 or self._spend_exhausted() is not None):
            return True
        return b.max_seconds is not None and self.elapsed_s >= b.max_seconds

    def _validate(self, step: int, trial: Trial) -> None:
        known = self._validated.get(trial.number)
        if known is not None:  # scored at an earlier evaluation: the same score, no new calls
            value, error = known.value, known.error
        else:
            value, error = self._score_on_validation(trial)
        row = ValidationRecord(step, trial.number, value, error)
        if self.store is not None and self.run_record is not None:
            self.store.add_validation(self.run_record.id, step, trial.number, value, error)
        self._add_validation_row(row)

    def _score_on_validation(self, trial: Trial) -> tuple[float | None, str | None]:
        try:
            done = self.problem.evaluate_validation(trial.solution)
            if not isinstance(done, Evaluation):
                done = Evaluation(float(done))
            value = float(done.value)
        except Exception as exc:  # recorded as the trial's validation error, not a dead run
            return None, f"validation raised {type(exc).__name__}: {exc}"[:2000]
        for item, model, completion in done.calls:
            self._on_call(trial.number, model, completion, "validation", item)
        failed = [c for _, _, c in done.calls if not c.ok]
        if failed:
            return None, f"{len(failed)} of {len(done.calls)} validation calls failed: {failed[0].error}"[:2000]
        if not math.isfinite(value):
            return None, f"validation score is {value!r}, not a finite number"
        return value, None

    def _admit_all(self, proposals: Iterable[Proposal], step: int) -> list[Candidate]:
        """Record invalid, failed and duplicate proposals; return the new valid ones as pending."""
        out = []
        for p in proposals:
            base = dict(number=p.number, step=step, source=p.source, raw=p.raw, parents=tuple(p.parents))
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
            if twin is not None:
                self._record(Trial(state=TrialState.DUPLICATE, solution=p.solution, text=text, key=key,
                                   duplicate_of=twin, **base))
                continue
            candidate = Candidate(p.number, step, p.solution, text, key, p.source, p.raw, tuple(p.parents))
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

    def _evaluations(self) -> int:
        return self.history.counts()[TrialState.COMPLETE.value] + len(self._pending)

    def _round_allowance(self) -> int:
        """How many proposals the next round may draw before a budget is exceeded."""
        b, allowance = self.budget, 1 << 30
        if b.max_evals is not None:
            allowance = min(allowance, int(b.max_evals) - self._evaluations())
        if self._uses_llm():
            if b.max_calls is not None:
                allowance = min(allowance, int(b.max_calls) - self._usage.calls)
            if self._spend_exhausted() is not None:
                return 0
        if b.max_seconds is not None and self.elapsed_s >= b.max_seconds:
            return 0
        return allowance

    def _spend_exhausted(self) -> StopReason | None:
        b, u = self.budget, self._usage
        if b.max_tokens is not None and u.tokens >= b.max_tokens:
            return StopReason.MAX_TOKENS
        if b.max_usd is not None and u.cost_usd >= b.max_usd:
            return StopReason.MAX_USD
        return None

    def stop_reason(self) -> tuple[StopReason, str] | None:
        """The first limit reached (success first), with a one-line explanation; None to go on."""
        b, best = self.budget, self.history.best()
        if b.stop_when_solved and self._solved_step is not None:
            return StopReason.SOLVED, f"the optimum was proposed at step {self._solved_step}"
        if b.target is not None and best is not None and not self.problem.direction.better(b.target, best.value):
            return StopReason.TARGET, f"best {best.value:g} reached target {b.target:g}"
        if b.patience is not None and self._step - self._last_improvement() >= b.patience:
            return StopReason.PATIENCE, f"no improvement in {b.patience} steps"
        if self.validation_patience is not None:
            points = evaluations(self._validations, self.problem.direction)
            if stalled(points, self.validation_patience):
                last = points[-1]
                best = "no validation score yet" if last.best_so_far is None else \
                    f"best {last.best_so_far:.6g} at step {last.best_so_far_step}"
                return StopReason.VALIDATION, (f"validation accuracy has not improved in {self.validation_patience} "
                                               f"evaluations ({best})")
        if self._failure is not None:
            return StopReason.LLM_FAILURE, f"every call of a round failed: {self._failure}"
        checks = [
            (b.max_steps, self._step, StopReason.MAX_STEPS, "steps"),
            (b.max_evals, self._evaluations(), StopReason.MAX_EVALS, "evaluations"),
            (b.max_calls, self._usage.calls, StopReason.MAX_CALLS, "LLM calls"),
            (b.max_tokens, self._usage.tokens, StopReason.MAX_TOKENS, "tokens"),
            (b.max_usd, self._usage.cost_usd, StopReason.MAX_USD, "dollars"),
            (b.max_seconds, self.elapsed_s, StopReason.MAX_SECONDS, "seconds"),
        ]
        for limit, used, reason, what in checks:
            if limit is not None and used >= limit:
                if reason in (StopReason.MAX_CALLS, StopReason.MAX_TOKENS, StopReason.MAX_USD) \
                        and not self._uses_llm():
                    continue
                return reason, f"{what} budget used: {used:.6g} of {limit:g}"
        return None

    def _last_improvement(self) -> int:
        last, best = 0, None
        for step, value in self.history.best_so_far():
            if value is not None and value != best:
                last, best = step, value
        return last

    # --- the loop ------------------------------------------------------------------------
    def run(self, *, executor: Any = None, on_step: Callable[["Optimizer"], None] | None = None) -> RunResult:
        """Ask, score, tell until a budget stops the run. Ctrl-C stops cleanly; resume later.

        ``executor``: anything with ``submit(fn, *args)`` returning futures
        (``concurrent.futures`` pools, ``dask.distributed.Client``) to score a step in parallel.
        ``on_step(optimizer)`` runs after each step; :meth:`register_callback` reports finer
        events (each LLM call, each trial) within a step.
        """
        reason: tuple[StopReason, str] | None = None
        if self.store is not None and self.run_record is not None and not self.store.readonly:
            self.store.claim(self.run_record.name)  # held since opening, unless a previous run() ended
            self.store.set_status(self.run_record.id, "running")
        try:
            self.start()
            while True:
                if self._open is None:
                    self._validate_due()  # a resumed run first finishes a validation a kill cut short
                if self._open is None and (reason := self.stop_reason()) is not None:
                    break  # an open step (a resumed run's) is always finished first
                candidates = self.ask()
                self._evaluate(candidates, executor, self._race_bar(candidates))
                if on_step is not None:
                    on_step(self)
        except KeyboardInterrupt:
            resume = f" (resume with --resume --name {self.name})" if self.name else ""
            reason = (StopReason.INTERRUPTED, f"interrupted at step {self._step}; every recorded trial is kept{resume}")
        assert reason is not None
        if self.store is not None and self.run_record is not None:
            status = "interrupted" if reason[0] is StopReason.INTERRUPTED else "finished"
            self.store.set_status(self.run_record.id, status, reason[0].value, reason[1], self.elapsed_s)
            self.store.release(self.run_record.name)  # stopped: another process may resume it now
        return self.result(reason)

    def _uses_llm(self) -> bool:
        """Whether call, token and dollar budgets apply: the proposer or the problem calls a model."""
        return self.proposer.uses_llm() or any(self._role_usage.get(role, Usage()).calls > 0
                                               for role in ("scorer", "validation"))

    def _race_bar(self, candidates: list[Candidate]) -> float | None:
        """With ``race=k``: the k-th best value of the steps before the candidates' (None: fewer than
        k scored, or no racing). Fixed for the step, so a step resumed half-scored, or scored on an
        executor, races against the same bar."""
        if self.race is None or not candidates:
            return None
        step = candidates[0].step
        ranked = SolutionHistory(self.problem.direction, (t for t in self.history if t.step < step)).top_k(self.race)
        return float(ranked[0].value) if len(ranked) == self.race else None  # type: ignore[arg-type]

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

        if not self._callbacks["scoring"]:
            return score()

        def scoring(model: str, completion: Any) -> None:
            self._emit("scoring", CallEvent(candidate.number, self._step, "scorer", model, completion))

        with observe_calls(scoring):
            return score()

    def _tell_scored(self, candidate: Candidate, compute: Callable[[], Evaluation]) -> None:
        try:
            done = compute()
            if not isinstance(done, Evaluation):  # a plain number from a user's evaluate()
                done = Evaluation(float(done))
            value = float(done.value)
        except Exception as exc:  # a scoring error is a FAILED trial, not a dead run
            self.tell(candidate, error=f"score raised {type(exc).__name__}: {exc}")
            return
        for item, model, completion in done.calls:
            self._on_call(candidate.number, model, completion, "scorer", item)
        failed = [c for _, _, c in done.calls if not c.ok]
        if failed:  # a partial score would be biased; the answered calls are cached for a re-score
            self.tell(candidate, error=f"{len(failed)} of {len(done.calls)} scorer calls failed: {failed[0].error}",
                      metrics=done.metrics)
            return
        self.tell(candidate, value, metrics=done.metrics)

    def result(self, reason: tuple[StopReason, str] | None = None) -> RunResult:
        reason = reason or self.stop_reason() or (StopReason.INTERRUPTED, "not finished")
        rows = tuple(sorted(self._validations, key=lambda r: (r.step, r.number)))
        best = self.history.best()
        pick = chosen(rows, self.history.completed(), self.problem.direction) if rows else best
        return RunResult(name=self.name, stop_reason=reason[0], stop_detail=reason[1], best=best,
                         steps=self._step, solved_step=self._solved_step, counts=self.history.counts(),
                         usage=self._usage, elapsed_s=self.elapsed_s, metrics=self.problem.metrics(self.history),
                         history=self.history, usage_by_role=dict(self._role_usage), validations=rows,
                         chosen=pick or best)

    def validation_scores(self) -> dict[int, float]:
        """Each validated trial's score on the validation split, by trial number."""
        return validation_scores(self._validations)


def default_run_name(problem: Problem, proposer: Proposer, seed: int) -> str:
    """``<problem>-<proposer>-seed<S>``, the name a run gets when none is given (``linreg-llm-seed0``,
    ``linreg-optuna-tpe-seed0``: characters other than letters, digits, ``.`` and ``_`` become ``-``)."""
    label = re.sub(r"[^A-Za-z0-9._]+", "-", proposer.label).strip("-") or proposer.kind
    return f"{problem.name}-{label}-seed{int(seed)}"


def settings_diff(stored: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: stored -> given`` for each setting that differs, nested dicts as dotted keys."""
    out = []
    for key in sorted(set(stored) | set(given), key=str):
        old, new = stored.get(key, _ABSENT), given.get(key, _ABSENT)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out += settings_diff(old, new, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return out


_ABSENT = object()


def _short(value: Any, limit: int = 60) -> str:
    text = "(not set)" if value is _ABSENT else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _without_stopping_rules(config: dict[str, Any]) -> dict[str, Any]:
    """A config without what a resumed run may change: the budget, the validation patience."""
    out = {k: v for k, v in config.items() if k != "budget"}
    if isinstance(out.get("validation"), dict):
        out["validation"] = {k: v for k, v in out["validation"].items() if k != "patience"}
    return out


def _jsonable(value: Any) -> Any:
    """Normalise a config the way a JSON round trip through the store would."""
    return json.loads(json.dumps(value, sort_keys=True))
