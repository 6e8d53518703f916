"""The one import of litellm, its price map and its tokenizers: every other module asks here.

``import litellm`` takes seconds, so it happens on first use, once (memoized), with the settings
llmopt needs everywhere: the bundled price map (offline, no fetch), no banners, no telemetry.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping


@functools.cache
def import_litellm() -> Any:
    """litellm, imported once, offline-safe and quiet (bundled price map, no banners)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def reply_cost(response: Any, router: bool = False) -> float | None:
    """Dollar cost of one reply, or None when its model has no known price (never $0 for "unknown").

    A plain call's reply is priced by litellm's price map (``completion_cost``); a Router's carries
    its own ``response_cost`` (the Router prices the deployment that served, from the price map or
    the deployment's ``input_cost_per_token``...), because ``completion_cost`` of a Router's reply
    says $0 for a model without a price."""
    if router:
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        return None if cost is None else float(cost)
    litellm = import_litellm()
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # litellm raises a variety of errors for unmapped models
        return None
    return float(cost) if cost is not None else None


def token_cost(model: str, prompt_tokens: int, completion_tokens: int,
               own_price: Mapping[str, float] | None = None) -> float | None:
    """Dollar cost of that many tokens of ``model`` in litellm's price map (the map that prices
    replies), or at ``own_price`` (a Router deployment's ``input_cost_per_token`` and
    ``output_cost_per_token``, as the Router prices its replies); None when the model has no
    known price. For estimates made before any call."""
    litellm = import_litellm()
    custom = None if not own_price else {k: float(own_price.get(k, 0.0))
                                         for k in ("input_cost_per_token", "output_cost_per_token")}
    try:
        a, b = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                      custom_cost_per_token=custom)
    except Exception:  # an unmapped model
        return None
    return float(a) + float(b)


def count_tokens(model: str, text: str) -> int:
    """Tokens of ``text`` as one user message to ``model`` (litellm's tokenizer for it; about 4
    characters a token where litellm cannot load one offline)."""
    litellm = import_litellm()
    try:
        return int(litellm.token_counter(model=model, messages=[{"role": "user", "content": text}]))
    except Exception:  # a tokenizer litellm cannot load offline
        return len(text) // 4 + 4
