"""What a store holds, as frozen records: a run, a step, a validation, an LLM call; and the
store's errors. Read back by :class:`llmopt.store.sqlite.RunStore`; no SQL here but the row readers."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmopt.llm.usage import Completion
from llmopt.problem import Direction


class StoreError(RuntimeError):
    """The store cannot be opened or does not hold what was asked for."""


class RunExistsError(StoreError):
    """A new run was given a name that the store already holds (and no process is running it)."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(f"run {name!r} already exists in {path}: resume it (resume=True, or --resume on the "
                         f"command line), or pick another name")
        self.name, self.path = name, path


class RunBusyError(StoreError):
    """The run is being written by another live process (it holds the run's ownership lock)."""

    def __init__(self, name: str, path: Path, owner: str, creating: bool) -> None:
        if creating:
            text = (f"run {name!r} already exists in {path} and is running in another process ({owner}): wait for "
                    f"it to stop, or pick another name")
        else:
            text = f"run {name!r} in {path} is running in another process ({owner}): wait for it to stop first"
        super().__init__(text)
        self.name, self.path, self.owner = name, path, owner


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    problem: str
    config: dict[str, Any]
    versions: dict[str, Any]
    status: str
    stop_reason: str | None
    stop_detail: str | None
    elapsed_s: float
    created: float

    @property
    def direction(self) -> Direction:
        """The direction the run optimized in, as recorded in its config."""
        return Direction(self.config.get("direction", Direction.MINIMIZE.value))

    @property
    def optimum(self) -> float | None:
        """The optimum recorded with the run (its problem's ``config()["optimum"]``; None: unknown):
        what a stored run's gap is measured against when no Problem object is at hand."""
        value = self.config.get("problem", {}).get("optimum")
        return None if value is None else float(value)


@dataclass(frozen=True)
class StepRecord:
    step: int
    first_number: int
    prompt: str | None
    finished: bool


@dataclass(frozen=True)
class ValidationRecord:
    """Trial ``number``'s score on the validation split, evaluated after ``step`` (None: it failed)."""

    step: int
    number: int
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One recorded LLM call: the optimizer's proposal for trial ``number``, or the scorer's
    ``item``-th call while scoring it."""

    number: int
    role: str
    item: int
    step: int
    model: str
    seed: int
    cache_key: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model is unpriced
    latency_s: float
    cache_hit: bool
    error: str | None
    created: float  # when it was recorded (time.time()), as it ended
    choice: int = 0  # the choice of a request that asked for several (n): only choice 0 is a call of its own
    cached_tokens: int = 0  # prompt tokens the provider served from its prompt cache (priced at its cached rate)
    prompt: str | None = None  # the call's own prompt (None: its step's meta-prompt)

    def completion(self) -> Completion:
        """The call's accounting as a :class:`Completion` (its text is not kept with the call)."""
        return Completion(seed=self.seed, text=None if self.error else "", error=self.error,
                          prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                          cost_usd=self.cost_usd, latency_s=self.latency_s, cache_hit=self.cache_hit,
                          cache_key=self.cache_key, choice=self.choice, cached_tokens=self.cached_tokens)


#: The per-run tables, in the order ``records`` reads them (one run's rows, in recording order).
_RUN_TABLES = {"trials": "number", "calls": "number, role, item", "steps": "step", "validations": "step, number",
               "facts": "name"}


def call_record(row: sqlite3.Row) -> CallRecord:
    return CallRecord(number=row["number"], role=row["role"], item=row["item"], step=row["step"], model=row["model"],
                      seed=row["seed"], cache_key=row["cache_key"], prompt_tokens=row["prompt_tokens"],
                      completion_tokens=row["completion_tokens"], cost_usd=row["cost_usd"],
                      latency_s=row["latency_s"], cache_hit=bool(row["cache_hit"]), error=row["error"],
                      created=row["created"], choice=column(row, "choice") or 0,
                      cached_tokens=column(row, "cached_tokens") or 0, prompt=column(row, "prompt"))


def column(row: sqlite3.Row, name: str) -> Any:
    """A column added by a later schema version (None in a store of an older one, read as it is)."""
    return row[name] if name in row.keys() else None

