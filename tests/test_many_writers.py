"""Many writers, nothing lost: a grid's cells on several processes (and on Dask workers) writing one
store, SQLite and PostgreSQL, while workers are SIGKILLed mid-run. Afterwards every cell's trials
and LLM calls are those of an uninterrupted sequential grid: every finished trial once, every call
once, every killed cell resumed to the same trials.

Kill points are deterministic per process: the objective SIGKILLs its own process at one of its
kill points (its 2nd, 5th or 9th evaluation in that process) while a kill token is left; which
cells die depends on which get there first, which is the point (any worker, any time). The audit
that compares the stores is itself shown to catch planted faults (a lost trial, a call recorded
twice, a changed value, an unfinished cell), so these tests can fail.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

from llmopt.cli import main
from llmopt.store import open_store

KEY = "sk-many-writers-000000"
#: columns that say when or how fast, not what: never compared
TIMING = {"created", "latency_s", "cache_hit", "started"}

OBJECTIVE = '''
import itertools, os, signal

_calls = itertools.count(1)

def f(s):
    return (s["x"] - 3) ** 2 + (s["y"] + 1) ** 2

def f_kill(s):
    """f; at a kill point of this process, SIGKILL it while a kill token is left (each token once)."""
    n, tokens = next(_calls), os.environ.get("MW_TOKENS")
    if tokens and n in (2, 5, 9):
        for i in range(int(os.environ.get("MW_KILLS", "0"))):
            try:
                os.close(os.open(os.path.join(tokens, f"kill-{i}"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            os.kill(os.getpid(), signal.SIGKILL)
    return f(s)
'''


def pair_script(prompt: str, seed: int) -> str:
    """The model: a JSON point of the grid's space, a function of the prompt and the seed only."""
    h = sum(map(ord, prompt[-400:])) + 7 * seed
    return json.dumps({"x": h % 21 - 10, "y": (h // 21) % 21 - 10})


def write_grid(tmp_path: Path, api_base: str | None, seeds: int) -> Path:
    (tmp_path / "space.json").write_text(json.dumps({
        "type": "object", "required": ["x", "y"],
        "properties": {"x": {"type": "integer", "minimum": -10, "maximum": 10},
                       "y": {"type": "integer", "minimum": -10, "maximum": 10}}}))
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    model = (f'[configs.opro]\nproposer = "llm"\nmodel = "openai/fake"\napi-base = "{api_base}"\napi-key-env = "MW_KEY"\n'
             'structured = "off"\nproposals = 3\n') if api_base else '[configs.more]\nproposals = 5\n'
    path = tmp_path / "mw.toml"
    path.write_text(f"""
name = "mw"
seeds = {seeds}
[defaults]
proposer = "random"
steps = 5
proposals = 4
no-stop-when-solved = true
schema = "space.json"
[problems.fn]
problem = "function"
objective = "obj.py:f_kill"
[configs.random]
{model}""")
    return path


def rows(location: str, prefix: str = "mw/") -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every run's trials and calls (what, not when), by run name."""
    with open_store(location, readonly=True) as store:
        out = {}
        for run in store.runs():
            if run.name.startswith(prefix):
                out[run.name] = {table: [{k: v for k, v in r.items() if k not in TIMING}
                                         for r in store.records(table, run.id)] for table in ("trials", "calls")}
                out[run.name]["status"] = [{"status": run.status}]
    return out


def audit(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs between a store's runs and the uninterrupted grid's: one line per fault."""
    faults = [f"run {name} missing" for name in expected if name not in got]
    faults += [f"run {name} not in the grid" for name in got if name not in expected]
    for name in sorted(set(got) & set(expected)):
        for table in ("trials", "calls", "status"):
            mine, theirs = got[name][table], expected[name][table]
            if len(mine) != len(theirs):
                faults.append(f"{name}: {len(mine)} {table}, the uninterrupted grid has {len(theirs)}")
            elif mine != theirs:
                first = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
                faults.append(f"{name}: {table} row {first} differs: {mine[first]} != {theirs[first]}")
    return faults


@pytest.fixture
def grid_env(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MW_KEY", KEY)
    monkeypatch.setenv("MW_TOKENS", str(tmp_path / "tokens"))
    (tmp_path / "tokens").mkdir()
    return tmp_path


def run_killed_then_resumed(grid: Path, store: str, reference: str, kills: int, monkeypatch, capsys,
                            *extra: str) -> str:
    """The grid uninterrupted into ``reference``; then with ``kills`` workers SIGKILLed into ``store``,
    and again until it is done; returns the killed attempt's stderr."""
    assert main(["compare", str(grid), "--store", reference, "--quiet", "--no-references"]) == 0
    monkeypatch.setenv("MW_KILLS", str(kills))
    capsys.readouterr()
    first = main(["compare", str(grid), "--store", store, "--no-references", *extra])
    err = capsys.readouterr().err
    if first != 0:  # the killed cells were reported; the same command again resumes them
        assert first == 1 and "failed: its process was killed by SIGKILL" in err, err
        assert main(["compare", str(grid), "--store", store, "--no-references", *extra]) == 0
    return err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_killed_mid_run_lose_nothing_and_resume_to_the_uninterrupted_grid(
        kind: str, grid_env: Path, request, monkeypatch, capsys) -> None:
    store = str(grid_env / "s.db") if kind == "sqlite" else request.getfixturevalue("pg_url")
    with OpenAIServer(pair_script) as server:
        grid = write_grid(grid_env, server.api_base, seeds=2)  # 4 cells: 2 random, 2 with the model
        err = run_killed_then_resumed(grid, store, str(grid_env / "ref.db"), 3, monkeypatch, capsys,
                                      "--jobs", "3")
    killed = sorted(p.name for p in (grid_env / "tokens").iterdir())
    assert killed == ["kill-0", "kill-1", "kill-2"], err  # three workers died mid-run
    got, expected = rows(store), rows(str(grid_env / "ref.db"))
    assert len(expected) == 4 and all(r["status"] == [{"status": "finished"}] for r in expected.values())
    assert sum(len(r["calls"]) for r in expected.values()) > 0  # the model's cells made calls
    assert audit(got, expected) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_dask_workers_killed_mid_run_hand_their_cells_to_others_which_resume_them(
        kind: str, grid_env: Path, request, monkeypatch, capsys) -> None:
    pytest.importorskip("dask.distributed")
    grid = write_grid(grid_env, None, seeds=2)  # 4 cells of random search, no model
    store = str(grid_env / "s.db") if kind == "sqlite" else request.getfixturevalue("pg_url")
    err = run_killed_then_resumed(grid, store, str(grid_env / "ref.db"), 2, monkeypatch, capsys,
                                  "--executor", "dask", "--jobs", "2")
    assert sorted(p.name for p in (grid_env / "tokens").iterdir()) == ["kill-0", "kill-1"], err
    assert "failed" not in err, err  # Dask moved each dead worker's cell to another: one compare finished all
    assert audit(rows(store), rows(str(grid_env / "ref.db"))) == []


def test_the_audit_catches_planted_faults(tmp_path: Path, monkeypatch, capsys) -> None:
    """A lost trial, a call recorded twice, a changed value, an unfinished cell: each is one fault."""
    monkeypatch.setenv("MW_KEY", KEY)
    with OpenAIServer(pair_script) as server:
        grid = write_grid(tmp_path, server.api_base, seeds=1)
        assert main(["compare", str(grid), "--store", str(tmp_path / "ref.db"), "--quiet", "--no-references"]) == 0
    expected = rows(str(tmp_path / "ref.db"))
    assert audit(expected, expected) == []
    plants = {
        "lost": "DELETE FROM trials WHERE run_id = 1 AND number = (SELECT max(number) FROM trials WHERE run_id = 1)",
        "twice": "INSERT INTO calls SELECT run_id, number, role, item + 100, step, model, seed, cache_key, prompt_tokens,"
                 " completion_tokens, cost_usd, latency_s, cache_hit, error, created, choice, cached_tokens, prompt"
                 " FROM calls LIMIT 1",
        "changed": "UPDATE trials SET value = value + 1 WHERE run_id = 2 AND number = 6",
        "unfinished": "UPDATE runs SET status = 'interrupted' WHERE id = 1",
    }
    for name, sql in plants.items():
        planted = tmp_path / f"{name}.db"
        shutil.copy(tmp_path / "ref.db", planted)
        with sqlite3.connect(planted) as db:
            assert db.execute(sql).rowcount >= 1, name
        faults = audit(rows(str(planted)), expected)
        assert len(faults) == 1, (name, faults)
