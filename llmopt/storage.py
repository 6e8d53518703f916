"""The run store: one SQLite file, any number of runs, and the LLM response cache.

Every trial, every step's meta-prompt, every LLM call is written as it happens (WAL journal,
one short transaction per record), so a killed process loses nothing that was already
evaluated and ``--resume`` picks up where it stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .history import Trial
from .llm import Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    problem TEXT NOT NULL,
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    stop_detail TEXT,
    elapsed_s REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    first_number INTEGER NOT NULL,
    prompt TEXT,
    finished INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS trials (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    step INTEGER NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT,
    key TEXT,
    value REAL,
    raw TEXT,
    error TEXT,
    duplicate_of INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS calls (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    role TEXT NOT NULL,
    item INTEGER NOT NULL,
    step INTEGER NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    cache_key TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_s REAL NOT NULL,
    cache_hit INTEGER NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, number, role, item)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    finish_reason TEXT,
    created REAL NOT NULL
);
"""


#: Bumped whenever a table changes; a store of another version is refused with a clear error.
SCHEMA_VERSION = 2


class StoreError(RuntimeError):
    """The store cannot be opened or does not hold what was asked for."""


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


@dataclass(frozen=True)
class StepRecord:
    step: int
    first_number: int
    prompt: str | None
    finished: bool


@dataclass(frozen=True)
class Usage:
    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # known prices only
    unpriced_calls: int = 0  # successful calls whose price litellm does not know
    spent_usd: float = 0.0  # known prices of live (not cached) calls

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, c: Completion) -> "Usage":
        priced = c.cost_usd is not None
        return Usage(
            calls=self.calls + 1,
            cache_hits=self.cache_hits + int(c.cache_hit),
            failed_calls=self.failed_calls + int(not c.ok),
            prompt_tokens=self.prompt_tokens + c.prompt_tokens,
            completion_tokens=self.completion_tokens + c.completion_tokens,
            cost_usd=self.cost_usd + (c.cost_usd or 0.0),
            unpriced_calls=self.unpriced_calls + int(c.ok and not priced),
            spent_usd=self.spent_usd + (0.0 if c.cache_hit else (c.cost_usd or 0.0)),
        )

    def dollars(self) -> float:
        """Dollars of the calls with a known price: the exact cost when ``unpriced_calls`` is 0,
        else a lower bound (a model without a known price is never counted as free)."""
        return self.cost_usd

    def format_dollars(self) -> str:
        """The cost for display: ``$0.0123``, or ``>=$0.0123 (40 unpriced)`` when it is a lower bound."""
        text = f"${self.cost_usd:.4f}"
        return f">={text} ({self.unpriced_calls} unpriced)" if self.unpriced_calls else text


class RunStore:
    """A SQLite run store; safe to share between threads and between processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        parent = self.path.resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot create store {self.path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise StoreError(f"cannot write store {self.path}: permission denied")
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                                       isolation_level=None)
            self._initialise()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()

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
        if has_tables and version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, this llmopt writes version "
                             f"{SCHEMA_VERSION}: use a new --store (or the llmopt that wrote it)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- runs ----------------------------------------------------------------------------
    def create_run(self, name: str, problem: str, config: dict[str, Any], versions: dict[str, Any]) -> RunRecord:
        now = time.time()
        try:
            self._write(
                "INSERT INTO runs (name, problem, config, versions, status, created, updated) VALUES (?,?,?,?,?,?,?)",
                (name, problem, json.dumps(config, sort_keys=True), json.dumps(versions, sort_keys=True),
                 "running", now, now),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"run {name!r} already exists in {self.path}: pass --resume to continue it, "
                             f"or choose another --name") from None
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
            " created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, trial.number, trial.step, trial.state.value, trial.source, trial.text,
             None if trial.key is None else repr(trial.key), trial.value, trial.raw, trial.error,
             trial.duplicate_of, time.time()),
        )

    def trial_rows(self, run_id: int) -> list[sqlite3.Row]:
        return self._read("SELECT * FROM trials WHERE run_id = ? ORDER BY number", (run_id,))

    # --- calls ---------------------------------------------------------------------------
    def add_call(self, run_id: int, number: int, step: int, model: str, c: Completion,
                 role: str = "optimizer", item: int = 0) -> None:
        """Record one LLM call made for trial ``number``: the optimizer's proposal, or the
        scorer's ``item``-th call while scoring it. First record wins: a resumed run replays
        from the cache and is not counted twice."""
        self._write(
            "INSERT OR IGNORE INTO calls (run_id, number, role, item, step, model, seed, cache_key, prompt_tokens,"
            " completion_tokens, cost_usd, latency_s, cache_hit, error, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, number, role, item, step, model, c.seed, c.cache_key, c.prompt_tokens, c.completion_tokens,
             c.cost_usd, c.latency_s, int(c.cache_hit), c.error, time.time()),
        )

    def call_rows(self, run_id: int) -> list[sqlite3.Row]:
        return self._read("SELECT * FROM calls WHERE run_id = ? ORDER BY number, role, item", (run_id,))

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
            usage = usage.add(_completion(row))
        return usage

    # --- cache ---------------------------------------------------------------------------
    def cache(self) -> "SQLiteCache":
        return SQLiteCache(self)


def _completion(row: sqlite3.Row) -> Completion:
    return Completion(seed=row["seed"], text=None if row["error"] else "", error=row["error"],
                      prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                      cost_usd=row["cost_usd"], latency_s=row["latency_s"], cache_hit=bool(row["cache_hit"]),
                      cache_key=row["cache_key"])


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
                "finish_reason": row["finish_reason"]}

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.store._write(
            "INSERT OR IGNORE INTO cache (key, model, request, text, prompt_tokens, completion_tokens, cost_usd,"
            " finish_reason, created) VALUES (?,?,?,?,?,?,?,?,?)",
            (key, entry["model"], json.dumps(entry["request"], sort_keys=True, default=str), entry["text"],
             entry["prompt_tokens"], entry["completion_tokens"], entry["cost_usd"], entry["finish_reason"],
             time.time()),
        )
