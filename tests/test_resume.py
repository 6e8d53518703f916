"""Interrupted runs resume without losing or repeating anything; seeds reproduce across processes."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from harness import run_script, snapshot


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


def test_resume_twice_after_finishing_changes_nothing(tmp_path: Path, reference_run, reference: tuple) -> None:
    store = tmp_path / "runs.db"
    shutil.copyfile(reference_run()[0], store)  # a finished run (the reference's own process made it)
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
