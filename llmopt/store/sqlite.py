"""The run store: one SQLite file, any number of runs, and the LLM response cache.

Every trial, every step's meta-prompt, every LLM call is written as it happens (WAL journal,
one short transaction per record), so a killed process loses nothing that was already
evaluated and ``--resume`` picks up where it stopped.

Commands that only read (``show``, ``export``, ``plot``, ``compare --no-run``) open the store
with ``RunStore(path, readonly=True)``: a missing, empty or foreign file is one clear error and
nothing is created or written. A store that fails ``PRAGMA quick_check`` is refused by every
command, so nothing is ever added to a damaged file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable

from llmopt.history import Trial, TrialState
from llmopt.llm.usage import Completion, Usage
from llmopt.store.locks import LOCKS_DIR, RunLocks
from llmopt.store.records import (
    _RUN_TABLES,
    CallRecord,
    RunBusyError,
    RunExistsError,
    RunRecord,
    StepRecord,
    StoreError,
    ValidationRecord,
    call_record,
    column,
)
from llmopt.store.schema import DEFAULT_STORE, MIGRATIONS, SCHEMA, SCHEMA_VERSION

#: What other modules import from here (the store's public names live in schema, records, locks).
__all__ = ["DEFAULT_STORE", "LOCKS_DIR", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "CallRecord", "RunBusyError",
           "RunExistsError", "RunRecord", "RunStore", "SQLiteCache", "StepRecord", "StoreError", "Usage",
           "ValidationRecord"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_damage(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error says the file is damaged (not busy, not a constraint, not a bad query)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    return type(exc) is sqlite3.DatabaseError


class RunStore(RunLocks):
    """A SQLite run store; safe to share between threads and between processes.

    ``readonly=True`` opens an existing store for reading only (SQLite's ``mode=ro``): a missing
    file is ``StoreError("no store at PATH")``, and nothing, not even the schema, is written.

    Which runs are live: a process that creates or resumes a run holds an exclusive ``flock`` on
    the run's lock file (``.llmopt-locks/<store's file name>/<hash of the run name>`` beside the
    store, holding the owner's pid and host for messages; the hidden folder ignores itself for git,
    as ``.pytest_cache`` does, so it never clutters a user's ``git status``) until the run stops or
    the store is closed. A lock of an llmopt from before that folder (``<store>-locks/``) is
    honoured too, so its live runs stay live. The kernel releases the lock
    when the process ends in any way, SIGKILL and power loss included, so a run whose stored
    status is still ``running`` but whose lock is free was killed or crashed: it is shown as
    ``interrupted`` (nothing is written; ``--resume`` continues it). No pid is ever matched
    against the process table, so a recycled pid or a clock change cannot make a dead run look
    live, and the lock also keeps two processes from writing one run at the same time. Locks
    work between processes of one machine (and on network filesystems that support ``flock``).
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._claims: dict[str, int] = {}  # run name -> fd of its held lock file
        self._lock = threading.RLock()
        if readonly:
            self._open_readonly()
        else:
            self._open_for_writing()
        self._db.row_factory = sqlite3.Row

    def _open_for_writing(self) -> None:
        parent = self.path.resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot create store {self.path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise StoreError(f"cannot write store {self.path}: permission denied")
        if self.path.is_file():
            self._check_header()
        self._connect(str(self.path), "open", self._quick_check, self._initialise)  # checked before any write

    def _open_readonly(self) -> None:
        if not self.path.exists():
            raise StoreError(f"no store at {self.path}")
        if not self.path.is_file():
            raise StoreError(f"cannot open store {self.path}: not a file")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is an empty file (0 bytes), not a run store")
        self._check_header()
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
        self._connect(uri, "read", self._quick_check, self._check_is_run_store, self._check_version)

    def _connect(self, target: str, verb: str, *checks: Callable[[], None]) -> None:
        """Open the connection and run ``checks`` on it; any failure closes it and is one StoreError
        (a damaged file says so, see :meth:`_damaged`)."""
        try:
            self._db = sqlite3.connect(target, uri=target.startswith("file:"), timeout=60.0,
                                       check_same_thread=False, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        try:
            for check in checks:
                check()
        except sqlite3.DatabaseError as exc:
            error = self._damaged(exc) if _is_damage(exc) else StoreError(f"cannot {verb} store {self.path}: {exc}")
            self._db.close()
            raise error from None
        except BaseException:
            self._db.close()
            raise

    def _check_is_run_store(self) -> None:
        if not self._db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0]:
            raise StoreError(f"{self.path} is an SQLite database but not a run store (it has no runs table)")

    def _check_header(self) -> None:
        """A non-empty file that is not SQLite at all is refused before SQLite touches it."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror}") from None
        if head and head != _SQLITE_HEADER:
            raise StoreError(f"cannot open store {self.path}: not an SQLite database (file is not a database)")

    def _quick_check(self) -> None:
        """``PRAGMA quick_check``: raise the one-line damaged-store error unless it says ok."""
        try:
            rows = [r[0] for r in self._db.execute("PRAGMA quick_check(3)").fetchall()]
        except sqlite3.DatabaseError as exc:  # too damaged even to check
            if not _is_damage(exc):
                raise
            rows = [str(exc)]
        if rows != ["ok"]:
            raise self._damaged(None, rows)

    def _damaged(self, exc: sqlite3.Error | None, rows: list[str] | None = None) -> StoreError:
        if rows is None:  # an error while reading: ask quick_check what it sees, if it can still run
            try:
                rows = [r[0] for r in self._db.execute("PRAGMA quick_check(3)").fetchall()]
            except sqlite3.Error as again:
                rows = [str(again)]
        lines = [" ".join(line.split()) for r in rows for line in str(r).splitlines()]
        found = "; ".join(line for line in lines if line and not line.startswith("*** in database")) or str(exc)
        if len(found) > 200:
            found = found[:197] + "..."
        cause = f"{exc}; " if exc is not None and str(exc) not in found else ""
        return StoreError(f"the store {self.path} is damaged (PRAGMA quick_check: {found}): {cause}llmopt will not "
                          f"write to it; copy out what is readable with  sqlite3 {self.path} .recover  and use "
                          f"another --store for new runs")

    def _initialise(self, wait_s: float = 60.0) -> None:
        """WAL mode, then check-and-create the tables in one transaction, so processes opening
        one new store at the same moment neither fail nor see each other's half-made schema.

        Switching a new file to WAL can report "database is locked" without waiting for the
        busy timeout while another process does the same, so that step is retried (bounded).
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")  # waits (busy timeout) for another opener's transaction
        try:
            self._check_version()
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        if self.readonly and version in MIGRATIONS:  # read as it is: the newer columns read as their defaults
            return
        while has_tables and version in MIGRATIONS:
            for statement in MIGRATIONS[version]:
                self._db.execute(statement)
            version += 1
        if has_tables and version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, this llmopt writes version "
                             f"{SCHEMA_VERSION}: use a new --store (or the llmopt that wrote it)")

    def close(self) -> None:
        with self._lock:
            for name in list(self._claims):
                self.release(name)
            self._db.close()

    def __del__(self) -> None:  # a store dropped unclosed gives its runs up (the connection closes itself)
        try:
            for name in list(self._claims):
                self.release(name)
        except Exception:
            pass

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        with self._lock:
            try:
                return self._db.execute(sql, params)
            except sqlite3.DatabaseError as exc:
                if _is_damage(exc):
                    raise self._damaged(exc) from None
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if _is_damage(exc):
                    raise self._damaged(exc) from None
                raise


    # --- runs ----------------------------------------------------------------------------
    def create_run(self, name: str, problem: str, config: dict[str, Any], versions: dict[str, Any]) -> RunRecord:
        """Add a new run, owned by this store until it is released (RunExistsError if the name is taken)."""
        held = name in self._claims
        self.claim(name, creating=True)
        now = time.time()
        try:
            self._write(
                "INSERT INTO runs (name, problem, config, versions, status, created, updated) VALUES (?,?,?,?,?,?,?)",
                (name, problem, json.dumps(config, sort_keys=True), json.dumps(versions, sort_keys=True),
                 "running", now, now),
            )
        except sqlite3.IntegrityError:
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
    def _run(row: sqlite3.Row) -> RunRecord:
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
        self._write("INSERT OR IGNORE INTO steps (run_id, step, first_number, prompt, started) VALUES (?,?,?,?,?)",
                    (run_id, step, first_number, prompt, time.time()))

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
            "INSERT OR IGNORE INTO calls (run_id, number, role, item, step, model, seed, cache_key, prompt_tokens,"
            " completion_tokens, cost_usd, latency_s, cache_hit, error, created, choice, cached_tokens, prompt)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        self._write("INSERT OR IGNORE INTO validations (run_id, step, number, value, error, created) VALUES (?,?,?,?,?,?)",
                    (run_id, step, number, value, error, time.time()))

    def validations(self, run_id: int) -> list[ValidationRecord]:
        """A run's validation scores, by step and trial number (none in a store older than version 4)."""
        if not self._read("SELECT name FROM sqlite_master WHERE name = 'validations'"):
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
            self._write("INSERT OR REPLACE INTO facts (run_id, name, value, created) VALUES (?,?,?,?)",
                        (run_id, name, json.dumps(value, sort_keys=True), now))

    def facts(self, run_id: int) -> dict[str, Any]:
        """A run's recorded facts by name (empty: none recorded, or a store from before the facts table,
        which a read-only opening does not add)."""
        if not self._read("SELECT name FROM sqlite_master WHERE name = 'facts'"):
            return {}
        return {r["name"]: json.loads(r["value"]) for r in self._read("SELECT name, value FROM facts WHERE run_id = ?",
                                                                      (run_id,))}

    # --- flat records --------------------------------------------------------------------
    def records(self, table: str, run_id: int) -> list[dict[str, Any]]:
        """One run's rows of ``table`` (trials, calls or steps) as they are stored, every column but
        ``run_id``, in recording order: the flat form that export writes."""
        if table not in _RUN_TABLES:
            raise ValueError(f"unknown table {table!r} (expected one of {', '.join(_RUN_TABLES)})")
        if not self._read("SELECT name FROM sqlite_master WHERE name = ?", (table,)):
            return []  # a table newer than the store (validations, read-only in a version 3 store)
        rows = self._read(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY {_RUN_TABLES[table]}", (run_id,))
        return [{k: r[k] for k in r.keys() if k != "run_id"} for r in rows]

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
    def cache(self) -> "SQLiteCache":
        return SQLiteCache(self)



class SQLiteCache:
    """The LLM response cache, in the run store's file (litellm's own disk cache is gone)."""

    def __init__(self, store: RunStore) -> None:
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
            "INSERT OR IGNORE INTO cache (key, model, request, text, prompt_tokens, completion_tokens, cost_usd,"
            " finish_reason, created, cached_tokens) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (key, entry["model"], json.dumps(entry["request"], sort_keys=True, default=str), entry["text"],
             entry["prompt_tokens"], entry["completion_tokens"], entry["cost_usd"], entry["finish_reason"],
             time.time(), entry.get("cached_tokens")),
        )
