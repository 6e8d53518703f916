"""ScriptedLLM: a model whose replies a test writes (DSPy's ``DummyLM``, for llmopt's loop).

It is a real :class:`llmopt.llm.LLM` whose backend reads a script instead of the network, so the
optimizer, the response cache, the accounting and the run store see it as any model:

    llm = ScriptedLLM(["[3]", "no idea", '{"x": 7}'])        # replies in call order
    llm = ScriptedLLM(lambda prompt, seed: f"[{seed % 10}]")  # or a function of (prompt[, seed])
    Optimizer(problem, LLMProposer(llm), budget=Budget(max_steps=2)).run()
    llm.calls  # [Call(prompt=..., seed=..., reply=...), ...]

What is guaranteed: a function script's reply depends only on (prompt, seed), so runs are
reproducible. A list is consumed in call order, under a lock; the LLM asks a step's samples
concurrently, so which trial of a step gets which reply follows the order in which the calls
start (for one ``complete`` call: the seeds' order), not a promise about seeds. When a list runs
out the model raises :class:`ScriptExhausted` (``cycle=True`` starts it over instead). A script
may give an exception instance as a reply: that call fails (the optimizer records a FAILED trial).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, NamedTuple, Sequence, Union

from llmopt.llm.client import LLM, BackendReply, LLMConfig, Messages
from llmopt.llm.usage import Completion

__all__ = ["Call", "ScriptBackend", "ScriptExhausted", "ScriptedLLM"]

Reply = Union[str, BaseException]
Script = Union[Sequence[Reply], Callable[[str], Reply], Callable[[str, int], Reply]]


def message_text(message: dict[str, Any]) -> str:
    """A chat message's text: its content, or its text blocks joined (a prompt-cache message)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


class ScriptExhausted(RuntimeError):
    """A list script had no reply left for a call."""


class Call(NamedTuple):
    """One answered call: the prompt (the last message's content), its seed and the reply."""

    prompt: str
    seed: int
    reply: str


def _takes_seed(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind("prompt", 0)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): call it with both
        return True
    return True


class ScriptBackend:
    """The backend of a :class:`ScriptedLLM`: one reply per request, from the script; records calls."""

    def __init__(self, script: Script, *, cycle: bool = False, cost_per_call: float | None = 0.0) -> None:
        if isinstance(script, str) or not (callable(script) or isinstance(script, Sequence)):
            raise TypeError("a script is a list of replies or a function of (prompt) or (prompt, seed), "
                            f"got {type(script).__name__}")
        if not callable(script) and not script:
            raise ValueError("a list script needs at least one reply")
        self.script, self.cycle, self.cost_per_call = script, cycle, cost_per_call
        self._takes_seed = callable(script) and _takes_seed(script)
        self.calls: list[Call] = []
        self.error: ScriptExhausted | None = None  # set when a list ran out: the LLM raises it
        self._next = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def reply(self, prompt: str, seed: int) -> str:
        """The script's reply to one call (recorded in :attr:`calls`); raises what the script says."""
        with self._lock:
            if callable(self.script):
                text = self.script(prompt, seed) if self._takes_seed else self.script(prompt)
            else:
                if self._next >= len(self.script) and not self.cycle:
                    self.error = ScriptExhausted(
                        f"ScriptedLLM: all {len(self.script)} scripted replies are used up (call {self._next + 1}); "
                        "give more replies, or cycle=True")
                    raise self.error
                text = self.script[self._next % len(self.script)]
                self._next += 1
            if isinstance(text, BaseException):
                raise text
            if not isinstance(text, str):
                raise TypeError(f"a script's reply must be text, got {type(text).__name__}")
            self.calls.append(Call(prompt, seed, text))
            return text

    async def __call__(self, request: dict[str, Any]) -> BackendReply:
        prompt = message_text(request["messages"][-1])
        text = self.reply(prompt, request["seed"])
        return BackendReply(text=text, prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()),
                            cost_usd=self.cost_per_call, finish_reason="stop")


class ScriptedLLM(LLM):
    """An :class:`~llmopt.llm.LLM` that answers from a script (see the module docstring).

    ``script``: a list of replies, or a function of ``(prompt)`` or ``(prompt, seed)`` returning
    one; ``cycle``: start a list over when it runs out; ``model``: the name trials record
    (``llm:<model>``); further keywords are :class:`~llmopt.llm.LLMConfig` settings.
    """

    def __init__(self, script: Script | None = None, *, model: str = "scripted/model", cycle: bool = False,
                 cost_per_call: float | None = 0.0, config: LLMConfig | None = None, api_key: str | None = None,
                 cache: Any = None, backend: Any = None, **settings: Any) -> None:
        # config/api_key/cache/backend: how dataclasses.replace (with_cache) makes a copy
        if backend is None:
            if script is None:
                raise TypeError("ScriptedLLM needs a script: a list of replies or a function of (prompt[, seed])")
            backend = ScriptBackend(script, cycle=cycle, cost_per_call=cost_per_call)
        super().__init__(config or LLMConfig(model=model, **settings), api_key=api_key, cache=cache, backend=backend)

    @property
    def calls(self) -> list[Call]:
        """Every answered call, in the order answered (cached replies are not calls)."""
        return self.backend.calls

    async def acomplete_requests(self, requests: Sequence[tuple[Messages, Sequence[int]]], on_complete: Any = None,
                                 response_format: dict[str, Any] | None = None) -> list[Completion]:
        done = await super().acomplete_requests(requests, on_complete, response_format)
        error = getattr(self.backend, "error", None)
        if error is not None:
            raise ScriptExhausted(str(error))
        return done
