"""Interrupted runs resume without losing or repeating anything; seeds reproduce across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llmopt import RunStore

SCRIPT = Path(__file__).parent / "scripts" / "fake_run.py"
FIELDS = ("number", "step", "state", "source", "text", "value", "raw", "error", "duplicate_of")


def run_script(store: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED="random")
    return subprocess.run([sys.executable, str(SCRIPT), "--store", str(store), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def snapshot(store_path: Path, name: str = "run") -> tuple[list[tuple], list[tuple], dict]:
    with RunStore(store_path) as store:
        run = store.get_run(name)
        trials = [tuple(getattr(t, f) for f in FIELDS) for t in store.trials(run.id)]
        calls = [(c.number, c.seed, c.prompt_tokens, c.completion_tokens) for c in store.calls(run.id)]
        return trials, calls, {"status": run.status, "stop": run.stop_reason}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple:
    path = tmp_path_factory.mktemp("ref") / "ref.db"
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    return snapshot(path)


@pytest.mark.parametrize("kill_at", [3, 9, 40, 77, 131, 160])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, reference: tuple, kill_at: int) -> None:
    store = tmp_path / "runs.db"
    killed = run_script(store, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before, _, _ = snapshot(store)
    resumed = run_script(store, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    trials, calls, run = snapshot(store)
    ref_trials, ref_calls, ref_run = reference
    assert set(before) <= set(trials)  # nothing recorded before the kill was lost or changed
    assert [t[0] for t in trials] == sorted({t[0] for t in trials})  # no trial number twice
    assert trials == ref_trials  # same trials, same order, same values, same replies
    assert calls == ref_calls  # every call accounted once
    assert run == ref_run == {"status": "finished", "stop": "max_steps"}


def test_resume_twice_after_finishing_changes_nothing(tmp_path: Path, reference: tuple) -> None:
    store = tmp_path / "runs.db"
    assert run_script(store).returncode == 0
    assert run_script(store, "--resume").returncode == 0
    assert snapshot(store)[0] == reference[0]


def test_a_resumed_run_can_be_extended(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    assert run_script(store, "--steps", "3").returncode == 0
    assert run_script(store, "--steps", "6", "--resume").returncode == 0
    full = tmp_path / "full.db"
    assert run_script(full, "--steps", "6").returncode == 0
    assert snapshot(store)[0] == snapshot(full)[0]


@pytest.mark.parametrize("proposer", ["llm", "random"])
def test_same_seed_two_processes_identical_trials(tmp_path: Path, proposer: str) -> None:
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        assert run_script(path, "--seed", seed, "--proposer", proposer).returncode == 0
    assert snapshot(a)[0] == snapshot(b)[0]
    assert snapshot(a)[0] != snapshot(c)[0]


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    assert run_script(store, "--steps", "1").returncode == 0
    other = run_script(store, "--seed", "9", "--resume")
    assert other.returncode != 0 and "different settings" in other.stderr and "seed" in other.stderr
