"""Whether a call would find its API key, asked before a run spends anything, and keys kept out
of what is printed or recorded.

The rules (which variables count, which providers need none) are :func:`missing_credentials`'s;
:func:`check_credentials` applies them to a model or to every deployment of a router.
"""

from __future__ import annotations

import os
from typing import Sequence

from llmopt.llm import embedded
from llmopt.llm._litellm import import_litellm
from llmopt.llm.config import LLMConfig
from llmopt.llm.errors import MissingCredentials

#: Providers whose credentials need not be environment variables (AWS's chain: ~/.aws, instance
#: roles), where litellm's list of variables is no requirement.
CREDENTIAL_CHAINS = ("bedrock", "sagemaker", "sagemaker_chat")
_CREDENTIAL_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
#: What an OpenAI-compatible server of one's own gets when no key is set (the OpenAI client
#: refuses to send a request without one; a server started without --api-key accepts any).
PLACEHOLDER_KEY = "no-key"


def missing_credentials(model: str, api_base: str | None = None) -> list[str]:
    """The environment variables holding ``model``'s API key that are not set, as litellm names
    them (``validate_environment``); empty when the call needs none or may find one elsewhere.

    Not asked of: the embedded ``local/...`` models; an explicit ``api_base``, also when set by
    the provider's ``<PROVIDER>_API_BASE`` / ``<PROVIDER>_BASE_URL`` variable or ``litellm.api_base``
    (a server of one's own: litellm cannot know whether it wants a key, and llama.cpp's and vLLM's
    servers by default do not); providers with credential chains (:data:`CREDENTIAL_CHAINS`); a
    key set in Python (``litellm.api_key``, ``litellm.<provider>_key``). Endpoints, projects and
    regions that litellm also lists (``OLLAMA_API_BASE``, ``VERTEXAI_PROJECT``) are no credentials
    and have defaults or other sources: only key-like names count.
    """
    if api_base or embedded.is_embedded(model):
        return []
    litellm = import_litellm()
    try:
        provider = litellm.get_llm_provider(model)[1]
    except Exception:  # unroutable: validate() says so
        return []
    upper = str(provider).upper()
    if provider in CREDENTIAL_CHAINS or getattr(litellm, "api_base", None) or getattr(litellm, "api_key", None) \
            or getattr(litellm, f"{provider}_key", None) \
            or os.environ.get(f"{upper}_API_BASE") or os.environ.get(f"{upper}_BASE_URL"):
        return []
    try:
        found = litellm.validate_environment(model=model)
    except Exception:  # litellm's own check failing is no reason to refuse a run
        return []
    return [name for name in found.get("missing_keys") or () if any(w in name.upper() for w in _CREDENTIAL_WORDS)]


def check_credentials(config: LLMConfig, key_hint: str) -> None:
    """Raise :class:`MissingCredentials` (one line naming the variables) if a call of ``config``'s
    model, given no key, would find none. A router's deployments are checked one by one: each
    either names its key (``api_key``, a variable checked by ``LLM.validate``) or needs its
    provider's variable, as a single model would. ``key_hint``: the other way to give a key."""
    spec = config.router
    if spec is None:
        missing = missing_credentials(config.model, config.api_base)
        if missing:
            raise _needs(config.model, missing, key_hint)
        return
    for i, d in enumerate(spec.model_list):
        params = d["litellm_params"]
        missing = [] if params.get("api_key") else missing_credentials(params["model"], params.get("api_base"))
        if missing:
            raise _needs(f"{spec.source}: model_list[{i}] ({params['model']})", missing,
                         "api_key: os.environ/NAME in the router file")


def _needs(what: str, variables: Sequence[str], hint: str) -> MissingCredentials:
    names = variables[0] if len(variables) == 1 else f"credentials ({', '.join(variables)}: none is set)"
    return MissingCredentials(f"{what} needs {names} in the environment (or {hint})", variables)


def keyless_server(config: LLMConfig) -> bool:
    """An OpenAI-compatible server of one's own (``openai/<name>`` at an ``api_base``) and no
    key anywhere litellm would look: the OpenAI client would refuse to send the request."""
    if not (config.api_base and config.model.startswith("openai/")) or os.environ.get("OPENAI_API_KEY"):
        return False
    litellm = import_litellm()
    return not (getattr(litellm, "api_key", None) or getattr(litellm, "openai_key", None))


def scrub(text: str, *secrets: str | None) -> str:
    """Hide API keys that an error message might echo (short test keys would mangle words)."""
    for secret in secrets:
        text = text.replace(secret, "***") if secret and len(secret) >= 8 else text
    return text
