"""The response cache's contract and its key: one cache layer for every model call.

:class:`LLM` looks every request up by :func:`cache_key` (the only definition of what makes two
requests the same sample) in a :class:`ResponseCache`: the run store's (``llmopt.store``), so a
resumed run or a later evaluation reuses replies, or :class:`MemoryCache` for a process without a
store.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Protocol


class ResponseCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, entry: dict[str, Any]) -> None: ...


def cache_key(request: dict[str, Any]) -> str:
    """Stable hash of everything that determines a sample (the API key is never part of it)."""
    clean = {k: v for k, v in request.items() if k not in ("api_key", "num_retries", "timeout")}
    blob = json.dumps(clean, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class MemoryCache:
    """A :class:`ResponseCache` in memory: the same request is asked once in this process, where no
    run store is at hand (prompt optimization's scorer, until a store's cache is bound)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._data.setdefault(key, entry)
