"""Recording a run and resuming it: one object between the optimizer and the store.

:func:`open_recorder` creates the run (or, resuming, reopens it after checking it is the same
experiment) and returns a :class:`RunRecorder`; without a store the optimizer holds a
:class:`NullRecorder`, which records nothing, so the loop never asks whether it has a store.
A resumed run's recorded state comes back as one :class:`Loaded`, which the optimizer replays.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import platform
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from llmopt.budget import StopReason
from llmopt.history import Trial
from llmopt.llm.usage import Completion, Usage
from llmopt.problem import Problem
from llmopt.proposers import Proposer
from llmopt.store import CallRecord, RunExistsError, RunRecord, RunStore, StepRecord, StoreError, ValidationRecord


def versions() -> dict[str, str]:
    """The software a run was made with, recorded with it."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("llmopt", "numpy", "scipy", "litellm"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


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


@dataclass(frozen=True)
class RunSpec:
    """What a run is, for creating it or checking that a resume is the same experiment. ``config``
    is a function: a resumed proposer may take settings from the stored run before it is read."""

    problem: Problem
    proposer: Proposer
    seed: int
    config: Callable[[], dict[str, Any]]
    command: str | None = None  # the command line that started the run, recorded with it (its resume hint)
    accept_changed_objective: bool = False


@dataclass(frozen=True)
class Loaded:
    """A resumed run's recorded state: its trials (solutions decoded again), validation rows, calls,
    steps and elapsed time."""

    trials: list[Trial]
    validations: list[ValidationRecord]
    calls: list[CallRecord]
    steps: list[StepRecord]
    elapsed_s: float

    def usage(self, validated: Callable[[int], bool]) -> tuple[Usage, dict[str, Usage]]:
        """The usage of the calls of recorded trials, in total and by role (roles without calls left
        out); a trial's validation calls count once its validation row is recorded (``validated``):
        a validation cut short by a kill is redone, from the cache, and counted then, never twice."""
        recorded = {t.number for t in self.trials}
        total, by_role = Usage(), {}
        for call in self.calls:
            if call.number not in recorded or (call.role == "validation" and not validated(call.number)):
                continue
            completion = call.completion()
            total = total.add(completion)
            by_role[call.role] = by_role.get(call.role, Usage()).add(completion)
        return total, {role: used for role, used in by_role.items() if used.calls}



class NullRecorder:
    """A run without a store: every record is dropped, a validation row is only returned."""

    store: RunStore | None = None
    run: RunRecord | None = None

    @property
    def name(self) -> str | None:
        return self.run.name if self.run else None

    def load(self) -> Loaded | None:
        """A resumed run's state (None: a new run)."""
        return None

    def running(self) -> None:
        """``run()`` starts (or goes on)."""

    def stopped(self, reason: StopReason, detail: str, elapsed_s: float) -> None:
        """``run()`` stopped, for ``reason``."""

    def trial(self, trial: Trial) -> None:
        """One trial, as it is recorded in the history."""

    def call(self, number: int, step: int, model: str, completion: Completion, role: str, item: int,
             prompt: str | None) -> None:
        """One LLM call, as it is accounted."""

    def begin_step(self, step: int, first_number: int, prompt: str | None) -> None:
        """A step begins: its first trial number and its meta-prompt (a resume replays it)."""

    def finish_step(self, step: int, elapsed_s: float) -> None:
        """Every proposal of ``step`` is recorded."""

    def validation(self, step: int, number: int, value: float | None, error: str | None) -> ValidationRecord:
        """Trial ``number``'s validation score after ``step``; returns the row."""
        return ValidationRecord(step, number, value, error)


class RunRecorder(NullRecorder):
    """A run in a store, owned (``RunStore.claim``) by this process while it runs."""

    def __init__(self, store: RunStore, run: RunRecord, problem: Problem, resumed: bool = False) -> None:
        self.store: RunStore = store
        self.run: RunRecord = run
        self.problem, self._resumed = problem, resumed

    def load(self) -> Loaded | None:
        if not self._resumed:
            return None
        run_id = self.run.id
        trials = []
        for stored in self.store.trials(run_id):
            solution = self.problem.from_text(stored.text) if stored.text is not None else None
            trials.append(replace(stored, solution=solution, key=None if solution is None else self.problem.key(solution)))
        return Loaded(trials, self.store.validations(run_id), self.store.calls(run_id), self.store.steps(run_id),
                      self.run.elapsed_s)

    def running(self) -> None:
        if not self.store.readonly:
            self.store.claim(self.run.name)  # held since opening, unless a previous run() ended
            self.store.set_status(self.run.id, "running")

    def stopped(self, reason: StopReason, detail: str, elapsed_s: float) -> None:
        status = "interrupted" if reason is StopReason.INTERRUPTED else "finished"
        self.store.set_status(self.run.id, status, reason.value, detail, elapsed_s)
        self.store.release(self.run.name)  # stopped: another process may resume it now

    def trial(self, trial: Trial) -> None:
        self.store.add_trial(self.run.id, trial)

    def call(self, number: int, step: int, model: str, completion: Completion, role: str, item: int,
             prompt: str | None) -> None:
        self.store.add_call(self.run.id, number, step, model, completion, role, item, prompt)

    def begin_step(self, step: int, first_number: int, prompt: str | None) -> None:
        self.store.begin_step(self.run.id, step, first_number, prompt)

    def finish_step(self, step: int, elapsed_s: float) -> None:
        self.store.finish_step(self.run.id, step)
        self.store.set_elapsed(self.run.id, elapsed_s)

    def validation(self, step: int, number: int, value: float | None, error: str | None) -> ValidationRecord:
        self.store.add_validation(self.run.id, step, number, value, error)
        return ValidationRecord(step, number, value, error)


def open_recorder(store: RunStore | None, name: str | None, resume: bool, spec: RunSpec) -> NullRecorder:
    """The run's recorder: a :class:`NullRecorder` without a store, else the run created or (``resume``)
    reopened; the proposer's and the problem's caches are bound to the store's first.

    A name that is taken is an error (``RunExistsError``); only ``name=None`` picks a free one:
    ``default_run_name``, then ``-2``, ``-3``... (``result.name`` says which). The command line
    always passes a name, so there a taken name is refused, never renamed. On a read-only store the
    run is only read (``resume=True``), never claimed.
    """
    if store is None:
        if resume:
            raise ValueError("resume=True needs a store")
        return NullRecorder()
    spec.proposer.bind_cache(store.cache())
    spec.problem.bind_cache(store.cache())
    if resume:
        return RunRecorder(store, _reopen(store, name, spec), spec.problem, resumed=True)
    return RunRecorder(store, _create(store, name, spec), spec.problem)


def _reopen(store: RunStore, name: str | None, spec: RunSpec) -> RunRecord:
    if name is None:
        raise StoreError("resume needs the run's name (--name)")
    run = store.get_run(name)
    spec.proposer.resuming(run.config.get("proposer") or {})
    check_same_config(run, spec)
    if not store.readonly:
        store.claim(name)  # no other process writes it from here on, so read it now
        run = store.get_run(name)
    return run


def _create(store: RunStore, name: str | None, spec: RunSpec) -> RunRecord:
    recorded = {**versions(), **({"command": spec.command} if spec.command else {})}
    if name is not None:
        return store.create_run(name, spec.problem.name, spec.config(), recorded)
    base = default_run_name(spec.problem, spec.proposer, spec.seed)
    for i in itertools.count(1):
        candidate = base if i == 1 else f"{base}-{i}"
        if store.find_run(candidate) is not None:
            continue
        try:
            return store.create_run(candidate, spec.problem.name, spec.config(), recorded)
        except RunExistsError:  # another process took it a moment ago
            continue
    raise AssertionError("unreachable")


def check_same_config(run: RunRecord, spec: RunSpec) -> None:
    """A resumed run must be the same experiment; only its budget (and its validation patience, a
    stopping rule too) may change. A problem's ``fingerprint`` (what its objective computes) is
    compared apart: a change is refused in one line naming both, unless accepted knowingly; a run
    recorded without one (older llmopt) is not checked."""
    mine = _without_stopping_rules(_jsonable(spec.config()))
    theirs = _without_stopping_rules(run.config)
    old, new = (dict(c.get("problem") or {}).pop("fingerprint", None) for c in (theirs, mine))
    for config in (mine, theirs):
        config["problem"] = {k: v for k, v in (config.get("problem") or {}).items() if k != "fingerprint"}
    diffs = settings_diff(theirs, mine)
    if diffs:
        one_line = ", ".join(diffs)
        details = f": {one_line}" if len(one_line) <= 120 else ":\n  " + "\n  ".join(diffs)
        raise StoreError(f"cannot resume run {run.name!r} with different settings{details}")
    if old is not None and new is not None and old != new and not spec.accept_changed_objective:
        what = mine["problem"].get("objective") or spec.problem.name
        raise StoreError(f"cannot resume run {run.name!r}: its objective {what} changed since the run "
                         f"began (fingerprint {old} -> {new}), so new values would mix with the recorded ones; "
                         "resume it knowingly with --accept-changed-objective (accept_changed_objective=True)")
