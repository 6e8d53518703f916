"""What every run store reads and writes, in SQL that SQLite and PostgreSQL both speak.

A store is a handful of tables (:mod:`llmopt.store.schema`) written one short transaction per
record. The statements below are the same for both databases: ``?`` placeholders (PostgreSQL's
``%s`` is substituted by its store), ``ON CONFLICT ... DO NOTHING`` where the first record wins (a
resumed run replays its calls from the cache and must not count them twice) and ``ON CONFLICT ...
DO UPDATE`` where the latest wins (facts). A subclass opens the connection and supplies the few
things that differ: ``_write``/``_read`` (with its own error handling), ``_has_table``, its
integrity error, a transaction, and run ownership (``claim``, ``release``, ``is_live``, ``owner``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Iterable

from llmopt.history import Trial, TrialState
from llmopt.llm.usage import Completion, Usage
from llmopt.store.records import (
    _RUN_TABLES,
    CallRecord,
    RunExistsError,
    RunRecord,
    StepRecord,
    StoreError,
    ValidationRecord,
    call_record,
    column,
)


class StoreBase:
    """The read and write API shared by :class:`~llmopt.store.sqlite.RunStore` and
    :class:`~llmopt.store.postgres.PostgresStore`; safe to share between threads (one RLock)."""

    path: Any  # where the store is, as messages name it (a Path, or a URL without its password)
    readonly: bool
    _lock: threading.RLock
    #: the driver's error for a broken uniqueness constraint (a run name taken)
    _integrity_error: type[Exception] = Exception

    # --- what a database supplies ----------------------------------------------------------
    def _write(self, sql: str, params: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        for params in rows:
            self._write(sql, params)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def _has_table(self, name: str) -> bool:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """All writes inside one transaction (``store copy``: a run arrives whole or not at all)."""
        raise NotImplementedError

    def claim(self, name: str, wait_s: float = 0.5, creating: bool = False) -> None:
        raise NotImplementedError

    def release(self, name: str) -> None:
        raise NotImplementedError

    def is_live(self, name: str) -> bool:
        raise NotImplementedError

    def owner(self, name: str) -> str | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run_status(self, run: RunRecord) -> str:
        """The stored status, except that a ``running`` run no live process owns is ``interrupted``."""
        if run.status == "running" and not self.is_live(run.name):
            return "interrupted"
        return run.status

    # --- runs ----------------------------------------------------------------------------
    def create_run(self, name: str, problem: str, config: dict[str, Any], versions: dict[str, Any]) -> RunRecord:
        """Add a new run, owned by this store until it is released (RunExistsError if the name is taken)."""
        held = name in self._claims  # type: ignore[attr-defined]
        self.claim(name, creating=True)
        now = time.time()
        try:
            self._write(
                "INSERT INTO runs (name, problem, config, versions, status, created, updated) VALUES (?,?,?,?,?,?,?)",
                (name, problem, json.dumps(config, sort_keys=True), json.dumps(versions, sort_keys=True),
                 "running", now, now),
            )
        except self._integrity_error:
            if not held:
                self.release(name)
            raise RunExistsError(name, self.path) from None
        return self.get_run(name)

    def find_run(self, name: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE name = ?", (name,))
        return self._run(rows[0]) if rows else None

    def get_run(self, name: str) -> RunRecord:
        run = self.find_run(name)
        if run is None:
            known = ", ".join(r.name for r in self.runs()) or "none"
            raise StoreError(f"no run named {name!r} in {self.path} (runs there: {known})")
        return run

    def runs(self) -> list[RunRecord]:
        return [self._run(r) for r in self._read("SELECT * FROM runs ORDER BY id")]

    @staticmethod
    def _run(row: Any) -> RunRecord:
        return RunRecord(id=row["id"], name=row["name"], problem=row["problem"], config=json.loads(row["config"]),
                         versions=json.loads(row["versions"]), status=row["status"], stop_reason=row["stop_reason"],
                         stop_detail=row["stop_detail"], elapsed_s=row["elapsed_s"], created=row["created"])

    def set_status(self, run_id: int, status: str, reason: str | None = None, detail: str | None = None,
                   elapsed_s: float | None = None) -> None:
        self._write("UPDATE runs SET status = ?, stop_reason = ?, stop_detail = ?, updated = ?, "
                    "elapsed_s = COALESCE(?, elapsed_s) WHERE id = ?",
                    (status, reason, detail, time.time(), elapsed_s, run_id))

    def set_elapsed(self, run_id: int, elapsed_s: float) -> None:
        self._write("UPDATE runs SET elapsed_s = ?, updated = ? WHERE id = ?", (elapsed_s, time.time(), run_id))

    # --- steps ---------------------------------------------------------------------------
    def begin_step(self, run_id: int, step: int, first_number: int, prompt: str | None) -> None:
        self._write("INSERT INTO steps (run_id, step, first_number, prompt, started) VALUES (?,?,?,?,?)"
                    " ON CONFLICT DO NOTHING", (run_id, step, first_number, prompt, time.time()))

    def finish_step(self, run_id: int, step: int) -> None:
        self._write("UPDATE steps SET finished = 1 WHERE run_id = ? AND step = ?", (run_id, step))

    def steps(self, run_id: int) -> list[StepRecord]:
        rows = self._read("SELECT step, first_number, prompt, finished FROM steps WHERE run_id = ? ORDER BY step",
                          (run_id,))
        return [StepRecord(r["step"], r["first_number"], r["prompt"], bool(r["finished"])) for r in rows]

    # --- trials --------------------------------------------------------------------------
    def add_trial(self, run_id: int, trial: Trial) -> None:
        self._write(
            "INSERT INTO trials (run_id, number, step, state, source, text, key, value, raw, error, duplicate_of,"
            " created, metrics, parents) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, trial.number, trial.step, trial.state.value, trial.source, trial.text,
             None if trial.key is None else repr(trial.key), trial.value, trial.raw, trial.error,
             trial.duplicate_of, time.time(), json.dumps(trial.metrics, sort_keys=True) if trial.metrics else None,
             json.dumps(list(trial.parents)) if trial.parents else None),
        )

    def trials(self, run_id: int, states: Iterable[TrialState] | None = None) -> list[Trial]:
        """A run's trials in order (only those in ``states``, if given). Read back without their
        solution (decoding is the problem's: ``problem.from_text(trial.text)``); ``key`` is the
        stored ``repr`` of the solution's key."""
        sql, params = "SELECT * FROM trials WHERE run_id = ?", [run_id]
        if states is not None:
            wanted = [TrialState(state).value for state in states]
            sql += f" AND state IN ({', '.join('?' * len(wanted))})"
            params += wanted
        return [Trial(number=r["number"], step=r["step"], state=TrialState(r["state"]), source=r["source"],
                      text=r["text"], key=r["key"], value=r["value"], raw=r["raw"], error=r["error"],
                      duplicate_of=r["duplicate_of"], metrics=json.loads(column(r, "metrics") or "{}"),
                      parents=tuple(json.loads(column(r, "parents") or "[]")))
                for r in self._read(sql + " ORDER BY number", tuple(params))]

    # --- calls ---------------------------------------------------------------------------
    def add_call(self, run_id: int, number: int, step: int, model: str, c: Completion,
                 role: str = "optimizer", item: int = 0, prompt: str | None = None) -> None:
        """Record one LLM call made for trial ``number``: the optimizer's proposal, the scorer's
        ``item``-th call while scoring it, or (role ``validation``) while scoring it on the
        validation split. ``prompt``: the call's own prompt, where it is not its step's meta-prompt
        (EvoPrompt's operators ask each child with its own parents). First record wins: a resumed
        run replays from the cache and is not counted twice."""
        self._write(
            "INSERT INTO calls (run_id, number, role, item, step, model, seed, cache_key, prompt_tokens,"
            " completion_tokens, cost_usd, latency_s, cache_hit, error, created, choice, cached_tokens, prompt)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (run_id, number, role, item, step, model, c.seed, c.cache_key, c.prompt_tokens, c.completion_tokens,
             c.cost_usd, c.latency_s, int(c.cache_hit), c.error, time.time(), c.choice, c.cached_tokens, prompt),
        )

    def calls(self, run_id: int, role: str | None = None) -> list[CallRecord]:
        """A run's recorded LLM calls (only one role's, if given), by trial number, role and item."""
        sql, params = "SELECT * FROM calls WHERE run_id = ?", [run_id]
        if role is not None:
            sql += " AND role = ?"
            params.append(role)
        return [call_record(r) for r in self._read(sql + " ORDER BY number, role, item", tuple(params))]

    # --- validation ----------------------------------------------------------------------
    def add_validation(self, run_id: int, step: int, number: int, value: float | None, error: str | None = None) -> None:
        """Record trial ``number``'s score on the validation split, as evaluated after ``step``
        (one row per evaluation and trial; None and ``error`` when it could not be scored)."""
        self._write("INSERT INTO validations (run_id, step, number, value, error, created) VALUES (?,?,?,?,?,?)"
                    " ON CONFLICT DO NOTHING", (run_id, step, number, value, error, time.time()))

    def validations(self, run_id: int) -> list[ValidationRecord]:
        """A run's validation scores, by step and trial number (none in a store older than version 4)."""
        if not self._has_table("validations"):
            return []
        rows = self._read("SELECT * FROM validations WHERE run_id = ? ORDER BY step, number", (run_id,))
        return [ValidationRecord(r["step"], r["number"], r["value"], r["error"]) for r in rows]

    # --- facts -------------------------------------------------------------------------
    def set_facts(self, run_id: int, facts: dict[str, Any]) -> None:
        """Record facts of a run that its readers need and could otherwise learn only by rebuilding its
        problem (an optimum, targets, the trials that solved it, the baselines' values): one row per
        name, a later value replacing an earlier one (a resumed run's facts are its latest)."""
        now = time.time()
        for name, value in facts.items():
            self._write("INSERT INTO facts (run_id, name, value, created) VALUES (?,?,?,?) ON CONFLICT (run_id, name)"
                        " DO UPDATE SET value = excluded.value, created = excluded.created",
                        (run_id, name, json.dumps(value, sort_keys=True), now))

    def facts(self, run_id: int) -> dict[str, Any]:
        """A run's recorded facts by name (empty: none recorded, or a store from before the facts table,
        which a read-only opening does not add)."""
        if not self._has_table("facts"):
            return {}
        return {r["name"]: json.loads(r["value"]) for r in self._read("SELECT name, value FROM facts WHERE run_id = ?",
                                                                      (run_id,))}

    # --- flat records --------------------------------------------------------------------
    def records(self, table: str, run_id: int) -> list[dict[str, Any]]:
        """One run's rows of ``table`` (trials, calls or steps) as they are stored, every column but
        ``run_id``, in recording order: the flat form that export writes."""
        if table not in _RUN_TABLES:
            raise ValueError(f"unknown table {table!r} (expected one of {', '.join(_RUN_TABLES)})")
        if not self._has_table(table):
            return []  # a table newer than the store (validations, read-only in a version 3 store)
        rows = self._read(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY {_RUN_TABLES[table]}", (run_id,))
        return [{k: r[k] for k in r.keys() if k != "run_id"} for r in rows]

    def run_row(self, name: str) -> dict[str, Any]:
        """Run ``name``'s row of the runs table as stored (what ``store copy`` carries over)."""
        rows = self._read("SELECT * FROM runs WHERE name = ?", (name,))
        if not rows:
            self.get_run(name)  # the one-line "no run named ..." error
        return {k: rows[0][k] for k in rows[0].keys()}

    def usage(self, run_id: int, only_recorded_trials: bool = False, role: str | None = None) -> Usage:
        """Totals over a run's calls (optionally only calls whose trial was recorded, or one role)."""
        sql, params = "SELECT * FROM calls WHERE run_id = ?", [run_id]
        if only_recorded_trials:
            sql += " AND number IN (SELECT number FROM trials WHERE run_id = ?)"
            params.append(run_id)
        if role is not None:
            sql += " AND role = ?"
            params.append(role)
        usage = Usage()
        for row in self._read(sql, tuple(params)):
            usage = usage.add(call_record(row).completion())
        return usage

    # --- cache ---------------------------------------------------------------------------
    def cache(self) -> "StoreCache":
        return StoreCache(self)

    def cache_rows(self, after: str = "", limit: int = 500) -> list[dict[str, Any]]:
        """The cache's entries as stored, ``limit`` at a time by key (``store copy`` pages through them)."""
        rows = self._read("SELECT * FROM cache WHERE key > ? ORDER BY key LIMIT ?", (after, limit))
        return [{k: r[k] for k in r.keys()} for r in rows]

    def insert_rows(self, table: str, rows: list[dict[str, Any]], run_id: int | None = None,
                    keep_existing: bool = True) -> None:
        """Add stored rows as they are (``store copy``), ``run_id`` set where given; a row whose key is
        there already is skipped (``keep_existing``) or the driver's integrity error."""
        if not rows:
            return
        names = list(rows[0]) + (["run_id"] if run_id is not None else [])
        sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
               + (" ON CONFLICT DO NOTHING" if keep_existing else ""))
        extra = (run_id,) if run_id is not None else ()
        self._write_many(sql, [tuple(row[n] for n in names[:len(rows[0])]) + extra for row in rows])


class StoreCache:
    """The LLM response cache, in the run store (litellm's own disk cache is gone)."""

    def __init__(self, store: StoreBase) -> None:
        self.store = store

    def get(self, key: str) -> dict[str, Any] | None:
        rows = self.store._read("SELECT * FROM cache WHERE key = ?", (key,))
        if not rows:
            return None
        row = rows[0]
        return {"text": row["text"], "prompt_tokens": row["prompt_tokens"],
                "completion_tokens": row["completion_tokens"], "cost_usd": row["cost_usd"],
                "finish_reason": row["finish_reason"], "cached_tokens": column(row, "cached_tokens")}

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.store._write(
            "INSERT INTO cache (key, model, request, text, prompt_tokens, completion_tokens, cost_usd,"
            " finish_reason, created, cached_tokens) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (key, entry["model"], json.dumps(entry["request"], sort_keys=True, default=str), entry["text"],
             entry["prompt_tokens"], entry["completion_tokens"], entry["cost_usd"], entry["finish_reason"],
             time.time(), entry.get("cached_tokens")),
        )
