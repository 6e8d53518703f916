"""The fault suite: OPRO through litellm against a misbehaving loopback server, audited.

One scenario = one fault kind injected into a share of the requests of a linear-regression run
(the scripted optimizer behind a real HTTP server). The audit reads the store afterwards and
counts what matters: did the run end with a stop reason (not a traceback), were trial numbers
recorded once each with no gaps (nothing lost, nothing duplicated), was every reply the server
sent either recorded or accounted as a failed call, did every request name the configured
model, did the API key stay out of every file. Used by tests/test_faults.py (in CI) and
benchmarks/fault_suite.py (more runs, a table).
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import linreg_script
from openai_server import FAULTS, OpenAIServer

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore, TrialState
from problems.linear_regression.problem import LinearRegression

MODEL = "openai/scripted-model"
SECRET = "sk-llmopt-FAULT-SUITE-0123456789abcdef"


@dataclass
class Outcome:
    fault: str
    seed: int
    injected: int = 0
    requests: int = 0
    stop_reason: str | None = None  # None: the run raised
    crash: str | None = None
    trials: int = 0
    lost: int = 0  # trial numbers missing from the record
    duplicated: int = 0  # trial numbers recorded twice, or one solution scored twice
    unaccounted: int = 0  # server replies with no recorded call
    states: dict[str, int] = field(default_factory=dict)
    swapped_model: int = 0  # requests for another model
    leaked: list[str] = field(default_factory=list)  # files holding the API key
    invalid_without_text: int = 0  # INVALID trials whose reply was not kept

    @property
    def ok(self) -> bool:
        return (self.crash is None and self.lost == 0 and self.duplicated == 0 and self.unaccounted == 0
                and self.swapped_model == 0 and not self.leaked and self.invalid_without_text == 0)


def run_scenario(fault: str, seed: int, workdir: Path, *, rate: float = 0.3, steps: int = 3,
                 num_retries: int = 2, timeout_s: float = 1.0, budget: Budget | None = None) -> Outcome:
    """One run with ``fault`` injected into a seeded ``rate`` of the requests; then the audit."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
    rng = random.Random(f"{fault}:{seed}")
    draws: dict[int, bool] = {}

    def plan(index: int) -> str | None:
        if index not in draws:
            draws[index] = rng.random() < rate
        return fault if draws[index] else None

    out = Outcome(fault, seed)
    path = workdir / f"{fault}-{seed}.db"
    with OpenAIServer(linreg_script, plan=plan, slow_s=timeout_s + 1.0) as server:
        with RunStore(path) as store:
            llm = LLM.from_model(MODEL, api_base=server.api_base, api_key=SECRET, num_retries=num_retries,
                                 timeout_s=timeout_s, concurrency=4, max_tokens=256)
            try:
                opt = Optimizer(LinearRegression(seed=seed), LLMProposer(llm, structured="off"), seed=seed,
                                store=store, name="run",
                                budget=budget or Budget(max_steps=steps, stop_when_solved=False))
                out.stop_reason = opt.run().stop_reason.value
            except Exception:  # the audit's point: this must never happen
                out.crash = traceback.format_exc(limit=3)
            audit(store, server, out)
    files = [f for p in workdir.iterdir() if p.name.startswith(path.name)  # the store, journals, run locks
             for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    out.leaked = [str(f.relative_to(workdir)) for f in files if SECRET.encode() in f.read_bytes()]
    return out


def audit(store: RunStore, server: OpenAIServer, out: Outcome) -> None:
    out.injected, out.requests = sum(server.injected.values()), len(server.requests)
    out.swapped_model = sum(1 for r in server.requests if r.get("model") != MODEL.split("/", 1)[1])
    run = store.find_run("run")
    if run is None:
        return
    rows = store.trials(run.id)
    numbers = [r.number for r in rows]
    out.trials = len(rows)
    out.lost = (max(numbers) + 1 - len(set(numbers))) if numbers else 0
    keys = [r.key for r in rows if r.state is TrialState.COMPLETE]
    out.duplicated = (len(numbers) - len(set(numbers))) + (len(keys) - len(set(keys)))
    for r in rows:
        out.states[r.state.value] = out.states.get(r.state.value, 0) + 1
    out.invalid_without_text = sum(1 for r in rows if r.state is TrialState.INVALID and r.raw is None)
    calls = store.calls(run.id)
    ok_calls = sum(1 for c in calls if c.error is None and not c.cache_hit)
    # Each well-formed 200 reply is one successful call, except replies the client gave up on
    # (timeouts) or could not read (bad UTF-8), which litellm retried or recorded as failed.
    out.unaccounted = max(0, server.replies - ok_calls - server.injected["timeout"])


def table(outcomes: list[Outcome]) -> list[list[Any]]:
    rows: list[list[Any]] = [["fault", "runs", "requests", "injected", "completed", "stopped (reason)", "crashes",
                              "trials", "lost", "duplicated", "unaccounted", "model swaps", "key leaks"]]
    for fault in dict.fromkeys(o.fault for o in outcomes):
        group = [o for o in outcomes if o.fault == fault]
        reasons: dict[str, int] = {}
        for o in group:
            if o.stop_reason is not None:
                reasons[o.stop_reason] = reasons.get(o.stop_reason, 0) + 1
        completed = reasons.get("max_steps", 0)
        stopped = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()) if k != "max_steps") or "-"
        rows.append([fault, len(group), sum(o.requests for o in group), sum(o.injected for o in group), completed,
                     stopped, sum(o.crash is not None for o in group), sum(o.trials for o in group),
                     sum(o.lost for o in group), sum(o.duplicated for o in group), sum(o.unaccounted for o in group),
                     sum(o.swapped_model for o in group), sum(len(o.leaked) for o in group)])
    return rows
