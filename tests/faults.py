"""The fault suite: OPRO through litellm against a misbehaving loopback server, audited.

One scenario = one fault kind injected into a share of the requests of a linear-regression run
(the scripted optimizer behind a real HTTP server). The audit reads the store afterwards and
checks it against what the run must have produced, known from outside the store: the server's
log of requests and replies, the seed (each proposal's request carries the seed derived from its
trial number), the problem's starting solutions and the optimizer's own count of calls. Every
count is exact (never clamped, never netted out): did the run end with a stop reason (not a
traceback); was every trial number the run took recorded, the last ones included (``lost``); was
none recorded twice and no solution scored twice (``duplicated``); was every request the server
answered recorded as one successful call and every request it never answered as one failed call
(``unrecorded``), with no call recorded that the server did not answer that way, such as a call
recorded twice (``unanswered``); does every LLM trial have its call (``uncalled``); does the
store hold the calls the optimizer counted (``miscounted``); did every request name the
configured model; did the API key stay out of every file. Used by tests/test_faults.py (in CI,
with planted faults that show each count can fail) and benchmarks/fault_suite.py (more runs, a
table).
"""

from __future__ import annotations

import collections
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import linreg_script
from openai_server import FAULTS, OpenAIServer, request_key

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore, TrialState
from llmopt.seeding import derive_seed, stream
from llmopt.store import CallRecord, StepRecord
from problems.linear_regression.problem import LinearRegression

MODEL = "openai/scripted-model"
SECRET = "sk-llmopt-FAULT-SUITE-0123456789abcdef"

Key = tuple[str, int]  # a request's (prompt, seed): a proposal's request, whichever attempt it was


@dataclass(frozen=True)
class Evidence:
    """What the run must have produced, from outside its store: the server's log, the seed, the
    problem's starting solutions, and the calls the optimizer counted (None: the run raised)."""

    seed: int
    starts: int  # trials of step 0: the problem's starting solutions
    requests: tuple[Key, ...]  # every request the server received, in arrival order
    answered: collections.Counter[Key]  # well-formed 200 replies the client could read
    models: tuple[str, ...]  # the model each request named
    injected: collections.Counter[str]
    counted_calls: int | None

    @classmethod
    def of(cls, server: OpenAIServer, seed: int, starts: int, counted_calls: int | None) -> "Evidence":
        return cls(seed, starts, tuple(request_key(r) for r in server.requests), collections.Counter(server.answered),
                   tuple(str(r.get("model")) for r in server.requests), collections.Counter(server.injected),
                   counted_calls)

    def asked_numbers(self) -> set[int]:
        """The trial numbers whose proposal the server was asked for: each request's seed is
        ``derive_seed(seed, "llm", number)``. Every number is a start or made a request, so the
        numbers are below starts + requests."""
        by_seed = {derive_seed(self.seed, "llm", n): n for n in range(self.starts + len(self.requests) + 1)}
        return {by_seed[s] for _, s in self.requests if s in by_seed}


@dataclass
class Outcome:
    fault: str
    seed: int
    injected: int = 0
    requests: int = 0
    stop_reason: str | None = None  # None: the run raised
    crash: str | None = None
    trials: int = 0
    lost: int = 0  # trial numbers the run took and did not record (gaps, and after the highest recorded)
    duplicated: int = 0  # trial numbers recorded twice, or one solution scored twice
    unrecorded: int = 0  # requests answered (or failed) with no call recorded that way
    unanswered: int = 0  # calls recorded that the server did not serve that way (e.g. a call recorded twice)
    uncalled: int = 0  # LLM trials without their recorded call
    miscounted: int = 0  # calls in the store minus calls the optimizer counted (signed)
    states: dict[str, int] = field(default_factory=dict)
    swapped_model: int = 0  # requests for another model
    leaked: list[str] = field(default_factory=list)  # files holding the API key
    invalid_without_text: int = 0  # INVALID trials whose reply was not kept
    evidence: Evidence | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return (self.crash is None and self.lost == 0 and self.duplicated == 0 and self.unrecorded == 0
                and self.unanswered == 0 and self.uncalled == 0 and self.miscounted == 0
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
    problem = LinearRegression(seed=seed)
    starts = len(problem.initial_solutions(stream(seed, "start")))
    counted: int | None = None
    with OpenAIServer(linreg_script, plan=plan, slow_s=timeout_s + 1.0) as server:
        with RunStore(path) as store:
            llm = LLM.from_model(MODEL, api_base=server.api_base, api_key=SECRET, num_retries=num_retries,
                                 timeout_s=timeout_s, concurrency=4, max_tokens=256)
            try:
                opt = Optimizer(problem, LLMProposer(llm, structured="off"), seed=seed, store=store, name="run",
                                budget=budget or Budget(max_steps=steps, stop_when_solved=False))
                out.stop_reason = opt.run().stop_reason.value
                counted = opt.usage.calls
            except Exception:  # the audit's point: this must never happen
                out.crash = traceback.format_exc(limit=3)
        out.evidence = Evidence.of(server, seed, starts, counted)
    with RunStore(path, readonly=True) as store:
        audit(store, out.evidence, out)
    files = [f for p in workdir.iterdir() if p.name.startswith(path.name)  # the store, journals, run locks
             for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    out.leaked = [str(f.relative_to(workdir)) for f in files if SECRET.encode() in f.read_bytes()]
    return out


def audit(store: RunStore, evidence: Evidence, out: Outcome) -> None:
    """Fill ``out``'s counts from the store of run ``run``, checked against ``evidence``."""
    out.injected, out.requests = sum(evidence.injected.values()), len(evidence.requests)
    out.swapped_model = sum(1 for m in evidence.models if m != MODEL.split("/", 1)[1])
    run = store.find_run("run")
    rows = store.trials(run.id) if run else []
    steps = store.steps(run.id) if run else []
    calls = store.calls(run.id) if run else []
    numbers = [r.number for r in rows]
    out.trials = len(rows)
    out.lost = len(expected_numbers(evidence, steps, calls, numbers, started=run is not None) - set(numbers))
    keys = [r.key for r in rows if r.state is TrialState.COMPLETE]
    out.duplicated = (len(numbers) - len(set(numbers))) + (len(keys) - len(set(keys)))
    for r in rows:
        out.states[r.state.value] = out.states.get(r.state.value, 0) + 1
    out.invalid_without_text = sum(1 for r in rows if r.state is TrialState.INVALID and r.raw is None)
    out.unrecorded, out.unanswered = match_calls(evidence, steps, calls)
    with_call = {(c.number, c.step) for c in calls if c.role == "optimizer"}
    out.uncalled = sum(1 for r in rows if r.source.startswith("llm:") and (r.number, r.step) not in with_call)
    if evidence.counted_calls is not None and run is not None:
        out.miscounted = store.usage(run.id).calls - evidence.counted_calls


def expected_numbers(evidence: Evidence, steps: list[StepRecord], calls: list[CallRecord], numbers: list[int],
                     *, started: bool) -> set[int]:
    """Every trial number the run took: no gap below the highest recorded; the starting solutions;
    each step's numbers up to the next step's first; every number with a recorded call; every
    number whose proposal the server was asked for (the last step's last trials included)."""
    expected = set(range(max(numbers) + 1)) if numbers else set()
    if started:
        expected |= set(range(evidence.starts))
    firsts = [s.first_number for s in steps]
    for first, following in zip(firsts, firsts[1:]):
        expected |= set(range(first, following))
    expected |= {c.number for c in calls}
    return expected | evidence.asked_numbers()


def match_calls(evidence: Evidence, steps: list[StepRecord], calls: list[CallRecord]) -> tuple[int, int]:
    """(unrecorded, unanswered), matched request by request on (prompt, seed). Each request the
    server answered is one successful call, and each request it received but never answered (every
    attempt faulted or timed out) one failed call; a fresh run hits no cache. Unrecorded: what the
    server served and the store lacks; unanswered: what the store holds and the server never served
    (a call recorded twice, a failure the server answered, a call never asked). Never netted out."""
    prompts = {s.step: s.prompt for s in steps}
    ok: collections.Counter[Key] = collections.Counter()
    failed: collections.Counter[Key] = collections.Counter()
    for c in calls:
        key = (c.prompt if c.prompt is not None else prompts.get(c.step) or "", c.seed)
        (ok if c.error is None else failed)[key] += 1
    want_ok = collections.Counter({k: n for k, n in evidence.answered.items() if n})
    want_failed = collections.Counter({k: 1 for k in set(evidence.requests) if not evidence.answered[k]})
    unrecorded = (want_ok - ok) + (want_failed - failed)
    unanswered = (ok - want_ok) + (failed - want_failed)
    return sum(unrecorded.values()), sum(unanswered.values())


def table(outcomes: list[Outcome]) -> list[list[Any]]:
    rows: list[list[Any]] = [["fault", "runs", "requests", "injected", "completed", "stopped (reason)", "crashes",
                              "trials", "lost", "duplicated", "unrecorded", "unanswered", "uncalled", "miscounted",
                              "model swaps", "key leaks"]]
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
                     *(sum(getattr(o, name) for o in group) for name in
                       ("lost", "duplicated", "unrecorded", "unanswered", "uncalled")),
                     sum(abs(o.miscounted) for o in group), sum(o.swapped_model for o in group),
                     sum(len(o.leaked) for o in group)])
    return rows
