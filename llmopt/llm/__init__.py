"""The one door to language models: every model call in llmopt goes through :class:`LLM`.

``client`` (LLM: concurrency, the cache and accounting around litellm), ``config`` (LLMConfig:
every setting of a model, validated and recorded), ``backend`` (what answers one request: litellm,
a Router, a stand-in), ``credentials`` (whether a call would find its key; keys kept out of messages),
``cache`` (the response-cache contract, its key, the in-memory cache), ``usage`` (Completion, Usage),
``router`` (litellm Router configurations), ``embedded`` (the in-process llama.cpp model,
``local/...``), ``embedded_server`` (llama.cpp's OpenAI server, loaded the same way),
``flags`` (the model options shared by every command), ``_litellm`` (the one litellm import, its
price map and tokenizers).
"""

from __future__ import annotations

from llmopt.llm.cache import MemoryCache, ResponseCache, cache_key
from llmopt.llm.client import LLM, LLMConfig, observe_calls, response_format
from llmopt.llm.errors import LLMConfigError, MissingCredentials
from llmopt.llm.router import RouterSpec
from llmopt.llm.usage import Completion, Usage

__all__ = ["LLM", "Completion", "LLMConfig", "LLMConfigError", "MemoryCache", "MissingCredentials", "ResponseCache",
           "RouterSpec", "Usage", "cache_key", "observe_calls", "response_format"]
