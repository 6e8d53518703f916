"""What isolation costs, and what it contains (issue 27's measurements; results in docs/results/isolation.md).

    python benchmarks/isolation.py [--repeats 20] [--evaluations 24] [--skip-hostile]

Three tables:
1. overhead per evaluation of a trivial program: in-process (the program exec'd and its function
   called, no isolation at all) against ``evaluate_in_sandbox`` with an evaluator that reads the
   candidate with ``Candidate.load`` (supervisor + evaluator processes) and one that calls
   ``Candidate.run`` once (a third, candidate process);
2. evaluations per second with a thread pool of 1, 2, 4 calling ``evaluate_in_sandbox`` (as the
   optimizer's thread executor does);
3. the hostile candidates of llmopt/programs/_hostile.py (the tests' cases): outcome, reason and the
   time to contain each.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.programs._hostile import CASES, EVALUATORS  # noqa: E402
from llmopt.programs.isolation import isolation  # noqa: E402
from llmopt.programs.sandbox import Limits, evaluate_in_sandbox  # noqa: E402

TRIVIAL = "def solve(n):\n    return n * 2\n"
LIMITS = Limits(wall_s=10, cpu_s=10, memory_mb=1024)
HOSTILE_LIMITS = Limits(wall_s=3, cpu_s=3, memory_mb=256, file_mb=4, processes=16, output_kb=16)


class InProcess:
    """The no-isolation baseline: the candidate exec'd here, its functions called directly."""

    def __init__(self, source: str) -> None:
        self.module = types.ModuleType("candidate")
        exec(compile(source, "candidate.py", "exec"), self.module.__dict__)  # noqa: S102 - the baseline

    def run(self, function: str, *args: Any, timeout: float | None = None) -> Any:
        return getattr(self.module, function)(*args)

    def load(self) -> types.ModuleType:
        return self.module


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms of this process and its reaped children) per call."""
    walls = []
    cpu0 = _cpu()
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
    return 1000 * statistics.median(walls), 1000 * (_cpu() - cpu0) / repeats


def _cpu() -> float:
    own, kids = os.times(), os.times()
    return own.user + own.system + kids.children_user + kids.children_system


def overhead(repeats: int, evaluators: dict[str, str]) -> list[tuple[str, float, float]]:
    def in_process() -> Any:
        return InProcess(TRIVIAL).run("solve", 3)

    def sandboxed(spec: str) -> Callable[[], Any]:
        def call() -> Any:
            outcome = evaluate_in_sandbox(TRIVIAL, spec, limits=LIMITS)
            assert outcome.ok, outcome
        return call

    rows = [("in-process (exec + call, no isolation)", *_time(in_process, repeats * 50))]
    rows.append(("sandbox, evaluator uses Candidate.load (2 processes)", *_time(sandboxed(evaluators["load"]), repeats)))
    rows.append(("sandbox, evaluator calls Candidate.run once (3 processes)", *_time(sandboxed(evaluators["run"]), repeats)))
    return rows


def throughput(evaluations: int, spec: str) -> list[tuple[int, float, float]]:
    rows = []
    for workers in (1, 2, 4):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(lambda _: evaluate_in_sandbox(TRIVIAL, spec, limits=LIMITS),
                                     range(evaluations)))
        elapsed = time.perf_counter() - started
        assert all(o.ok for o in outcomes)
        rows.append((workers, evaluations / elapsed, statistics.median(o.wall_s for o in outcomes)))
    return rows


def hostile() -> list[tuple[str, str, str, float]]:
    """Each case with inputs of its own: writable targets, a loopback listener, a fake key."""
    os.environ["OPENAI_API_KEY"] = "sk-benchmark-fake-key"
    token = f"llmopt-hostile-bench-{os.getpid()}"
    targets = [f"/tmp/{token}", f"/dev/shm/{token}", f"/var/tmp/{token}", os.path.join(os.getcwd(), token)]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    inputs = {"writing outside its directory": {"args": [targets]},
              "opening a socket": {"args": ["127.0.0.1", listener.getsockname()[1]]}}
    rows = []
    for kind, case in CASES.items():
        started = time.perf_counter()
        outcome = evaluate_in_sandbox(case.source, case.spec(), limits=HOSTILE_LIMITS, kwargs=inputs.get(kind))
        elapsed = time.perf_counter() - started
        result = f"ok, score {outcome.value:g}" if outcome.ok else "FAILED"
        rows.append((kind, result, outcome.reason or f"(honest score; expected {case.value:g})", elapsed))
    listener.close()
    leaked = [t for t in targets if os.path.exists(t)]
    rows.append(("(files written outside, seen from here)", "LEAKED" if leaked else "none",
                 ", ".join(leaked) or "-", 0.0))
    return rows


def _evaluators(folder: str) -> dict[str, str]:
    path = os.path.join(folder, "trivial_evaluator.py")
    Path(path).write_text("def by_run(candidate):\n    return candidate.run('solve', 3)\n\n"
                          "def by_load(candidate):\n    return candidate.load().solve(3)\n")
    return {"run": f"{path}:by_run", "load": f"{path}:by_load"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--evaluations", type=int, default=24)
    parser.add_argument("--skip-hostile", action="store_true")
    args = parser.parse_args(argv)
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}; {_cpu_model()}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(isolation().describe())
    with tempfile.TemporaryDirectory() as folder:
        specs = _evaluators(folder)
        print("\n| evaluation of a trivial program | median wall ms | CPU ms (all processes) |\n|---|---:|---:|")
        for name, wall, cpu in overhead(args.repeats, specs):
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
        print("\n| threads | evaluations/s | median wall s of one |\n|---:|---:|---:|")
        for workers, rate, wall in throughput(args.evaluations, specs["run"]):
            print(f"| {workers} | {rate:.2f} | {wall:.3f} |")
    if not args.skip_hostile:
        print(f"\nhostile candidates, limits {HOSTILE_LIMITS.to_dict()}; evaluators in {EVALUATORS}")
        print("\n| hostile candidate | outcome | reason | time to contain s |\n|---|---|---|---:|")
        for kind, result, reason, elapsed in hostile():
            print(f"| {kind} | {result} | {reason.replace('|', '/')} | {elapsed:.2f} |")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
