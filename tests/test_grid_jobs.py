"""`llmopt compare --jobs N` and `--executor dask`: a grid's cells at once, each an ordinary resumable run
in its own process, writing one store; the same trials as a sequential grid; a failed or killed cell
reported, the others finished, and resumed by the next compare.

Kill points are deterministic: the killed cell's objective SIGKILLs its own process at its k-th call
(once: a marker file says it happened), never after a sleep.
"""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from fakes import linreg_script
from harness import spawn, wait_for_trials
from openai_server import OpenAIServer

import llmopt
from llmopt import RunStore
from llmopt.cli import main
from llmopt.experiments.progress import GridProgress

KEY = "sk-grid-jobs-00000000"


def trials_of(store: Path, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every run's trials under ``prefix`` (the grid's name), every column but the time of writing,
    keyed by the run's name without the prefix."""
    with RunStore(store, readonly=True) as s:
        return {r.name.split("/", 1)[1]: [{k: v for k, v in row.items() if k != "created"}
                                          for row in s.records("trials", r.id)]
                for r in s.runs() if r.name.startswith(prefix + "/")}


def llm_grid(name: str, api_base: str) -> str:
    return f"""
name = "{name}"
seeds = [0]

[defaults]
steps = 3
proposals = 4
no-stop-when-solved = true

[problems.linreg]

[problems.tsp6]
problem = "tsp"
n = 6

[configs.random]
proposer = "random"

[configs.wide]
proposer = "random"
random-range = [0, 30]
problems = ["linreg"]

[configs.opro]
model = "openai/fake"
api-base = "{api_base}"
api-key-env = "GRID_JOBS_KEY"
structured = "off"
problems = ["linreg"]
"""


@pytest.mark.slow
def test_jobs_give_the_trials_of_a_sequential_grid_with_replies_from_the_cache(tmp_path: Path, capsys,
                                                                                 monkeypatch) -> None:
    """The same grid under two names in one store: sequential first, then two cells at once, whose
    model replies all come from the store's cache (the server is asked nothing more)."""
    monkeypatch.setenv("GRID_JOBS_KEY", KEY)
    store = tmp_path / "s.db"
    with OpenAIServer(linreg_script) as server:
        for name in ("seq", "par"):
            (tmp_path / f"{name}.toml").write_text(llm_grid(name, server.api_base))
        assert main(["compare", str(tmp_path / "seq.toml"), "--store", str(store), "--quiet", "--no-references"]) == 0
        asked = len(server.requests)
        assert asked > 0
        capsys.readouterr()
        assert main(["compare", str(tmp_path / "par.toml"), "--store", str(store), "--jobs", "2",
                     "--no-references"]) == 0
        assert len(server.requests) == asked  # every reply served from the cache, in the cells' processes
    err = capsys.readouterr().err
    seq, par = trials_of(store, "seq"), trials_of(store, "par")
    assert sorted(seq) == sorted(par) == ["linreg/opro/seed0", "linreg/random/seed0", "linreg/wide/seed0",
                                          "tsp6/random/seed0"]
    for cell in seq:
        assert par[cell] == seq[cell], cell
        assert f"par/{cell}: starting" in err and f"par/{cell}: max_steps after 3 steps" in err
    assert {row["source"] for row in par["linreg/opro/seed0"]} == {"start", "llm:openai/fake"}  # the model's cell


def function_grid(tmp_path: Path, *problems: str) -> Path:
    """A grid of random search on a user's function: ``fn`` (two configurations) plus ``problems``,
    each label ``fnX`` running objective ``f_X`` of obj.py."""
    (tmp_path / "space.json").write_text(json.dumps({
        "type": "object", "required": ["x", "y"],
        "properties": {"x": {"type": "integer", "minimum": -10, "maximum": 10},
                       "y": {"type": "integer", "minimum": -10, "maximum": 10}}}))
    (tmp_path / "obj.py").write_text('''
import itertools, os, signal

_calls = itertools.count(1)

def f(s):
    return (s["x"] - 3) ** 2 + (s["y"] + 1) ** 2

def f_kill(s):
    """f; at its 8th call in a process, SIGKILL that process (once: the marker file says it did)."""
    mark = os.environ.get("GRID_KILL_MARK")
    if next(_calls) == 8 and mark and not os.path.exists(mark):
        open(mark, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return f(s)

def f_exit(s):
    raise SystemExit("the objective gave up")

def f_slow(s):
    import time
    time.sleep(0.05)
    return f(s)
''')
    extra = "".join(f'[problems.fn{p}]\nproblem = "function"\nobjective = "obj.py:f_{p}"\n' for p in problems)
    path = tmp_path / "k.toml"
    path.write_text(f"""
name = "k"
seeds = [0]
[defaults]
proposer = "random"
steps = 4
proposals = 3
schema = "space.json"
[problems.fn]
problem = "function"
objective = "obj.py:f"
{extra}
[configs.random]
[configs.more]
proposals = 5
problems = ["fn"]
""")
    return path


@pytest.mark.slow
def test_a_killed_cell_fails_alone_and_the_next_compare_resumes_only_it(tmp_path: Path, capsys, monkeypatch) -> None:
    grid = function_grid(tmp_path, "kill")
    ref, store = tmp_path / "ref.db", tmp_path / "s.db"
    assert main(["compare", str(grid), "--store", str(ref), "--quiet"]) == 0  # uninterrupted, one after another
    monkeypatch.setenv("GRID_KILL_MARK", str(tmp_path / "killed"))
    capsys.readouterr()
    assert main(["compare", str(grid), "--store", str(store), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert (tmp_path / "killed").exists()
    failed = [line for line in err.splitlines() if line.startswith("llmopt: error: cell ")]
    assert failed == ["llmopt: error: cell k/fnkill/random/seed0 failed: its process was killed by SIGKILL"], err
    assert "1 of 3 cells failed: run the same command again" in err
    assert "k/fn/random/seed0: max_steps after 4 steps" in err and "k/fn/more/seed0: max_steps after 4 steps" in err
    done = trials_of(store, "k")
    assert 0 < len(done["fnkill/random/seed0"]) < len(trials_of(ref, "k")["fnkill/random/seed0"])  # stopped halfway

    assert main(["compare", str(grid), "--store", str(store), "--jobs", "2"]) == 0  # the same command again
    err = capsys.readouterr().err
    assert "k/fn/random/seed0: already finished" in err and "k/fn/more/seed0: already finished" in err
    assert "k/fnkill/random/seed0: resuming" in err and "starting" not in err
    assert trials_of(store, "k") == trials_of(ref, "k")  # as if never killed


@pytest.mark.slow
def test_a_cell_that_raises_is_reported_and_the_others_finish(tmp_path: Path, capsys) -> None:
    grid = function_grid(tmp_path, "exit")
    store = tmp_path / "s.db"
    assert main(["compare", str(grid), "--store", str(store), "--jobs", "2", "--no-references"]) == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if line.startswith("llmopt: error: cell ")]
    assert len(failed) == 1 and failed[0].startswith(
        "llmopt: error: cell k/fnexit/random/seed0 failed: SystemExit: the objective gave up"), captured.err
    with RunStore(store, readonly=True) as s:
        status = {r.name: r.status for r in s.runs()}
    assert status["k/fn/random/seed0"] == status["k/fn/more/seed0"] == "finished"
    assert "fn (function; seeds 0)" in captured.out  # the tables of what finished are printed all the same


@pytest.mark.slow
def test_ctrl_c_stops_every_cell_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    grid = function_grid(tmp_path)
    grid.write_text(grid.read_text().replace("steps = 4", "steps = 200").replace("obj.py:f", "obj.py:f_slow"))
    store = tmp_path / "s.db"
    proc = spawn("-m", "llmopt.cli", "compare", str(grid), "--store", str(store), "--jobs", "2", "--no-references")
    wait_for_trials(store, "k/fn/random/seed0", 10, proc)  # it runs: now Ctrl-C
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: run the same command again to resume" in err and "Traceback" not in err
    with RunStore(store, readonly=True) as s:
        status = {r.name: (r.status, r.stop_reason) for r in s.runs()}
    assert status["k/fn/random/seed0"] == ("interrupted", "interrupted"), status  # as Ctrl-C stops a run: resumable
    assert all(st == ("interrupted", "interrupted") for st in status.values()), status


def test_bad_input_is_one_line_before_any_cell_starts(tmp_path: Path, capsys) -> None:
    path, store = tmp_path / "bad.toml", tmp_path / "bad.db"
    path.write_text("[problems.linreg]\n[configs.x]\nproposer = \"random\"\n[configs.y]\ncolour = 1\n")
    assert main(["compare", str(path), "--store", str(store), "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.toml: configs.y.colour: unknown option of `llmopt run linreg`" in err and len(err.splitlines()) == 1
    assert not store.exists()
    with pytest.raises(SystemExit, match="2"):
        main(["compare", str(path), "--store", str(store), "--jobs", "0"])
    assert "--jobs: a number of cells at once, >= 1" in capsys.readouterr().err


def test_the_grids_state_line_names_each_running_cells_step_and_best() -> None:
    out = io.StringIO()
    display = GridProgress(4, stream=out, interval_s=0.0)
    display.line("g/a/random/seed0: starting")
    assert display.due()
    display.status(1, 1, 0, [("g/a/random/seed0", 2, 1.5), ("g/b/random/seed0", None, None)])
    assert out.getvalue().splitlines() == [
        "g/a/random/seed0: starting",
        "grid: 1/4 done, 2 running, 1 failed, 0 waiting | g/a/random/seed0 step 2 best 1.5; g/b/random/seed0 step - best -"]


@pytest.mark.slow
def test_dask_cells_on_a_local_cluster_give_the_sequential_trials(tmp_path: Path) -> None:
    """``llmopt.compare`` from Python, sequential and as tasks of a LocalCluster of two workers."""
    pytest.importorskip("dask.distributed")
    grid = {"name": "d", "seeds": [0, 1], "defaults": {"steps": 3, "proposals": 3},
            "problems": {"linreg": {}},
            "configs": {"random": {"proposer": "random"}, "wide": {"proposer": "random", "random-range": [0, 30]}}}
    seq = llmopt.compare(grid, store=str(tmp_path / "seq.db"), progress=False)
    par = llmopt.compare(grid, store=str(tmp_path / "par.db"), executor="dask", jobs=2, progress=False)
    assert seq.ok and par.ok and len(par.outcomes) == 4 and all(o.finished for o in par.outcomes)
    assert trials_of(tmp_path / "par.db", "d") == trials_of(tmp_path / "seq.db", "d")
    assert [row[:-1] for row in par.tables["linreg"]] == [row[:-1] for row in seq.tables["linreg"]]  # but wall s


def test_the_benchmarks_speedup_is_t1_over_tn_and_per_job_over_n() -> None:
    """benchmarks/grid_jobs.py's published ratios (docs/results/grid-workers.md)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from grid_jobs import speedup_row

    assert speedup_row("latency-bound", "jobs 4", 5.0, 16.0, 4, True) == [
        "latency-bound", "jobs 4", "5.00", "3.20", "0.80", "yes"]
    assert speedup_row("CPU-bound", "jobs 8", 4.0, 8.0, 8, False)[3:] == ["2.00", "0.25", "NO"]
