"""The one door to language models: every model call in llmopt goes through :class:`LLM`.

``client`` (LLM, its config, concurrency, retries, the cache and accounting around litellm),
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
