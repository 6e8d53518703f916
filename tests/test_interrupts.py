"""Interruptions: SIGKILL at random moments, Ctrl-C, and two processes on one store."""

from __future__ import annotations

import os
import random
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import linreg_script
from openai_server import OpenAIServer
from test_resume import SCRIPT, reference, run_script, snapshot  # noqa: F401  (reference is a fixture)

from llmopt import RunStore

ROOT = Path(__file__).resolve().parents[1]


def spawn(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED="random", **kw.pop("env", {}))
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, **kw)


def wait_for_trials(store: Path, name: str, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=5) as db:
                    if db.execute("SELECT count(*) FROM trials t JOIN runs r ON r.id = t.run_id WHERE r.name = ?",
                                  (name,)).fetchone()[0] >= at_least:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"run {name} did not record {at_least} trials in {timeout} s")


@pytest.mark.parametrize("draw", range(5))
def test_sigkill_at_a_random_moment_then_resume(tmp_path: Path, reference: tuple, draw: int) -> None:
    """Killed while calls are in flight, between steps or mid-write: the resumed run is the reference."""
    store = tmp_path / "runs.db"
    proc = spawn(str(SCRIPT), "--store", str(store), "--latency", "0.1")  # about 2 s of calls
    wait_for_trials(store, "run", 1)
    time.sleep(random.Random(draw).uniform(0.0, 1.4))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after it finished
    before = snapshot(store)[0] if store.exists() else []
    resumed = run_script(store, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    trials, calls, run = snapshot(store)
    assert set(before) <= set(trials)  # nothing lost
    assert (trials, calls) == reference[:2] and run == reference[2]  # nothing duplicated, same best


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    def slow(prompt: str, seed: int) -> str:
        time.sleep(0.15)
        return linreg_script(prompt, seed)

    store, full = tmp_path / "runs.db", tmp_path / "full.db"
    with OpenAIServer(slow) as server:
        args = ["-m", "llmopt.cli", "run", "linreg", "--model", "openai/slow", "--api-base", server.api_base,
                "--api-key-env", "FAKE_KEY", "--structured", "off", "--steps", "8", "--no-stop-when-solved",
                "--quiet", "--name", "r"]
        env = {"FAKE_KEY": "sk-fake-00000000"}
        proc = spawn(*args, "--store", str(store), env=env)
        wait_for_trials(store, "r", 10)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "resume with" in err and "--resume" in err
        hint = err.split("interrupted: resume with  ", 1)[1].strip()
        assert hint == shlex.join(["llmopt", *args[2:], "--store", str(store), "--resume"])  # every flag, to paste
        assert "interrupted" in out  # the summary names the stop reason
        with RunStore(store) as s:
            run = s.get_run("r")
            assert run.status == "interrupted" and run.stop_reason == "interrupted"
        resumed = spawn("-m", "llmopt.cli", *shlex.split(hint)[1:], env=env)  # the hint, pasted
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
        reference_run = spawn(*args, "--store", str(full), env=env)
        assert reference_run.wait(timeout=120) == 0, reference_run.stderr.read()
    assert snapshot(store, "r")[0] == snapshot(full, "r")[0]


def test_two_processes_on_one_store(tmp_path: Path, reference: tuple) -> None:
    store = tmp_path / "shared.db"
    procs = [spawn(str(SCRIPT), "--store", str(store), "--name", name, "--latency", "0.005") for name in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for name in ("a", "b"):
        assert snapshot(store, name)[0] == reference[0]
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_processes_one_run_name(tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    cli = ["-m", "llmopt.cli", "run", "linreg", "--proposer", "random", "--store", str(store), "--name", "same",
           "--quiet"]
    procs = [spawn(*cli) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "run 'same' already exists" in loser and "Traceback" not in loser
    with RunStore(store) as s:
        assert [r.name for r in s.runs()] == ["same"] and s.get_run("same").status == "finished"


def test_processes_opening_one_new_store_at_once(tmp_path: Path) -> None:
    """Found by CI: two processes creating one store at the same moment; one got 'database is locked'."""
    code = ("import sys, time; from llmopt import RunStore\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "with RunStore(sys.argv[1]) as s: s.create_run(sys.argv[3], 'p', {}, {})\n")
    for round_ in range(5):
        store = tmp_path / f"new-{round_}.db"
        start = time.time() + 1.5
        procs = [spawn("-c", code, str(store), str(start), f"run{i}") for i in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        with RunStore(store) as s:
            assert sorted(r.name for r in s.runs()) == ["run0", "run1", "run2", "run3"]
