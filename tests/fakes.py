"""Test doubles for the LLM door: scripted replies that depend only on (prompt, seed).

Built on :mod:`llmopt.testing.scripted` (what users script their own tests with); these add the
fault injection the loop's own tests need.

They replace the network, never the loop: the optimizer, cache, accounting and store see them
exactly as they see litellm.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

import numpy as np

from llmopt.llm.client import LLM, BackendReply
from llmopt.testing.scripted import ScriptBackend, message_text

Script = Callable[[str, int], str]


def prompt_of(request: dict[str, Any]) -> str:
    return message_text(request["messages"][-1])


def linreg_script(prompt: str, seed: int) -> str:
    """A crude 'optimizer': perturbs the best pair shown (the last one), sometimes babbles."""
    rng = np.random.default_rng(seed)
    pairs = re.findall(r"w=(-?\d+), b=(-?\d+)", prompt)
    w, b = (int(x) for x in pairs[-1]) if pairs else (10, 10)
    roll = rng.random()
    if roll < 0.15:
        return "I think the answer is somewhere around there."  # invalid
    if roll < 0.25:
        return f"Keep the best one: [w={w}, b={b}]"  # a duplicate
    dw, db = rng.integers(-3, 4, size=2)
    return f"Let me try a nearby point.\n[{w + int(dw)}, {b + int(db)}]"


def many_script(prompt: str, seed: int) -> str:
    """linreg_script for a meta-prompt that asks for K pairs in one reply: K of its replies' last lines."""
    asked = re.search(r"Give me (\d+) new", prompt)
    count = int(asked.group(1)) if asked else 1
    rng = np.random.default_rng(seed)
    lines = [linreg_script(prompt, seed + 7919 * i).splitlines()[-1] for i in range(count)]
    if count > 1 and rng.random() < 0.2:
        lines = lines[:-1]  # one answer short
    return "Here they are:\n" + "\n".join(lines)


def evo_script(prompt: str, seed: int) -> str:
    """An 'operator' for EvoPrompt's GA and DE requests on linear regression and TSP: the child
    mixes the parents shown (the mean of the pairs; the first trace with a segment reversed),
    bracketed as asked; sometimes no tags, sometimes babble."""
    rng = np.random.default_rng(seed)
    tag = re.search(r"bracketed with <(\w+)>", prompt)
    tag_name = tag.group(1) if tag else "answer"
    roll = rng.random()
    if roll < 0.1:
        return "Step 1 done. I am not sure about step 2."  # invalid
    traces = re.findall(r"<trace> ([\d,]+) </trace>", prompt.split("\n\n", 1)[-1])
    if traces:
        tour = [int(x) for x in traces[-1].split(",")]
        i, j = sorted(int(x) for x in rng.choice(np.arange(1, len(tour)), size=2, replace=False))
        child = tour[:i] + tour[i:j + 1][::-1] + tour[j + 1:]
        text = f"<trace> {','.join(map(str, child))} </trace>"
    else:
        pairs = [(int(w), int(b)) for w, b in re.findall(r"w=(-?\d+), b=(-?\d+)", prompt)] or [(10, 10)]
        w = round(sum(p[0] for p in pairs) / len(pairs)) + int(rng.integers(-2, 3))
        b = round(sum(p[1] for p in pairs) / len(pairs)) + int(rng.integers(-2, 3))
        text = f"w={w}, b={b}"
    if roll < 0.2:
        return f"Crossover done. Final: {text}"  # no tags: the whole reply is decoded
    return f"1. Crossover: mixed.\n2. <{tag_name}>{text}</{tag_name}>"


class ScriptedBackend(ScriptBackend):
    """llmopt.testing's script backend (reply = script(prompt, seed), calls recorded) plus what the
    loop's own tests need: every request kept, latency, injected failures, a price per call."""

    def __init__(self, script: Script = linreg_script, *, latency_s: float = 0.0,
                 fail: Callable[[dict[str, Any]], Exception | None] | None = None,
                 cost_per_call: float | None = None) -> None:
        super().__init__(script, cost_per_call=cost_per_call)
        self.latency_s, self.fail = latency_s, fail
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any]) -> BackendReply:
        self.requests.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.fail is not None and (exc := self.fail(request)) is not None:
            raise exc
        return await super().__call__(request)


def scripted_llm(script: Script = linreg_script, model: str = "fake/scripted", **kwargs: Any) -> tuple[LLM, ScriptedBackend]:
    backend = ScriptedBackend(script, **{k: kwargs.pop(k) for k in ("latency_s", "fail", "cost_per_call") if k in kwargs})
    return LLM.from_model(model, backend=backend, **kwargs), backend


def litellm_mock_backend(script: Script = linreg_script):
    """Through litellm itself: its ``mock_response`` carries the scripted reply."""
    from llmopt.llm.client import litellm_backend

    async def backend(request: dict[str, Any]) -> BackendReply:
        return await litellm_backend({**request, "mock_response": script(prompt_of(request), request["seed"])})

    return backend
