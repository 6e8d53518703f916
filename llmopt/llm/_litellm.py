"""The one import of litellm, and its price map: every other module asks here.

``import litellm`` takes seconds, so it happens on first use, once (memoized), with the settings
llmopt needs everywhere: the bundled price map (offline, no fetch), no banners, no telemetry.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def import_litellm() -> Any:
    """litellm, imported once, offline-safe and quiet (bundled price map, no banners)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def litellm_cost(litellm: Any, response: Any) -> float | None:
    """Dollar cost from litellm's price map, or None when the model has no known price."""
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # litellm raises a variety of errors for unmapped models
        return None
    return float(cost) if cost is not None else None
