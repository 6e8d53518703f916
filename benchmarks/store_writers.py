"""Trials written per second into a SQLite and a PostgreSQL store by 1 and by 8 writer processes.

    python benchmarks/store_writers.py [--trials 2000] [--writers 1 8] [--postgres URL]

Each writer process opens the store, creates a run of its own and adds ``--trials`` trials to it,
one ``add_trial`` (one short transaction) each, as the optimizer records them; the writers start
together (a barrier) and the rate is all their trials over the slowest one's time. Without
``--postgres`` a throwaway PostgreSQL server is started as the tests start theirs
(tests/pg_server.py: fsync off, so its numbers are the server's and the protocol's, not the disk's;
the SQLite store keeps its own settings, WAL with synchronous=NORMAL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llmopt.experiments.report import format_table  # noqa: E402
from llmopt.history import Trial, TrialState  # noqa: E402
from llmopt.store import open_store  # noqa: E402


def writer(location: str, index: int, trials: int, barrier: Any, times: Any) -> None:
    """One process: its own run, ``trials`` trials, one transaction each; its seconds into ``times``."""
    with open_store(location) as store:
        run = store.create_run(f"w{index}-{os.getpid()}", "bench", {}, {})
        barrier.wait()
        start = time.perf_counter()
        for number in range(trials):
            store.add_trial(run.id, Trial(number=number, step=number // 8, state=TrialState.COMPLETE, source="bench",
                                          text=f"[{number}, {index}]", key=(number, index), value=number / 3))
        times[index] = time.perf_counter() - start
        store.set_status(run.id, "finished")


def measure(location: str, writers: int, trials: int) -> tuple[float, float]:
    """(seconds, trials per second) of ``writers`` processes writing ``trials`` trials each."""
    ctx = multiprocessing.get_context("fork")
    barrier, times = ctx.Barrier(writers), ctx.Array("d", writers)
    procs = [ctx.Process(target=writer, args=(location, i, trials, barrier, times)) for i in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a writer failed on {location}")
    seconds = max(times)
    return seconds, writers * trials / seconds


def table(stores: dict[str, str], counts: list[int], trials: int) -> str:
    rows = [["store", "writers", "trials", "seconds", "trials/s"]]
    for kind, location in stores.items():
        for writers in counts:
            seconds, rate = measure(location, writers, trials)
            rows.append([kind, str(writers), str(writers * trials), f"{seconds:.2f}", f"{rate:,.0f}"])
    return format_table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="trials per writer (default %(default)s)")
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 8], help="writer counts (default 1 8)")
    ap.add_argument("--postgres", help="a postgresql:// URL of an empty database (default: a throwaway server)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmopt-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="llmopt-bench-pg-") as pg_root:
        server = None
        if args.postgres is None:
            from pg_server import Server, find_bin

            bindir = find_bin()
            if bindir is None:
                raise SystemExit("no PostgreSQL server programs (initdb): give --postgres URL")
            server = Server(bindir, Path(pg_root))
        try:
            url = args.postgres or server.new_database("bench")  # type: ignore[union-attr]
            print(table({"sqlite": str(Path(tmp) / "bench.db"), "postgresql": url}, args.writers, args.trials))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
