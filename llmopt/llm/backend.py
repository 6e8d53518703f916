"""What answers one request: a backend (litellm, a litellm Router, or a test's stand-in) and the
:class:`BackendReply` it returns, with the reply's tokens, dollars and choices read off litellm's
response; and how a request asks for a JSON schema (:func:`response_format`).

Apart from :mod:`llmopt.llm.client` (which decides what to ask, caches and accounts) so that a
backend can be read, replaced or tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Literal

from llmopt.llm import embedded
from llmopt.llm._litellm import import_litellm, reply_cost


@dataclass(frozen=True)
class BackendReply:
    """What a backend returns for one call."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    deployment: str | None = None  # a router's call: the api_base of the deployment that served it
    cached_tokens: int = 0  # of prompt_tokens, those served from the provider's prompt cache
    choices: tuple[str, ...] = ()  # every choice's text, when the request asked for several (n)


Backend = Callable[[dict[str, Any]], Awaitable[BackendReply]]


async def litellm_backend(request: dict[str, Any]) -> BackendReply:
    """One call through litellm; the embedded model's calls are free (run in-process)."""
    litellm = import_litellm()
    local = embedded.is_embedded(request["model"])
    if local:
        embedded.register()
    response = await litellm.acompletion(**request)
    return _reply(response, 0.0 if local else reply_cost(response))


async def router_backend(router: Any, request: dict[str, Any]) -> BackendReply:
    """One call through a litellm Router: it picks the deployment, retries and falls back; the
    cost is the Router's own (see :func:`reply_cost`)."""
    response = await router.acompletion(**request)
    hidden = getattr(response, "_hidden_params", None) or {}
    return replace(_reply(response, reply_cost(response, router=True)), deployment=hidden.get("api_base"))


def _reply(response: Any, cost_usd: float | None) -> BackendReply:
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    texts = tuple((c.message.content or "") for c in response.choices)
    return BackendReply(text=texts[0], prompt_tokens=getattr(usage, "prompt_tokens", None),
                        completion_tokens=getattr(usage, "completion_tokens", None), cost_usd=cost_usd,
                        finish_reason=getattr(choice, "finish_reason", None), cached_tokens=cached_prompt_tokens(usage),
                        choices=texts if len(texts) > 1 else ())


def cached_prompt_tokens(usage: Any) -> int:
    """Prompt tokens a provider served from its prompt cache, as litellm reports them: OpenAI's
    ``prompt_tokens_details.cached_tokens`` (litellm puts Anthropic's cache reads there too), else
    Anthropic's ``cache_read_input_tokens``. 0 when the reply says nothing."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if not cached:
        cached = getattr(usage, "cache_read_input_tokens", None)
    try:
        return max(int(cached or 0), 0)
    except (TypeError, ValueError):
        return 0


SchemaStyle = Literal["json_schema", "json_object"]


def response_format(schema: dict[str, Any], style: SchemaStyle = "json_schema") -> dict[str, Any]:
    """How a JSON schema is asked for: OpenAI's ``json_schema`` (OpenAI, vLLM, litellm's adapters)
    or ``json_object`` with a ``schema`` (llama.cpp's server, which rejects the former)."""
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
