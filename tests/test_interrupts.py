"""Interruptions: SIGKILL from outside at recorded points, Ctrl-C, and two processes on one store."""

from __future__ import annotations

import shlex
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from fakes import linreg_script
from harness import FAKE_RUN, run_script, snapshot, spawn, wait_for_trials, wait_until

from llmopt import RunStore
from llmopt.cli import main


@pytest.mark.parametrize("after", [1, 20, 40, 60, 80])
def test_sigkill_from_outside_then_resume(tmp_path: Path, reference: tuple, after: int) -> None:
    """Killed from outside once ``after`` of its 96 trials are recorded, while calls are in flight,
    between steps or mid-write: the resumed run is the reference."""
    store = tmp_path / "runs.db"
    proc = spawn(str(FAKE_RUN), "--store", str(store), "--latency", "0.1")  # about 2 s of calls
    wait_for_trials(store, "run", after, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after it finished
    before = snapshot(store)[0] if store.exists() else []
    resumed = run_script(store, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    trials, calls, run = snapshot(store)
    assert set(before) <= set(trials)  # nothing lost
    assert (trials, calls) == reference[:2] and run == reference[2]  # nothing duplicated, same best


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path, openai_server, monkeypatch) -> None:
    latency = {"s": 0.15}  # the interrupted run's calls are slow, so that Ctrl-C lands mid-run

    def slow(prompt: str, seed: int) -> str:
        time.sleep(latency["s"])
        return linreg_script(prompt, seed)

    store, full = tmp_path / "runs.db", tmp_path / "full.db"
    server = openai_server(slow)
    args = ["-m", "llmopt.cli", "run", "linreg", "--model", "openai/slow", "--api-base", server.api_base,
            "--api-key-env", "FAKE_KEY", "--structured", "off", "--steps", "4", "--no-stop-when-solved",
            "--quiet", "--name", "r"]
    env = {"FAKE_KEY": "sk-fake-00000000"}
    proc = spawn(*args, "--store", str(store), env=env)
    wait_for_trials(store, "r", 10, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    latency["s"] = 0.0  # the resumed and the uninterrupted runs need no wait
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume with" in err and "--resume" in err
    hint = err.split("interrupted: resume with  ", 1)[1].strip()
    assert hint == shlex.join(["llmopt", *args[2:], "--store", str(store), "--resume"])  # every flag, to paste
    assert "interrupted" in out  # the summary names the stop reason
    with RunStore(store) as s:
        run = s.get_run("r")
        assert run.status == "interrupted" and run.stop_reason == "interrupted"
    monkeypatch.setenv("FAKE_KEY", env["FAKE_KEY"])  # the resumed and the uninterrupted run, in this process
    assert main(shlex.split(hint)[1:]) == 0  # the hint, pasted
    assert main([*args[2:], "--store", str(full)]) == 0
    assert snapshot(store, "r")[0] == snapshot(full, "r")[0]


def test_two_processes_on_one_store(tmp_path: Path, reference: tuple) -> None:
    store = tmp_path / "shared.db"
    procs = [spawn(str(FAKE_RUN), "--store", str(store), "--name", name, "--latency", "0.005") for name in ("a", "b")]
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


@pytest.mark.slow
def test_processes_opening_one_new_store_at_once(tmp_path: Path) -> None:
    """Found by CI: two processes creating one store at the same moment; one got 'database is locked'.
    Five rounds of four processes creating one new store together: four children, each racing in
    every round (a new store a round), so the race is run five times for four imports, not twenty."""
    code = ("import sys, time; from pathlib import Path; from llmopt import RunStore\n"
            "base, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
            "for r in range(rounds):\n"
            "    folder = base / f'round-{r}'\n"
            "    (folder / (me + '.ready')).touch()\n"
            "    while not (folder / 'go').exists(): time.sleep(0.001)\n"  # all four start writing within a millisecond
            "    with RunStore(folder / 'new.db') as s: s.create_run(me, 'p', {}, {})\n")
    rounds = 5
    folders = [tmp_path / f"round-{round_}" for round_ in range(rounds)]
    for folder in folders:
        folder.mkdir()
    procs = [spawn("-c", code, str(tmp_path), f"run{i}", str(rounds)) for i in range(4)]

    def ready(folder: Path) -> bool:
        failed = [p for p in procs if p.poll() not in (None, 0)]
        assert not failed, failed[0].stderr.read()[-2000:]  # a child that died would never be ready
        return len(list(folder.glob("*.ready"))) == 4

    for folder in folders:
        wait_until(lambda f=folder: ready(f), f"four processes ready in {folder.name}")
        (folder / "go").touch()  # the starting gun: a barrier, not a guess at how long four imports take
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for folder in folders:
        with RunStore(folder / "new.db") as s:
            assert sorted(r.name for r in s.runs()) == ["run0", "run1", "run2", "run3"]
