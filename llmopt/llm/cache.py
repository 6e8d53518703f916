"""The response cache's contract and its key: one cache layer for every model call.

The run store implements :class:`ResponseCache` (``llmopt.store``); :func:`cache_key` is the only
definition of what makes two requests the same sample.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol


class ResponseCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, entry: dict[str, Any]) -> None: ...


def cache_key(request: dict[str, Any]) -> str:
    """Stable hash of everything that determines a sample (the API key is never part of it)."""
    clean = {k: v for k, v in request.items() if k not in ("api_key", "num_retries", "timeout")}
    blob = json.dumps(clean, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
