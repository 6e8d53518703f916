"""The fault suite as a table: every model fault, then SIGKILL at random moments.

    python benchmarks/fault_suite.py --seeds 3 --kills 10

Part 1 runs OPRO on linear regression through litellm against the loopback test server with
one fault kind injected into 30% of its requests (tests/faults.py: 3 steps, 2 retries, 1 s
timeout), for each fault and seed, and audits each store. Part 2 starts the scripted run in a
subprocess, SIGKILLs it at a random moment (seeded), resumes it, and compares with an
uninterrupted run of the same seed: trials recorded before the kill and missing after it are
lost; trials beyond or different from the reference are duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from faults import FAULTS, run_scenario, table  # noqa: E402
from test_resume import SCRIPT, snapshot  # noqa: E402

from llmopt.experiments.report import format_table  # noqa: E402


def kill_and_resume(workdir: Path, draws: int, reference: tuple) -> list[str]:
    lost = duplicated = completed = crashes = mid_run = 0
    for draw in range(draws):
        store = workdir / f"kill-{draw}.db"
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--store", str(store), "--latency", "0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
        time.sleep(random.Random(draw).uniform(0.2, 1.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_run += proc.returncode == -signal.SIGKILL
        before = snapshot(store)[0] if store.exists() else []
        resumed = subprocess.run([sys.executable, str(SCRIPT), "--store", str(store), "--resume"],
                                 capture_output=True, text=True)
        if resumed.returncode != 0:
            crashes += 1
            continue
        trials, calls, run = snapshot(store)
        lost += len(set(before) - set(trials))
        duplicated += len(trials) - len(set(t[0] for t in trials)) + len(set(trials) - set(reference[0]))
        completed += (trials, calls, run) == reference
    return ["SIGKILL + resume", str(draws), f"{mid_run} mid-run", str(completed), "-", str(crashes), str(lost),
            str(duplicated)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--kills", type=int, default=10)
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        outcomes = [run_scenario(f, seed, workdir) for f in FAULTS for seed in range(args.seeds)]
        print(format_table(table(outcomes)))
        bad = [o for o in outcomes if not o.ok]
        for o in bad:
            print(f"\nFAILED AUDIT {o.fault} seed {o.seed}: {o}", file=sys.stderr)
        ref_store = workdir / "reference.db"
        subprocess.run([sys.executable, str(SCRIPT), "--store", str(ref_store)], check=True, capture_output=True)
        reference = snapshot(ref_store)
        print()
        print(format_table([["interruption", "runs", "killed", "identical to uninterrupted", "-", "crashes",
                             "trials lost", "duplicated"], kill_and_resume(workdir, args.kills, reference)]))
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
