"""Model faults over real HTTP: every kind injected into OPRO runs through litellm, audited.

See tests/faults.py for the scenario and the audit; benchmarks/fault_suite.py prints the table.
The planted faults at the end break a clean run's store the ways a recording bug would (a call
recorded twice, a trailing trial lost, a trial without its call...) and show that the audit, and
so this suite, fails on each.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Callable

import pytest
from faults import SECRET, Outcome, audit, run_scenario
from openai_server import FAULTS

from llmopt import Budget, RunStore, TrialState


def assert_accounted(out: Outcome) -> None:
    """What every fault scenario must show: nothing lost, doubled or unaccounted, exactly."""
    assert out.crash is None, out.crash
    assert out.lost == 0 and out.duplicated == 0, out
    assert out.unrecorded == 0 and out.unanswered == 0 and out.uncalled == 0 and out.miscounted == 0, out
    assert out.swapped_model == 0, "a retry asked for another model"
    assert not out.leaked and out.invalid_without_text == 0, out
    assert out.ok


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_is_survived_and_accounted(fault: str, tmp_path: Path) -> None:
    out = run_scenario(fault, 0, tmp_path, steps=2)
    assert_accounted(out)
    assert out.injected > 0 and out.stop_reason in ("max_steps", "llm_failure")
    assert out.requests < 200  # bounded: 2 steps x 8 proposals x 3 rounds x 3 attempts at most
    with RunStore(tmp_path / f"{fault}-0.db") as store:
        rows = store.trials(store.get_run("run").id)
    if fault in ("empty", "no-format", "huge"):
        assert any(r.state is TrialState.INVALID and (r.raw == "" or "weather" in r.raw or len(r.raw) > 100_000)
                   for r in rows)  # the reply is kept with the INVALID trial
    if fault == "leak":
        errors = [r.error for r in rows if r.state is TrialState.FAILED]
        assert errors and all(SECRET not in e for e in errors) and any("***" in e for e in errors)


def test_budgets_hold_under_faults(tmp_path: Path) -> None:
    """Calls are counted once whatever their retries cost; the call budget stops the run exactly."""
    out = run_scenario("500", 1, tmp_path, rate=0.5, budget=Budget(max_steps=100, max_calls=20, stop_when_solved=False))
    assert out.crash is None and out.stop_reason == "max_calls"
    with RunStore(tmp_path / "500-1.db") as store:
        calls = store.calls(store.get_run("run").id)
    assert len(calls) == 20 and out.requests <= 20 * 3  # each call: at most 1 try + 2 retries
    assert_accounted(out)


# --- planted faults: the audit must see each -----------------------------------------------------

@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Outcome]:
    """One clean, audited run (500s on 30% of the requests: retries, and every call recorded)."""
    workdir = tmp_path_factory.mktemp("clean")
    out = run_scenario("500", 0, workdir, steps=2)
    assert_accounted(out)
    return workdir / "500-0.db", out


def planted(clean: tuple[Path, Outcome], tmp_path: Path, plant: Callable[[sqlite3.Connection], None]) -> Outcome:
    """The clean run's store with ``plant`` applied to a copy, audited against the same evidence."""
    source, before = clean
    path = tmp_path / "planted.db"
    shutil.copy(source, path)
    db = sqlite3.connect(path, isolation_level=None)
    plant(db)
    db.close()
    out = Outcome(before.fault, before.seed, stop_reason=before.stop_reason, evidence=before.evidence)
    with RunStore(path, readonly=True) as store:
        assert before.evidence is not None
        audit(store, before.evidence, out)
    with pytest.raises(AssertionError):
        assert_accounted(out)  # the suite fails on it
    assert not out.ok  # and so does the benchmark
    return out


def last_llm_trial(db: sqlite3.Connection, state: str | None = None) -> int:
    sql = "SELECT max(number) FROM trials WHERE source LIKE 'llm:%'" + (f" AND state = '{state}'" if state else "")
    return db.execute(sql).fetchone()[0]


def test_the_clean_copy_audits_clean(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """The control for the planted faults below: copying and re-auditing alone finds nothing."""
    source, before = clean
    shutil.copy(source, tmp_path / "copy.db")
    out = Outcome(before.fault, before.seed, evidence=before.evidence)
    with RunStore(tmp_path / "copy.db", readonly=True) as store:
        assert before.evidence is not None
        audit(store, before.evidence, out)
    assert_accounted(out)
    assert out.trials == before.trials > before.evidence.starts and out.requests == before.requests


def test_a_call_recorded_twice_is_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """The same reply recorded again (as another item of its trial): one call the server never
    answered, one call the optimizer never counted. The old audit clamped this at zero."""
    def plant(db: sqlite3.Connection) -> None:
        number = last_llm_trial(db, "COMPLETE")
        db.execute("CREATE TEMP TABLE one AS SELECT * FROM calls WHERE number = ? AND role = 'optimizer'", (number,))
        db.execute("UPDATE one SET item = 1")
        db.execute("INSERT INTO calls SELECT * FROM one")

    out = planted(clean, tmp_path, plant)
    assert (out.unanswered, out.miscounted) == (1, 1)
    assert out.unrecorded == out.lost == out.uncalled == 0


def test_a_lost_trailing_trial_is_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """The run's last trial missing (nothing after it to leave a gap), its call still recorded:
    the old audit counted lost trials only below the highest recorded number."""
    out = planted(clean, tmp_path, lambda db: db.execute("DELETE FROM trials WHERE number = ?", (last_llm_trial(db),)))
    assert out.lost == 1 and out.trials == clean[1].trials - 1
    assert out.unrecorded == out.unanswered == out.uncalled == out.miscounted == 0


def test_a_lost_trailing_trial_and_its_call_are_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """The last trial and its call both missing: only the server's log says the run made it."""
    def plant(db: sqlite3.Connection) -> None:
        number = last_llm_trial(db)
        db.execute("DELETE FROM trials WHERE number = ?", (number,))
        db.execute("DELETE FROM calls WHERE number = ?", (number,))

    out = planted(clean, tmp_path, plant)
    assert (out.lost, out.unrecorded, out.miscounted) == (1, 1, -1)
    assert out.unanswered == out.uncalled == 0


def test_a_lost_trailing_start_is_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """A store that kept only step 0, without its last starting solution: the starts are known from
    the problem, the LLM trials from the server's log, not from the store."""
    def plant(db: sqlite3.Connection) -> None:
        last_start = db.execute("SELECT max(number) FROM trials WHERE step = 0").fetchone()[0]
        db.execute("DELETE FROM trials WHERE step >= 1")
        db.execute("DELETE FROM calls")
        db.execute("DELETE FROM steps WHERE step >= 1")
        db.execute("DELETE FROM trials WHERE number = ?", (last_start,))

    out = planted(clean, tmp_path, plant)
    evidence = clean[1].evidence
    assert evidence is not None and evidence.counted_calls
    assert out.lost == clean[1].trials - (evidence.starts - 1)  # the start and every LLM trial
    assert out.unrecorded == evidence.counted_calls and out.miscounted == -evidence.counted_calls


def test_a_trial_without_its_call_is_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """An LLM trial whose call was never recorded: a reply unrecorded, a trial uncalled, a call
    the optimizer counted that the store lacks."""
    def plant(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM calls WHERE number = ?", (last_llm_trial(db, "COMPLETE") - 1,))

    out = planted(clean, tmp_path, plant)
    assert (out.uncalled, out.unrecorded, out.miscounted) == (1, 1, -1)
    assert out.lost == out.unanswered == 0


def test_a_gap_and_a_failure_the_server_never_served_are_counted(clean: tuple[Path, Outcome], tmp_path: Path) -> None:
    """A trial lost in the middle, and an answered call recorded as failed: each counted once."""
    def plant(db: sqlite3.Connection) -> None:
        first = db.execute("SELECT min(number) FROM trials WHERE step = 1").fetchone()[0]
        db.execute("DELETE FROM trials WHERE number = ?", (first,))
        db.execute("UPDATE calls SET error = 'APIError: invented' WHERE number = ?", (first + 1,))

    out = planted(clean, tmp_path, plant)
    assert (out.lost, out.unrecorded, out.unanswered) == (1, 1, 1)
