"""What a run records of its model: :class:`LLMConfig`, every setting of one model, validated.

Every setting that decides how a model is called is a field here, and nowhere else (no module
global, no environment variable read at call time), so that a run's record says all of it and
two models with different settings can live in one process. The API key is deliberately not a
field: it is never recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from llmopt.llm.embedded import is_embedded
from llmopt.llm.errors import LLMConfigError
from llmopt.llm.router import RouterSpec


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    """Sampling settings, recorded with the run. The API key is deliberately not a field.

    ``threads``: CPU threads of the embedded model (``local/...``: llama.cpp's ``n_threads`` and
    ``n_threads_batch``); no other model has threads, so another model refuses any other value
    than 1. It is not part of a reply's cache key: llama.cpp's CPU kernels split a matrix product
    by rows, never a sum, so any thread count gives the same logits (measured: bit-identical
    logits and samples for 1 to 4 threads, SmolLM2-135M Q4_1, llama-cpp-python 0.3.36); a reply
    cached at one count serves another. It is recorded when it is not 1, the count every run
    made before it was a field used, so that those runs still resume.
    """

    model: str
    api_base: str | None = None
    temperature: float = 1.0
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    timeout_s: float = 120.0
    num_retries: int = 3
    concurrency: int = 8
    router: RouterSpec | None = None  # then ``model`` names one of its model groups
    threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip() or self.model.strip().endswith("/"):
            raise LLMConfigError(f"model must be a litellm model string such as 'openai/gpt-4o-mini', "
                                 f"got {self.model!r}")
        self._check_ranges()
        self._check_threads()
        if self.router is not None:
            if self.api_base:
                raise LLMConfigError("api_base and a router exclude each other (the router's deployments "
                                     "name their own api_base)")
            self.router.check_group(self.model)

    def _check_ranges(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise LLMConfigError(f"temperature must be in [0, 2], got {self.temperature}")
        if self.max_tokens < 1:
            raise LLMConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.timeout_s <= 0:
            raise LLMConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 0 <= self.num_retries <= 20:
            raise LLMConfigError(f"num_retries must be in [0, 20], got {self.num_retries}")
        if self.concurrency < 1:
            raise LLMConfigError(f"concurrency must be >= 1, got {self.concurrency}")

    def _check_threads(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise LLMConfigError(f"threads must be a whole number >= 1, got {self.threads!r}")
        if self.threads != 1 and (self.router is not None or not is_embedded(self.model)):
            raise LLMConfigError(f"threads applies to the embedded model (local/...) only, not to {self.model!r} "
                                 f"(got threads={self.threads})")

    def to_dict(self) -> dict[str, Any]:
        """The record of these settings (JSON): a router as :meth:`RouterSpec.record` (no key)."""
        out = asdict(replace(self, router=None))
        out["stop"] = list(self.stop)
        if self.router is None:
            del out["router"]  # runs recorded before routers existed still resume
        else:
            out["router"] = self.router.record()
        if self.threads == 1:
            del out["threads"]  # runs recorded before threads was a field (all at 1) still resume
        return out
