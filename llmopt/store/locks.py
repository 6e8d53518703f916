"""Which process owns a run: an exclusive ``flock`` on the run's lock file beside the store (see
:class:`llmopt.store.sqlite.RunStore` for the whole story). A mixin of the store: it needs the
store's ``path``, ``readonly`` and ``_claims`` (run name -> fd of its held lock file)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

from llmopt.store.records import RunBusyError, RunRecord, StoreError

try:
    import fcntl
except ImportError:  # not POSIX: no ownership locks, a run's stored status is shown as is
    fcntl = None  # type: ignore[assignment]

# Ownership locks are flock()s on files this process opened; a forked child (a process pool's
# worker) must not keep them alive after its parent died, so it closes its copies (closing a
# copy never releases the parent's lock; only LOCK_UN or closing every copy does).
_STORES_WITH_LOCKS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _close_inherited_locks() -> None:
    for store in list(_STORES_WITH_LOCKS):
        for fd in store._claims.values():
            try:
                os.close(fd)
            except OSError:
                pass
        store._claims.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


#: The hidden folder beside a store that holds its runs' lock files (see :class:`RunStore`).
LOCKS_DIR = ".llmopt-locks"


def _held(path: Path) -> bool:
    """Whether a process holds the flock of the lock file ``path`` (False: none, or no such file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # never claimed (or by an llmopt before locks)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return False



class RunLocks:
    """The ownership-lock half of :class:`llmopt.store.sqlite.RunStore`."""

    path: Path
    readonly: bool
    _claims: dict[str, int]

    def _lock_path(self, name: str, legacy: bool = False) -> Path:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        store = self.path.resolve()
        if legacy:  # where an llmopt before LOCKS_DIR kept them
            return Path(f"{store}-locks") / digest
        return store.parent / LOCKS_DIR / store.name / digest

    @staticmethod
    def _lock_folder(path: Path) -> None:
        """Make the lock file's folder; the hidden top one holds a .gitignore that ignores all of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent.parent / ".gitignore"
        if not ignore.exists():
            with contextlib.suppress(OSError):
                ignore.write_text("# run locks of llmopt's stores (see llmopt.store.sqlite.RunStore): never committed\n*\n")

    def claim(self, name: str, wait_s: float = 0.5, creating: bool = False) -> None:
        """Take the ownership lock of run ``name`` (see the class docstring); RunBusyError if a live
        process holds it. A reader's test of the lock lasts microseconds, hence the short retry."""
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only: it cannot run {name!r}")
        if fcntl is None or name in self._claims:
            return
        if _held(self._lock_path(name, legacy=True)):  # an older llmopt's live run
            raise RunBusyError(name, self.path, self.owner(name) or "owner unknown", creating)
        path = self._lock_path(name)
        self._lock_folder(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RunBusyError(name, self.path, self.owner(name) or "owner unknown", creating) from None
                time.sleep(0.02)
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        self._claims[name] = fd
        _STORES_WITH_LOCKS.add(self)

    def release(self, name: str) -> None:
        """Give up the ownership lock of run ``name`` (the run stays in the store)."""
        fd = self._claims.pop(name, None)
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def is_live(self, name: str) -> bool:
        """Whether a process (this one included) holds run ``name``'s ownership lock right now."""
        if name in self._claims:
            return True
        if fcntl is None:
            return True  # cannot tell: trust the stored status
        return _held(self._lock_path(name)) or _held(self._lock_path(name, legacy=True))

    def owner(self, name: str) -> str | None:
        """``pid N on HOST`` of the last process that claimed run ``name``, if recorded."""
        for legacy in (False, True):
            try:
                data = json.loads(self._lock_path(name, legacy).read_text() or "{}")
                return f"pid {data['pid']} on {data['host']}"
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    def run_status(self, run: RunRecord) -> str:
        """The stored status, except that a ``running`` run no live process owns is ``interrupted``."""
        if run.status == "running" and not self.is_live(run.name):
            return "interrupted"
        return run.status
