"""Step wall time with 8 proposals at concurrency 1, 4 and 8, as a ratio to one call's latency.

    python benchmarks/concurrency.py [--servers both] [--latency 0.5] [--steps 4] [--seeds 2]

OPRO on linear regression (8 proposals a step, one round, a fresh store per run so no reply is
a cache hit) against two OpenAI-compatible servers on 127.0.0.1, through litellm
(``openai/<name>`` + ``api_base``), the path Ollama, vLLM and llama.cpp-server users take:

* ``fake``: a threaded server (tests/openai_server.py) whose every reply takes ``--latency``
  seconds. It has as many parallel slots as there are requests, so it isolates llmopt's and
  litellm's own concurrency. Goal: a step within 1.3x of one call at concurrency 8.
* ``llama``: llama-cpp-python's server (``python -m llama_cpp.server``) with the embedded
  SmolLM2 weights, one thread. It has one slot: one model, one context, a global lock around
  every request (llama_cpp/server/app.py), so concurrent calls wait in its queue and concurrency
  cannot shorten a step. It keeps the last prompt's KV cache (prefix match), so only a step's
  first call evaluates the meta-prompt; the other seven only generate.

Columns: "raw HTTP call" is one POST with urllib (the server alone); "one call via llmopt" is
``LLM.complete`` with one seed (llmopt + litellm + HTTP + server); both are medians over the
prompts of the concurrency-1 run, one cold call each. "step" is the median time between
``on_step`` callbacks (meta-prompt, 8 calls, parsing, scoring, store writes). "call in step" is
the median latency of the calls inside steps (it grows when the server queues them). "llmopt
outside calls" is the step time not covered by any call, per trial. Below the table: llmopt's
overhead per trial with an instant in-process model (benchmarks/overhead.py's backend).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fakes import linreg_script  # noqa: E402
from openai_server import OpenAIServer  # noqa: E402
from overhead import instant  # noqa: E402

from llmopt import LLM, Budget, LLMProposer, Optimizer, RunStore  # noqa: E402
from llmopt.experiments.report import format_table  # noqa: E402
from problems.linear_regression.problem import LinearRegression  # noqa: E402

CONCURRENCY = (1, 4, 8)
PROPOSALS = 8


@contextmanager
def fake_server(latency_s: float, backlog: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The threaded loopback server; every reply sleeps ``latency_s`` on its own thread.

    socketserver's default listen backlog is 5: when 8 connections arrive at once the kernel may
    drop a SYN and the client's retry comes a second later, a stall no real server (uvicorn's
    backlog is 2048) has. The test server now listens with 128; ``--backlog 5`` shows the stall.
    """
    def script(prompt: str, seed: int) -> str:
        time.sleep(latency_s)
        return linreg_script(prompt, seed)

    with OpenAIServer(script) as server:
        server.httpd.socket.listen(backlog)
        yield server.api_base, "openai/fake", {"structured": "off"}


@contextmanager
def llama_server(threads: int, log_dir: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """llama-cpp-python's server with the embedded weights, as tests/conftest.py starts it (but with
    ``threads`` for the prompt too: its default of 2 spins against any other load on 2 cores)."""
    from llmopt.llm.embedded import model_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "llmopt.llm.embedded_server", "--model", str(model_path("smollm2")), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "2048",
           "--model_alias", "smollm2"]
    log = log_dir / "llama-server.log"
    with open(log, "wb") as sink:  # a pipe would fill with llama.cpp's logging and stall the server
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 90
            while not _answers(f"{base}/models"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
            yield base, "openai/smollm2", {"structured": "json_object"}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def one_run(api_base: str, model: str, structured: str, concurrency: int, seed: int, steps: int,
            max_tokens: int, store_path: str) -> dict[str, Any]:
    """One OPRO run; per-step wall times, calls and the time no call was in flight."""
    llm = LLM.from_model(model, api_base=api_base, api_key="sk-no-key", concurrency=concurrency,
                         max_tokens=max_tokens)
    proposer = LLMProposer(llm, structured=structured)  # type: ignore[arg-type]
    store = RunStore(store_path)
    opt = Optimizer(LinearRegression(seed=seed), proposer, seed=seed, store=store, name=f"c{concurrency}-s{seed}",
                    budget=Budget(max_steps=steps, stop_when_solved=False), proposals_per_step=PROPOSALS,
                    max_rounds=1)
    marks = [time.time()]
    result = opt.run(on_step=lambda _: marks.append(time.time()))
    assert opt.run_record is not None
    rows = store.calls(opt.run_record.id)
    prompts = [s.prompt for s in store.steps(opt.run_record.id) if s.prompt]
    store.close()
    walls, outside, per_step_calls = [], [], []
    for step, (start, end) in enumerate(itertools.pairwise(marks), start=1):
        calls = [r for r in rows if r.step == step]
        per_step_calls.append(len(calls))
        walls.append(end - start)
        busy = _union([(r.created - r.latency_s, r.created) for r in calls])
        outside.append((end - start - busy) / max(len(calls), 1))
    return {"walls": walls, "outside": outside, "calls": per_step_calls, "prompts": prompts,
            "call_latency": [r.latency_s for r in rows], "cache_hits": result.usage.cache_hits,
            "failed": result.usage.failed_calls, "format": proposer.config()["response_format"]}


def _union(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the spans."""
    total, reach = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        if hi > reach:
            total += hi - max(lo, reach)
            reach = hi
    return total


def post(api_base: str, model: str, prompt: str, seed: int, fmt: dict[str, Any] | None, max_tokens: int) -> None:
    """One chat completion over plain HTTP (urllib): the server alone, no llmopt, no litellm."""
    payload: dict[str, Any] = {"model": model.split("/", 1)[1], "max_tokens": max_tokens, "temperature": 1.0,
                               "messages": [{"role": "user", "content": prompt}], "seed": seed}
    if fmt is not None:
        payload["response_format"] = fmt
    request = urllib.request.Request(f"{api_base}/chat/completions", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        reply.read()


def forget(api_base: str, model: str) -> None:
    """A one-token filler call: llama.cpp's server now holds no meta-prompt in its KV cache."""
    post(api_base, model, "Say hi.", 1, None, 1)


def single_calls(api_base: str, model: str, prompts: list[str], fmt: dict[str, Any] | None,
                 max_tokens: int) -> tuple[float, float]:
    """Median latency of one cold call per prompt: raw HTTP, then through llmopt (no cache).

    Cold as a step's first call is: llama.cpp's server reuses the KV cache of the prompt it saw
    last, so a prompt is never measured right after itself (a filler call goes between).
    """
    llm = LLM.from_model(model, api_base=api_base, api_key="sk-no-key", concurrency=1, max_tokens=max_tokens)
    raw, via, last = [], [], prompts[-1]
    for out, base in ((raw, 10_000), (via, 20_000)):
        for i, prompt in enumerate(prompts):
            if prompt == last:
                forget(api_base, model)
            started = time.perf_counter()
            if out is raw:
                post(api_base, model, prompt, base + i, fmt, max_tokens)
            else:
                [done] = llm.complete([{"role": "user", "content": prompt}], [base + i], response_format=fmt)
                if done.text is None:
                    raise RuntimeError(f"single call failed: {done.error}")
            out.append(time.perf_counter() - started)
            last = prompt
    return statistics.median(raw), statistics.median(via)


def bench_server(name: str, server: Any, args: argparse.Namespace, work: Path) -> list[list[Any]]:
    rows = []
    with server as (api_base, model, kw):
        # warm-up: litellm's import and first client, the server's first request
        LLM.from_model(model, api_base=api_base, api_key="sk-no-key", max_tokens=8).complete(
            [{"role": "user", "content": "Say hi."}], [1])
        runs: dict[int, list[dict[str, Any]]] = {}
        for k in CONCURRENCY:
            runs[k] = []
            for seed in range(args.seeds):
                forget(api_base, model)  # runs with one seed share prompts: start each one cold
                runs[k].append(one_run(api_base, model, kw["structured"], k, seed, args.steps, args.max_tokens,
                                       str(work / f"{name}-c{k}-s{seed}.db")))
            print(f"  {name}: concurrency {k} done", file=sys.stderr, flush=True)
        first = runs[1]
        prompts = [p for r in first for p in r["prompts"]]
        raw, via = single_calls(api_base, model, prompts, first[0]["format"], args.max_tokens)
    for k in CONCURRENCY:
        def flat(key: str, k: int = k) -> list[Any]:
            return [x for r in runs[k] for x in r[key]]

        step = statistics.median(flat("walls"))
        calls = sorted(set(flat("calls")))
        hits, failed = sum(r["cache_hits"] for r in runs[k]), sum(r["failed"] for r in runs[k])
        rows.append([name, k, f"{raw:.3f} s", f"{via:.3f} s", f"{step:.3f} s", f"{step / via:.2f}x",
                     "/".join(map(str, calls)) + (f" ({hits} cached, {failed} failed)" if hits or failed else ""),
                     f"{statistics.median(flat('call_latency')):.3f} s",
                     f"{statistics.median(flat('outside')) * 1e3:.1f} ms"])
    return rows


def in_process_overhead(steps: int, work: Path) -> float:
    """ms per trial with an instant in-process backend: llmopt alone (no litellm, no HTTP)."""
    def go(path: Path, n: int) -> tuple[float, int]:
        store = RunStore(path)
        opt = Optimizer(LinearRegression(seed=0), LLMProposer(LLM.from_model("bench/instant", backend=instant)),
                        store=store, budget=Budget(max_steps=n, stop_when_solved=False))
        started = time.perf_counter()
        result = opt.run()
        elapsed = time.perf_counter() - started
        store.close()
        return elapsed, len(result.history)

    go(work / "warm.db", 5)
    elapsed, trials = go(work / "instant.db", steps)
    return elapsed / trials * 1e3


def bench(args: argparse.Namespace, work: Path) -> None:
    load_before = os.getloadavg()[0]
    table: list[list[Any]] = [["server", "concurrency", "raw HTTP call", "one call via llmopt", "step (8 calls)",
                               "step / one call", "calls/step", "call in step", "llmopt outside calls/trial"]]
    if args.servers in ("fake", "both"):
        table += bench_server(f"fake {args.latency:g} s, parallel slots", fake_server(args.latency, args.backlog),
                              args, work)
    if args.servers in ("llama", "both"):
        table += bench_server(f"llama_cpp.server, 1 slot, {args.llama_threads} thread",
                              llama_server(args.llama_threads, work), args, work)
    overhead = in_process_overhead(100, work)
    print(format_table(table))
    print(f"\nllmopt overhead per trial with an instant in-process model: {overhead:.2f} ms")
    print(f"{args.seeds} runs x {args.steps} steps per row; {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, litellm {version('litellm')}")
    print(f"1-minute load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f} "
          "(llama.cpp timings are only meaningful on an otherwise idle machine)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", choices=("fake", "llama", "both"), default="both")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds every fake-server reply takes")
    ap.add_argument("--backlog", type=int, default=128, help="the fake server's listen backlog")
    ap.add_argument("--steps", type=int, default=4, help="steps per run")
    ap.add_argument("--seeds", type=int, default=2, help="runs per (server, concurrency)")
    ap.add_argument("--max-tokens", type=int, default=48, help="max tokens per reply")
    ap.add_argument("--llama-threads", type=int, default=1, help="llama.cpp threads (1 is robust on 2 cores)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmopt-concurrency-") as tmp:
        bench(args, Path(tmp))


if __name__ == "__main__":
    main()
