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

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

from llmopt.llm.usage import Usage
from llmopt.store.base import StoreBase, StoreCache
from llmopt.store.locks import LOCKS_DIR, RunLocks
from llmopt.store.records import (
    CallRecord,
    RunBusyError,
    RunExistsError,
    RunRecord,
    StepRecord,
    StoreError,
    ValidationRecord,
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


class RunStore(RunLocks, StoreBase):
    """A SQLite run store; safe to share between threads and between processes. What it reads and
    writes is :class:`~llmopt.store.base.StoreBase`'s; here: opening, damage checks, WAL, ownership.

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

    _integrity_error = sqlite3.IntegrityError

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        with self._lock:
            self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _has_table(self, name: str) -> bool:
        return bool(self._read("SELECT name FROM sqlite_master WHERE name = ?", (name,)))

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if _is_damage(exc):
                    raise self._damaged(exc) from None
                raise


#: The cache of a SQLite store (the name older code imports).
SQLiteCache = StoreCache
