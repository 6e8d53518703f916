"""Model faults over real HTTP: every kind injected into OPRO runs through litellm, audited.

See tests/faults.py for the scenario and the audit; benchmarks/fault_suite.py prints the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import SECRET, run_scenario
from openai_server import FAULTS

from llmopt import Budget, RunStore, TrialState


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_is_survived_and_accounted(fault: str, tmp_path: Path) -> None:
    out = run_scenario(fault, 0, tmp_path, steps=2)
    assert out.crash is None, out.crash
    assert out.injected > 0 and out.stop_reason in ("max_steps", "llm_failure")
    assert out.lost == 0 and out.duplicated == 0 and out.unaccounted == 0
    assert out.swapped_model == 0, "a retry asked for another model"
    assert not out.leaked and out.invalid_without_text == 0
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
    assert out.lost == out.duplicated == out.unaccounted == 0
