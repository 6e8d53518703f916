"""The one door to language models.

Every model call in llmopt goes through :class:`LLM`, which speaks litellm model strings
(``openai/gpt-4o-mini``, ``anthropic/...``, ``ollama/...``, ``openai/<name>`` plus ``api_base``
for any OpenAI-compatible server). It adds what a research run needs on top of litellm:

* per-sample seeds, requested concurrently under a concurrency limit;
* a persistent response cache keyed by (model, endpoint, messages, sampling parameters, seed),
  so eight samples at temperature 1 stay eight samples and a re-run is served from the cache;
* accounting of every call: tokens, dollars (``None`` when litellm has no price, never 0),
  latency, cache hits, errors;
* optionally a litellm ``Router`` (:class:`RouterSpec`, :meth:`LLM.from_router`): several
  deployments of one model group with rpm/tpm limits and fallbacks; litellm does the balancing.

Its parts live beside it: the settings in :mod:`llmopt.llm.config`, what answers one request in
:mod:`llmopt.llm.backend`, the API-key checks in :mod:`llmopt.llm.credentials`. litellm is
imported on first use: ``import litellm`` takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

from llmopt.llm import embedded
from llmopt.llm._litellm import count_tokens, import_litellm, token_cost
from llmopt.llm.backend import Backend, BackendReply, cached_prompt_tokens, litellm_backend, response_format, router_backend
from llmopt.llm.cache import ResponseCache, cache_key
from llmopt.llm.config import LLMConfig
from llmopt.llm.credentials import (
    CREDENTIAL_CHAINS,
    PLACEHOLDER_KEY,
    check_credentials,
    keyless_server,
    missing_credentials,
    scrub,
)
from llmopt.llm.errors import LLMConfigError, MissingCredentials
from llmopt.llm.grammar import GRAMMAR
from llmopt.llm.router import RouterSpec
from llmopt.llm.usage import Completion

#: What callers have always imported from here; the parts live in config, backend, credentials.
__all__ = ["CREDENTIAL_CHAINS", "LLM", "PLACEHOLDER_KEY", "Backend", "BackendReply", "CallObserver", "Completion",
           "LLMConfig", "LLMConfigError", "Messages", "MissingCredentials", "ResponseCache", "cache_key",
           "cached_prompt_tokens", "litellm_backend", "missing_credentials", "observe_calls", "response_format",
           "router_backend"]

Messages = list[dict[str, str]]


#: Called as each call made in a context is answered: (model, completion). See observe_calls.
CallObserver = Callable[[str, "Completion"], None]
_observers: contextvars.ContextVar[tuple[CallObserver, ...]] = contextvars.ContextVar("llmopt_call_observers",
                                                                                      default=())


@contextlib.contextmanager
def observe_calls(observer: CallObserver) -> Iterator[None]:
    """Call ``observer(model, completion)`` as each call made inside the ``with`` block (in this
    thread, and the tasks and worker it starts) is answered, cached or failed: progress from code
    that makes calls but takes no callback, such as a problem's scorer inside ``evaluate``."""
    token = _observers.set(_observers.get() + (observer,))
    try:
        yield
    finally:
        _observers.reset(token)


def _cached(hit: dict[str, Any], seed: int, key: str, choice: int = 0) -> Completion:
    """The completion a response-cache entry stands for (a cache hit: its accounting as recorded)."""
    return Completion(seed=seed, text=hit["text"], prompt_tokens=hit["prompt_tokens"] or 0,
                      completion_tokens=hit["completion_tokens"] or 0, cost_usd=hit["cost_usd"], cache_hit=True,
                      finish_reason=hit.get("finish_reason"), cache_key=key, choice=choice,
                      cached_tokens=hit.get("cached_tokens") or 0)


@dataclass
class LLM:
    """A model behind litellm, with caching and accounting. See the module docstring."""

    config: LLMConfig
    api_key: str | None = field(default=None, repr=False)
    cache: ResponseCache | None = None
    backend: Backend | None = None
    # The litellm Router (a router config only): made once, on first use, in the process that calls.
    _router: Any = field(default=None, init=False, repr=False, compare=False)
    _router_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def from_model(cls, model: str, *, api_key: str | None = None, cache: ResponseCache | None = None,
                   backend: Backend | None = None, **settings: Any) -> "LLM":
        return cls(LLMConfig(model=model, **settings), api_key=api_key, cache=cache, backend=backend)

    @classmethod
    def from_router(cls, config: RouterSpec | Mapping[str, Any] | str | os.PathLike[str], model: str, *,
                    cache: ResponseCache | None = None, backend: Backend | None = None, **settings: Any) -> "LLM":
        """Calls to model group ``model`` of a litellm Router configuration (a file or a mapping in
        litellm's ``model_list`` / ``router_settings`` shape); the file holds the deployments' keys."""
        return cls(LLMConfig(model=model, router=RouterSpec.load(config), **settings), cache=cache, backend=backend)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__, _router=None)  # a worker process makes its own Router
        del state["_router_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _router_lock=threading.Lock())

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def uses_litellm(self) -> bool:
        return self.backend is None

    def with_cache(self, cache: ResponseCache | None) -> "LLM":
        out = replace(self, cache=cache)
        out._router = self._router  # one Router (its cooldowns and rpm counts) per model
        return out

    def with_settings(self, **settings: Any) -> "LLM":
        """The same model, cache and Router with other sampling settings (e.g. a temperature)."""
        out = replace(self, config=replace(self.config, **settings))
        out._router = self._router
        return out

    def validate(self) -> None:
        """Fail fast, before any budget is spent, on a model string litellm cannot route."""
        if not self.uses_litellm:
            return
        if self.config.router is not None:
            self._validate_router()
            return
        if embedded.is_embedded(self.config.model):  # missing weights, a crashing CPU: one line
            embedded.check_model(self.config.model.split("/", 1)[1], self.config.threads)
            embedded.register()
            return
        litellm = import_litellm()
        try:
            litellm.get_llm_provider(self.config.model, api_base=self.config.api_base)
        except Exception as exc:
            raise LLMConfigError(
                f"unknown model {self.config.model!r}: litellm cannot route it "
                f"(use a provider prefix such as 'openai/', 'anthropic/', 'ollama/'): "
                f"{scrub(str(exc).strip().splitlines()[0], self.api_key)}"
            ) from None

    def check_credentials(self, key_hint: str = "LLM.from_model(..., api_key=...)") -> None:
        """Raise :class:`MissingCredentials` (one line naming the variables) if a call would find
        no API key: before a run that will call the model creates anything or calls anything.

        Not part of :meth:`validate`, which also runs when a stored run is only read back. The
        rules are :func:`llmopt.llm.credentials.check_credentials`'s; a key given here (``api_key``)
        always does. ``key_hint`` is the other way to give a key, for the message (a command-line flag)."""
        if self.uses_litellm and not self.api_key:
            check_credentials(self.config, key_hint)

    def _validate_router(self) -> None:
        """Every variable a deployment names is set, litellm can route every deployment, and litellm
        accepts the settings (the Router is made here, once)."""
        spec, litellm = self.config.router, import_litellm()
        assert spec is not None
        for where, name in spec.env_refs():
            if not os.environ.get(name):
                raise LLMConfigError(f"{spec.source}: {where}: environment variable {name} is not set")
        for i, d in enumerate(spec.model_list):
            params = d["litellm_params"]
            try:
                litellm.get_llm_provider(params["model"], api_base=params.get("api_base"))
            except Exception:  # litellm raises a variety of errors for an unroutable model
                raise LLMConfigError(f"{spec.source}: model_list[{i}].litellm_params.model: litellm cannot route "
                                     f"{params['model']!r} (use a provider prefix such as 'openai/')") from None
        try:
            self._litellm_router()
        except Exception as exc:  # litellm's own checks: unknown settings, strategies, ...
            detail = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                            *self._secrets())
            raise LLMConfigError(f"{spec.source}: litellm's Router refused the configuration: {detail}") from None

    def _litellm_router(self) -> Any:
        with self._router_lock:
            if self._router is None:
                assert self.config.router is not None
                self._router = self.config.router.build(self.config.num_retries, self.config.timeout_s)
            return self._router

    def _secrets(self) -> list[str | None]:
        return [self.api_key, *(self.config.router.secrets() if self.config.router is not None else ())]

    def supports_structured(self) -> bool:
        """Can this model be asked for output that follows a JSON schema?"""
        if embedded.is_embedded(self.config.model):
            return True  # llama.cpp grammars
        if not self.uses_litellm:
            return False
        litellm = import_litellm()
        router = self.config.router
        models = router.models(self.config.model) if router is not None else (self.config.model,)
        try:
            return all(litellm.supports_response_schema(model=m) for m in models)
        except Exception:  # unmapped model: assume not
            return False

    def token_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What that many tokens would cost with this model, by the price map that prices its
        replies (:func:`llmopt.llm._litellm.token_cost`), or None if unknown: for estimates made
        before any call. The embedded model is free; a router's model group costs what its
        dearest deployment does (any may serve; a deployment's own price counts, as in the Router's
        reply costs), and is unknown if any deployment's is."""
        router = self.config.router
        priced = router.prices(self.config.model) if router is not None else ((self.config.model, None),)
        costs = [0.0 if embedded.is_embedded(m) else token_cost(m, prompt_tokens, completion_tokens, own)
                 for m, own in priced]
        return None if any(c is None for c in costs) else max(c for c in costs if c is not None)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as one user message (a router's: by its group's first model's tokenizer)."""
        router = self.config.router
        return count_tokens(router.models(self.config.model)[0] if router is not None else self.config.model, text)

    def request(self, messages: Messages, seed: int, response_format: dict[str, Any] | None = None) -> dict[str, Any]:
        """The litellm keyword arguments for one sample (without the API key)."""
        c = self.config
        req: dict[str, Any] = {
            "model": c.model,
            "messages": messages,
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
            "seed": seed,
        }
        if c.stop:
            req["stop"] = list(c.stop)
        if c.api_base:
            req["api_base"] = c.api_base
        if response_format is not None:
            req["response_format"] = response_format
        return req

    # --- calls --------------------------------------------------------------------------
    def complete(self, messages: Messages, seeds: Sequence[int],
                 on_complete: Callable[[int, Completion], None] | None = None,
                 response_format: dict[str, Any] | None = None) -> list[Completion]:
        """One completion per seed, requested concurrently; results in seed order.

        ``on_complete(i, completion)`` runs as each sample finishes, so a caller can persist
        it at once (a killed run keeps every reply it paid for).
        """
        return self.complete_batch([(messages, s) for s in seeds], on_complete, response_format)

    def complete_batch(self, items: Sequence[tuple[Messages, int]],
                       on_complete: Callable[[int, Completion], None] | None = None,
                       response_format: dict[str, Any] | None = None) -> list[Completion]:
        """One completion per (messages, seed) item, concurrently; results in item order."""
        return self.complete_requests([(m, (s,)) for m, s in items], on_complete, response_format)

    def complete_requests(self, requests: Sequence[tuple[Messages, Sequence[int]]],
                          on_complete: Callable[[int, Completion], None] | None = None,
                          response_format: dict[str, Any] | None = None) -> list[Completion]:
        """One completion per seed of every (messages, seeds) request, flat, in order.

        A request with several seeds is one call asking for that many choices (``n``), sent with
        its first seed: the prompt is billed once. Each choice is cached under its own key (the
        request, its ``n`` and the choice's index), so a rerun is served choice by choice; the
        choices a server does not return (llama.cpp's ignores ``n``) are asked one call each
        with their own seeds. The call's tokens and dollars are its first choice's; the others
        carry ``choice`` > 0 and count as no call (:class:`Usage`).
        """
        coro = self.acomplete_requests(requests, on_complete, response_format)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside a running loop (a notebook): run ours on a worker thread (same observers).
        box: dict[str, Any] = {}
        context = contextvars.copy_context()
        worker = threading.Thread(target=lambda: box.update(out=context.run(asyncio.run, coro)))
        worker.start()
        worker.join()
        return box["out"]

    async def acomplete(self, messages: Messages, seeds: Sequence[int],
                        on_complete: Callable[[int, Completion], None] | None = None,
                        response_format: dict[str, Any] | None = None) -> list[Completion]:
        return await self.acomplete_batch([(messages, s) for s in seeds], on_complete, response_format)

    async def acomplete_batch(self, items: Sequence[tuple[Messages, int]],
                              on_complete: Callable[[int, Completion], None] | None = None,
                              response_format: dict[str, Any] | None = None) -> list[Completion]:
        return await self.acomplete_requests([(m, (s,)) for m, s in items], on_complete, response_format)

    async def acomplete_requests(self, requests: Sequence[tuple[Messages, Sequence[int]]],
                                 on_complete: Callable[[int, Completion], None] | None = None,
                                 response_format: dict[str, Any] | None = None) -> list[Completion]:
        limit = asyncio.Semaphore(self.config.concurrency)
        starts = [0]
        for _, seeds in requests:
            if not seeds:
                raise ValueError("a request needs at least one seed")
            starts.append(starts[-1] + len(seeds))

        def report(i: int, done: Completion) -> None:
            if on_complete is not None:
                on_complete(i, done)
            for observer in _observers.get():
                observer(self.config.model, done)

        async def single(i: int, messages: Messages, seed: int) -> Completion:
            async with limit:
                done = await self._one(messages, seed, response_format)
            report(i, done)
            return done

        async def several(first: int, messages: Messages, seeds: Sequence[int]) -> list[Completion]:
            if len(seeds) == 1:
                return [await single(first, messages, seeds[0])]
            async with limit:
                got = await self._choices(messages, seeds, response_format)
            for i, done in enumerate(got):
                report(first + i, done)
            rest = await asyncio.gather(*(single(first + i, messages, seeds[i]) for i in range(len(got), len(seeds))))
            return got + list(rest)

        groups = await asyncio.gather(*(several(starts[j], m, tuple(seeds)) for j, (m, seeds) in enumerate(requests)))
        return [c for group in groups for c in group]

    async def _choices(self, messages: Messages, seeds: Sequence[int],
                       response_format: dict[str, Any] | None) -> list[Completion]:
        """One call for ``len(seeds)`` choices: the choices it returned (cached one by one), which
        may be fewer; none if the call failed (Anthropic refuses ``n``), so that every sample is
        asked on its own, each with its retries and, if it fails too, its failure recorded."""
        request = dict(self.request(messages, seeds[0], response_format), n=len(seeds))
        keys = [cache_key({**self._keyed(request), "choice": i}) for i in range(len(seeds))]
        if self.cache is not None:
            hits = list(itertools.takewhile(lambda h: h is not None, (self.cache.get(k) for k in keys)))
            if hits:  # the choices cached (a server that ignored n: choice 0; the rest were asked one by one)
                return [_cached(h, seeds[0], k, i) for i, (h, k) in enumerate(zip(hits, keys))]
        started = time.perf_counter()
        try:
            reply = await self._call(request)
        except Exception:  # e.g. a provider that refuses n (Anthropic): every sample asked on its own
            return []
        latency = time.perf_counter() - started
        texts = (reply.choices or (reply.text,))[:len(seeds)]
        out = []
        for i, text in enumerate(texts):
            first = i == 0
            cost = reply.cost_usd if first or reply.cost_usd is None else 0.0
            done = Completion(seed=seeds[0], text=text, prompt_tokens=(reply.prompt_tokens or 0) if first else 0,
                              completion_tokens=(reply.completion_tokens or 0) if first else 0, cost_usd=cost,
                              latency_s=latency, finish_reason=reply.finish_reason, cache_key=keys[i],
                              deployment=reply.deployment, choice=i, cached_tokens=reply.cached_tokens if first else 0)
            out.append(done)
            if self.cache is not None:
                self.cache.put(keys[i], self._entry(request, done))
        return out

    def _entry(self, request: dict[str, Any], done: Completion) -> dict[str, Any]:
        return {"model": self.config.model, "request": request, "text": done.text,
                "prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "cost_usd": done.cost_usd, "finish_reason": done.finish_reason, "cached_tokens": done.cached_tokens}

    async def _one(self, messages: Messages, seed: int, response_format: dict[str, Any] | None) -> Completion:
        request = self.request(messages, seed, response_format)
        key = cache_key(self._keyed(request))
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return _cached(hit, seed, key)
        started = time.perf_counter()
        try:
            reply = await self._call(request)
        except Exception as exc:  # a failed call is data: the proposer records a FAILED trial
            message = scrub(f"{type(exc).__name__}: {exc}", *self._secrets())
            return Completion(seed=seed, text=None, error=message[:2000],
                              latency_s=time.perf_counter() - started, cache_key=key)
        done = Completion(seed=seed, text=reply.text, prompt_tokens=reply.prompt_tokens or 0,
                          completion_tokens=reply.completion_tokens or 0, cost_usd=reply.cost_usd,
                          latency_s=time.perf_counter() - started, finish_reason=reply.finish_reason,
                          cache_key=key, deployment=reply.deployment, cached_tokens=reply.cached_tokens)
        if self.cache is not None:
            self.cache.put(key, self._entry(request, done))
        return done

    def _keyed(self, request: dict[str, Any]) -> dict[str, Any]:
        """What the cache key hashes. A router's call is keyed by its model group and the models
        behind it, not by the server that answers: any deployment of one model gives the same kind
        of reply, so a run re-served over other servers (or a grown cluster) still hits its cache.
        An embedded model's structured call is keyed by the grammar llmopt makes of the schema too
        (:data:`llmopt.llm.grammar.GRAMMAR`): replies sampled under an older grammar are not this
        one's, so they are never served for it."""
        if embedded.is_embedded(self.config.model) and "response_format" in request:
            request = {**request, "grammar": GRAMMAR}
        if self.config.router is None:
            return request
        return {**request, "router_models": list(self.config.router.models(self.config.model))}

    async def _call(self, request: dict[str, Any]) -> BackendReply:
        if self.backend is not None:
            return await self.backend(request)
        if self.config.router is not None:  # the Router's num_retries and timeout are the config's
            return await router_backend(self._litellm_router(), request)
        full = dict(request, num_retries=self.config.num_retries, timeout=self.config.timeout_s)
        if embedded.is_embedded(self.config.model):  # not in the cache key: threads change no reply (LLMConfig)
            full[embedded.THREADS_PARAM] = self.config.threads
        if self.api_key:
            full["api_key"] = self.api_key
        elif keyless_server(self.config):
            full["api_key"] = PLACEHOLDER_KEY
        return await litellm_backend(full)
