"""Which process owns a run of a PostgreSQL store: a session-level advisory lock on a 64-bit hash
of the run's name, held by the store's connection.

The server ends a session when its connection closes, however the process ended (SIGKILL closes
the socket; a lost machine is noticed by TCP keepalive), and with the session its locks: so, as with
the SQLite store's ``flock``, a run whose status is ``running`` but whose lock is free was killed and
reads as ``interrupted``, and two writers on any machines never own one run. A mixin of
:class:`llmopt.store.postgres.PostgresStore`: it needs the store's ``path``, ``readonly``, ``_claims``
(run name -> lock key) and ``_read``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from llmopt.store.records import RunBusyError, StoreError


def lock_key(name: str) -> int:
    """The advisory lock key of run ``name``: a signed 64-bit hash (PostgreSQL's ``bigint``)."""
    digest = hashlib.sha256(b"llmopt run\x00" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# pg_locks shows a bigint advisory key as two 32-bit halves (classid high, objid low; objsubid 1)
_HOLDER = ("SELECT l.pid AS pid, a.application_name AS app FROM pg_locks l"
           " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
           " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
           " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
           " AND l.classid::bigint = ? AND l.objid::bigint = ?")


class AdvisoryLocks:
    """The ownership half of :class:`llmopt.store.postgres.PostgresStore` (the same calls as the SQLite
    store's :class:`llmopt.store.locks.RunLocks`)."""

    path: Any
    readonly: bool
    _claims: dict[str, int]

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def claim(self, name: str, wait_s: float = 0.5, creating: bool = False) -> None:
        """Take run ``name``'s lock; RunBusyError if another session holds it (retried for ``wait_s``)."""
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only: it cannot run {name!r}")
        if name in self._claims:
            return
        key = lock_key(name)
        deadline = time.monotonic() + wait_s
        while not self._read("SELECT pg_try_advisory_lock(?) AS got", (key,))[0]["got"]:
            if time.monotonic() > deadline:
                raise RunBusyError(name, self.path, self.owner(name) or "owner unknown", creating)
            time.sleep(0.02)
        self._claims[name] = key

    def release(self, name: str) -> None:
        """Give up run ``name``'s lock (the run stays in the store)."""
        key = self._claims.pop(name, None)
        if key is not None:
            self._read("SELECT pg_advisory_unlock(?) AS done", (key,))

    def _holder(self, name: str) -> dict[str, Any] | None:
        key = lock_key(name)
        rows = self._read(_HOLDER, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
        return rows[0] if rows else None

    def is_live(self, name: str) -> bool:
        """Whether a session (this one included) holds run ``name``'s lock right now."""
        return name in self._claims or self._holder(name) is not None

    def owner(self, name: str) -> str | None:
        """``pid N on HOST`` of the process that holds run ``name`` now (None: no one does)."""
        holder = self._holder(name)
        if holder is None:
            return None
        app = holder.get("app") or ""
        return app.removeprefix("llmopt ") if app.startswith("llmopt pid ") else f"server process {holder['pid']}"
