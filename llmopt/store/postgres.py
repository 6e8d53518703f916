"""The run store in PostgreSQL: the SQLite store's tables and API, shared by many writers on many
machines (``--store postgresql://USER@HOST[:PORT]/DB``).

What is the same: the tables (:mod:`llmopt.store.schema`, integers 64-bit and reals ``DOUBLE
PRECISION`` so a float comes back as written), the statements (:mod:`llmopt.store.base`), one short
transaction per record (autocommit), first record wins for calls and the cache, facts replaced. What
differs: the schema version lives in a ``meta`` table, run ownership is an advisory lock
(:mod:`llmopt.store.advisory`), and a database is never created: ``createdb`` it first. Opening
read-only never creates anything either (the session is ``default_transaction_read_only``).

The driver is psycopg 3, imported here only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from typing import Any, Iterator

from llmopt.store.advisory import AdvisoryLocks
from llmopt.store.base import StoreBase
from llmopt.store.records import StoreError
from llmopt.store.schema import META, MIGRATIONS, SCHEMA, SCHEMA_VERSION, postgres_ddl
from llmopt.store.url import StoreURL, redact

#: One advisory key for "a process is creating or migrating the tables" (a transaction-level lock).
_SCHEMA_LOCK = 0x6C6C6D6F7074  # "llmopt"

# A forked child (a process pool's worker) shares the parent's socket: it must neither keep the
# parent's session (and run locks) alive after the parent died nor end it on exit, so the child's
# copy of the socket is pointed at /dev/null (the fd stays valid; nothing reaches the server).
_OPEN_STORES: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()


def _detach_inherited_connections() -> None:
    for store in list(_OPEN_STORES):
        store._detach()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_detach_inherited_connections)


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError('a postgresql:// store needs the psycopg driver: pip install "llmopt[postgres]"') from None
    return psycopg


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class PostgresStore(AdvisoryLocks, StoreBase):
    """A run store in a PostgreSQL database; safe to share between threads (one connection, one RLock)
    and between processes and machines (each its own connection; run ownership by advisory lock)."""

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.path = StoreURL(redact(url))
        self.readonly = readonly
        self._claims: dict[str, int] = {}
        self._lock = threading.RLock()
        psycopg = _driver()
        self._psycopg = psycopg
        self._integrity_error = psycopg.IntegrityError
        self._db = self._connect(url)
        try:
            self._check_readable() if readonly else self._initialise()
        except BaseException:
            self._db.close()
            raise
        _OPEN_STORES.add(self)

    def _connect(self, url: str) -> Any:
        from psycopg.rows import dict_row

        try:
            db = self._psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10,
                                       application_name=f"llmopt pid {os.getpid()} on {socket.gethostname()}"[:63])
        except self._psycopg.Error as exc:
            text = _one_line(exc)
            if "does not exist" in text and "database" in text:
                name = self.path.stem
                what = "no store at" if self.readonly else "cannot open store"
                raise StoreError(f"{what} {self.path}: database {name!r} does not exist (llmopt never creates a "
                                 f"database: createdb {name}, or CREATE DATABASE {name})") from None
            raise StoreError(f"cannot open store {self.path}: {text}") from None
        self._socket = db.pgconn.socket
        if self.readonly:
            db.execute("SET default_transaction_read_only = on")
        return db

    def _detach(self) -> None:
        """In a forked child: let go of the parent's connection without touching its session (a closed
        one's socket number may belong to another file by now: it is left alone)."""
        if self._db.closed:
            return
        self._claims.clear()
        self._forked = True
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, self._socket)
            os.close(devnull)

    # --- opening ------------------------------------------------------------------------
    def _has_table(self, name: str) -> bool:
        return bool(self._read("SELECT 1 AS found FROM information_schema.tables WHERE table_schema = "
                               "current_schema() AND table_name = ?", (name,)))

    def _stored_version(self) -> int | None:
        if not self._has_table("meta"):
            return None
        rows = self._read("SELECT value FROM meta WHERE name = 'schema_version'")
        return int(rows[0]["value"]) if rows else None

    def _check_readable(self) -> None:
        if not self._has_table("runs"):
            raise StoreError(f"{self.path} is a PostgreSQL database but not a run store (it has no runs table)")
        version = self._stored_version()
        if version not in MIGRATIONS and version != SCHEMA_VERSION:  # older ones are read as they are
            self._wrong_version(version)

    def _wrong_version(self, version: int | None) -> None:
        raise StoreError(f"store {self.path} has schema version {version}, this llmopt writes version "
                         f"{SCHEMA_VERSION}: use a new --store (or the llmopt that wrote it)")

    def _initialise(self) -> None:
        """Check, migrate or create the tables in one transaction, one opener at a time (a transaction
        advisory lock), so processes opening one new store at once never see half a schema."""
        with self._transaction():
            self._read("SELECT pg_advisory_xact_lock(?) AS done", (_SCHEMA_LOCK,))
            has_runs, version = self._has_table("runs"), self._stored_version()
            if has_runs and version is None:
                raise StoreError(f"{self.path} has a runs table but no llmopt schema version: not a run store")
            while has_runs and version in MIGRATIONS:
                for statement in MIGRATIONS[version]:
                    self._write(postgres_ddl(statement), ())
                version += 1
            if has_runs and version != SCHEMA_VERSION:
                self._wrong_version(version)
            self._write(META, ())
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._write(postgres_ddl(statement), ())
            self._write("INSERT INTO meta (name, value) VALUES ('schema_version', ?) ON CONFLICT (name) DO UPDATE "
                        "SET value = excluded.value", (str(SCHEMA_VERSION),))

    # --- the connection -----------------------------------------------------------------
    @staticmethod
    def _params(params: tuple[Any, ...]) -> tuple[Any, ...]:
        """PostgreSQL's text cannot hold a NUL character (SQLite's can): a reply with one is kept with
        U+FFFD in its place rather than failing the run."""
        return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params)

    def _execute(self, sql: str, params: tuple[Any, ...], many: list[tuple[Any, ...]] | None = None) -> list[Any]:
        if getattr(self, "_forked", False):
            raise StoreError(f"store {self.path} was opened by the parent process: open it again in this one")
        query = sql.replace("?", "%s")
        with self._lock:
            try:
                if many is not None:
                    with self._db.cursor() as cur:
                        cur.executemany(query, [self._params(p) for p in many])
                    return []
                cur = self._db.execute(query, self._params(params))
                return cur.fetchall() if cur.description else []
            except self._psycopg.OperationalError as exc:
                if self._db.closed or self._db.broken:
                    raise StoreError(f"lost the connection to store {self.path}: {_one_line(exc)}") from None
                raise

    def _write(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        return self._execute(sql, params)

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        self._execute(sql, (), many=rows)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock, self._db.transaction():
            yield

    def close(self) -> None:
        """Give up this store's runs and close the connection (which would release them anyway)."""
        with self._lock:
            if self._db.closed:
                return
            if not getattr(self, "_forked", False):
                for name in list(self._claims):
                    with contextlib.suppress(self._psycopg.Error, StoreError):
                        self.release(name)
            self._claims.clear()
            self._db.close()
            _OPEN_STORES.discard(self)
