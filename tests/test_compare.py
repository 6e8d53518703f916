"""`llmopt compare` and `llmopt plot`: grids from TOML or flags, resumed after interruption, tables, figures.

The LLM rows talk to the loopback OpenAI-compatible server through litellm, so the whole path
(grid -> run arguments -> litellm -> store -> tables) is the one a user runs.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import linreg_script
from harness import spawn, wait_until
from openai_server import OpenAIServer

from llmopt import RunStore
from llmopt.cli import main
from llmopt.cli.run_options import parse_cell
from llmopt.experiments.grid import Grid, GridError, grid_from_dict, load_grid
from llmopt.experiments.stats import summarize
from llmopt.experiments.tables import format_summary

KEY = {"GRID_KEY": "sk-grid-00000000"}


def script(prompt: str, seed: int) -> str:
    """Linear regression: the usual crude optimizer; TSP: the best trace shown with two cities swapped."""
    if "<trace>" not in prompt:
        return linreg_script(prompt, seed)
    traces = re.findall(r"<trace>([\d,\s]+)</trace>", prompt)
    tour = [int(c) for c in traces[-1].split(",")]
    i, j = np.random.default_rng(seed).choice(np.arange(1, len(tour)), size=2, replace=False)
    tour[i], tour[j] = tour[j], tour[i]
    return f"<trace>{','.join(map(str, tour))}</trace>"


def slow_script(latency: dict[str, float]):
    """The script, ``latency["s"]`` slower a call (so that an interruption lands mid-grid)."""
    def reply(prompt: str, seed: int) -> str:
        time.sleep(latency["s"])
        return script(prompt, seed)
    return reply


def grid_text(api_base: str, seeds: int = 2, steps: int = 3) -> str:
    return f"""
name = "g"
seeds = {seeds}

[defaults]
steps = {steps}
proposals = 4
no-stop-when-solved = true

[problems.linreg]

[problems.tsp8]
problem = "tsp"
n = 8

[configs.opro]
model = "openai/fake"
api-base = "{api_base}"
api-key-env = "GRID_KEY"
structured = "off"

[configs.random]
proposer = "random"

[sweep]
base = "opro"
order = ["best_to_worst"]
"""


def store_runs(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path, timeout=10) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'trials'").fetchone():
            return {}  # a store being created by another process
        rows = db.execute("SELECT r.name, t.number, t.step, t.state, t.text, t.value FROM trials t "
                          "JOIN runs r ON r.id = t.run_id ORDER BY r.name, t.number").fetchall()
    out: dict[str, list[tuple]] = {}
    for name, *rest in rows:
        out.setdefault(name, []).append(tuple(rest))
    return out


def run_names(path: Path) -> set[str]:
    with sqlite3.connect(path, timeout=10) as db:
        return {name for (name,) in db.execute("SELECT name FROM runs")}


def without_times(table: str) -> str:
    """The tables without their last column (wall time, which no two runs share)."""
    return re.sub(r"  +(?:\S+ )*\S+\s*$", "", table, flags=re.M)  # cells hold single spaces, columns two


# --- the grid description ---------------------------------------------------------------

def test_a_grid_expands_seed_by_seed_with_options_merged_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ablation.toml"
    path.write_text(grid_text("http://127.0.0.1:9/v1"))
    grid = load_grid(path)
    cells = grid.cells()
    assert len(cells) == 2 * 2 * 3  # seeds x problems x (opro, random, order=best_to_worst)
    assert [c.seed for c in cells[:6]] == [0] * 6 and cells[6].seed == 1
    assert cells[0].name == "g/linreg/opro/seed0"
    by_name = {c.name: c for c in cells}
    tsp = by_name["g/tsp8/order=best_to_worst/seed1"]
    assert tsp.command == "tsp" and tsp.options == {
        "steps": 3, "proposals": 4, "no-stop-when-solved": True, "n": 8, "model": "openai/fake",
        "api-base": "http://127.0.0.1:9/v1", "api-key-env": "GRID_KEY", "structured": "off", "order": "best_to_worst"}
    assert by_name["g/linreg/random/seed0"].options["proposer"] == "random"
    wider = grid.with_overrides(seeds=(5,), defaults={"steps": 9})
    assert {c.seed for c in wider.cells()} == {5} and all(c.options["steps"] == 9 for c in wider.cells())


def test_the_papers_ablations_are_one_line_each() -> None:
    grid = grid_from_dict({"problems": {"linreg": {}}, "sweep": {
        "proposals": [1, 2, 4, 8, 16], "temperature": [0.0, 0.5, 1.0, 1.5, 2.0], "scores": ["exact", "buckets", "hidden"],
        "order": ["worst_to_best", "best_to_worst", "random"], "show": [1, 5, 10, 20],
        "start_range": [[10, 20], [0, 30]]}}, name="ablate", source="test")
    assert "proposals=16" in grid.configs and "temperature=1.5" in grid.configs and "scores=hidden" in grid.configs
    assert grid.configs["start-range=0 30"] == {"start-range": [0, 30]}
    assert len(grid.cells()) == (5 + 5 + 3 + 3 + 4 + 2) * 10  # ten seeds by default


@pytest.mark.parametrize("text, words", [
    ("problems = [", "not valid TOML"),
    ("[problems.linreg]\n[colors]\nx = 1", "unknown key 'colors'"),
    ("[defaults]\nseed = 3\n[problems.linreg]", "defaults: seed is set by the grid"),
    ("seeds = 0\n[problems.linreg]", "seeds: a count must be >= 1"),
    ("seeds = [1, 1]\n[problems.linreg]", "seeds: must be distinct"),
    ("[configs.opro]\nsteps = 3", "problems: at least one"),
    ("[problems.linreg]\n[configs.x]\ncolour = 1", "bad.toml: configs.x.colour: unknown option of `llmopt run linreg`"),
    ("[problems.linreg]\n[configs.x]\nquiet = \"yes\"", "bad.toml: configs.x.quiet: a switch"),
    ("[problems.linreg]\n[configs.x]\nsteps = -1", "bad.toml: configs.x.steps: must be >= 0"),
    ("[problems.knapsack]", "knapsack/default: unknown problem 'knapsack'"),
    ("[problems.linreg]\n[sweep]\ntemperature = 1.0", "sweep.temperature: a non-empty list"),
    ("[problems.linreg]\n[sweep]\nbase = \"opro\"\ntemperature = [1.0]", "sweep.base: no configuration 'opro'"),
])
def test_a_bad_grid_is_one_line_naming_the_field_and_nothing_runs(tmp_path: Path, capsys, text: str,
                                                                  words: str) -> None:
    path, store = tmp_path / "bad.toml", tmp_path / "bad.db"
    path.write_text(text)
    assert main(["compare", str(path), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not store.exists()  # every cell is checked before anything is created or asked


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "experiments").glob("*.toml")),
                         ids=lambda p: p.name)
def test_the_shipped_grids_are_valid(path: Path) -> None:
    """Every cell of every grid in experiments/ parses as an `llmopt run` (nothing is run)."""
    grid = load_grid(path)
    cells = grid.cells()
    assert cells and grid.store
    for cell in cells:
        args = parse_cell(cell)
        assert args.seed == cell.seed and args.name == cell.name


def test_grid_labels_cannot_hold_slashes() -> None:
    with pytest.raises(GridError, match="without '/'"):
        Grid(name="g", seeds=(0,), problems={"a/b": {}}, configs={"x": {}})


# --- running, resuming, tables ------------------------------------------------------------

@pytest.mark.slow
def test_a_grid_over_two_problems_runs_then_is_only_read_back(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("GRID_KEY", KEY["GRID_KEY"])
    grid, store = tmp_path / "g.toml", tmp_path / "g.db"
    with OpenAIServer(script) as server:
        grid.write_text(grid_text(server.api_base))
        assert main(["compare", str(grid), "--store", str(store)]) == 0
        first = capsys.readouterr()
        asked = len(server.requests)
        assert asked > 0
        assert main(["compare", str(grid), "--store", str(store)]) == 0  # everything done: nothing asked
        second = capsys.readouterr()
        assert len(server.requests) == asked
    assert without_times(second.out) == without_times(first.out)  # the baselines are re-timed
    runs = store_runs(store)
    assert len(runs) == 12 and "g/tsp8/order=best_to_worst/seed1" in runs
    out = first.out
    assert "linreg (linreg; seeds 0, 1)" in out and "tsp8 (tsp; seeds 0, 1)" in out
    for row in ("opro", "random", "order=best_to_worst", "best integer pair (reference)", "LKH-3 (reference)",
                "Christofides (reference)", "optimum (reference)"):
        assert row in out
    tsp_table = out.split("tsp8 (tsp")[1]
    optimum_row = next(line for line in tsp_table.splitlines() if line.startswith("optimum (reference)"))
    assert "  0.00  " in optimum_row  # the optimum's gap to itself, the same for every seed: one number
    with RunStore(store) as s:  # the table's call count is the store's, per run
        calls = [s.usage(s.get_run(f"g/linreg/opro/seed{k}").id).calls for k in (0, 1)]
    opro_row = next(line for line in out.split("tsp8 (tsp")[0].splitlines() if line.startswith("opro "))
    assert format_summary(summarize(calls), "{:.0f}") in opro_row
    assert "2/2" in opro_row


def test_markdown_tables_and_the_simple_case_flags(tmp_path: Path, capsys) -> None:
    store = tmp_path / "s.db"
    assert main(["compare", "--problems", "linreg", "tsp", "--set", "steps=2", "--sweep", "proposals=[2,4]",
                 "--proposers", "random", "--seeds", "2", "--store", str(store), "--markdown", "--no-references"]) == 0
    out = capsys.readouterr().out
    assert "| configuration | ran | runs |" in out and "|---|" in out
    for row in ("| random | random in [10, 20]² (integers) | 2/2 |", "| random proposals=2 | random in",
                "| random proposals=4 | random in", "| random | random in all tours (10 cities, from city 0) | 2/2"):
        assert row in out
    assert "(reference)" not in out
    assert set(store_runs(store)) == {f"compare/{p}/{c}/seed{s}" for p in ("linreg", "tsp")
                                      for c in ("random", "random proposals=2", "random proposals=4") for s in (0, 1)}


def test_a_rows_label_and_its_ran_column_say_what_ran(tmp_path: Path, capsys) -> None:
    """A sweep applies to the configuration given (here the random control, not the LLM), its rows are
    labelled by it, and a row's proposer cannot be changed under its label with --set."""
    store = tmp_path / "s.db"
    assert main(["compare", "--problems", "linreg", "--proposers", "random", "--sweep", "random-range=[[0,30]]",
                 "--seeds", "2", "--set", "steps=1", "--store", str(store), "--markdown", "--no-references",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| random random-range=0 30 | random in [0, 30]² (integers) | 2/2 |" in out
    assert "| random | random in [10, 20]² (integers) | 2/2 |" in out and "smollm2" not in out
    assert main(["compare", "--problems", "linreg", "--set", "proposer=random", "--store", str(store)]) == 2
    assert "--set proposer=...: a row's proposer is its configuration's" in capsys.readouterr().err


def test_a_changed_configuration_is_refused_not_mixed_into_the_table(tmp_path: Path, capsys) -> None:
    grid, store = tmp_path / "g.toml", tmp_path / "g.db"
    grid.write_text('[problems.linreg]\n[configs.random]\nproposer = "random"\nsteps = 2\n')
    assert main(["compare", str(grid), "--store", str(store)]) == 0
    grid.write_text('[problems.linreg]\nw-true = 3\n[configs.random]\nproposer = "random"\nsteps = 2\n')
    capsys.readouterr()
    assert main(["compare", str(grid), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "cannot resume run 'g/linreg/random/seed0' with different settings" in err


@pytest.mark.slow
def test_an_interrupted_grid_resumes_to_the_uninterrupted_result(tmp_path: Path, capsys, monkeypatch) -> None:
    grid, store, full = tmp_path / "g.toml", tmp_path / "g.db", tmp_path / "full.db"
    latency = {"s": 0.03}
    with OpenAIServer(slow_script(latency)) as server:
        grid.write_text(grid_text(server.api_base, seeds=2, steps=3))
        command = ["-m", "llmopt.cli", "compare", str(grid)]
        proc = spawn(*command, "--store", str(store), env=KEY)
        wait_until(lambda: store.exists() and len(store_runs(store)) >= 4, "4 runs with trials", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        latency["s"] = 0.0  # the resumed and the uninterrupted grids need no wait
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in err and "Traceback" not in err
        before = store_runs(store)
        assert 4 <= len(before) < 12  # stopped mid-grid
        begun = run_names(store)  # with or without trials yet
        for name, value in KEY.items():  # the resumed and the uninterrupted grid, in this process
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(command[2:] + ["--store", str(store)]) == 0  # resumed: the same command again
        r_out, r_err = capsys.readouterr()
        assert main(command[2:] + ["--store", str(full)]) == 0
        ref_out, ref_err = capsys.readouterr()
    after, expected = store_runs(store), store_runs(full)
    assert len(expected) == 12 and set(before) <= begun <= set(expected)
    for name in expected:  # each cell the interrupted command began is resumed, each other one started
        assert f"] {name}: {'resuming' if name in begun else 'starting'}\n" in r_err, (name, r_err)
        assert f"] {name}: starting\n" in ref_err, (name, ref_err)
    assert "resuming" not in ref_err and r_err.count(": resuming\n") == len(begun)
    assert after == expected  # nothing lost, nothing asked twice, same numbering and values
    assert all(after[name][: len(rows)] == rows for name, rows in before.items())
    assert without_times(r_out) == without_times(ref_out)


# --- figures ------------------------------------------------------------------------------

@pytest.mark.slow
def test_plot_writes_every_figure_as_png_and_svg(tmp_path: Path, capsys) -> None:
    grid, store, figures = tmp_path / "p.toml", tmp_path / "p.db", tmp_path / "figs"
    grid.write_text('seeds = 2\n[defaults]\nproposer = "random"\nsteps = 4\n[problems.linreg]\n'
                    '[problems.tsp]\nn = 7\n[configs.random]\n[configs.wide]\nrandom-range = [0, 30]\n')
    assert main(["plot", str(grid), "--store", str(store), "--out", str(figures)]) == 2
    assert "run `llmopt compare` first" in capsys.readouterr().err
    # random-range is a linreg option: the tsp rows of config "wide" are refused before anything runs
    assert main(["compare", str(grid), "--store", str(store)]) == 2
    assert "p.toml: configs.wide.random-range: unknown option of `llmopt run tsp`" in capsys.readouterr().err
    grid.write_text(grid.read_text().replace("random-range = [0, 30]", "proposals = 3"))
    assert main(["compare", str(grid), "--store", str(store), "--plot", str(figures)]) == 0
    written = sorted(p.name for p in figures.iterdir())
    expected = [f"{p}-{kind}.{fmt}" for p in ("linreg", "tsp")
                for kind in ("best-vs-step", "best-vs-evals", "ecdf", "proposals")
                for fmt in ("png", "svg")] + ["tsp-solutions.png", "tsp-solutions.svg"]
    assert written == sorted(expected)  # tours for TSP only: linear regression draws nothing
    for path in figures.iterdir():
        data = path.read_bytes()
        assert len(data) > 5000, path
        assert data.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in data[:2000]
    svg = (figures / "linreg-best-vs-step.svg").read_text()
    assert "best integer pair" in svg and "random (n=2)" in svg  # the baseline line and the legend
    again = tmp_path / "again"  # `llmopt plot` reads the same runs back: the same figures (one format: half the time)
    assert main(["plot", str(grid), "--store", str(store), "--out", str(again), "--formats", "png"]) == 0
    assert sorted(p.name for p in again.iterdir()) == [name for name in written if name.endswith(".png")]
    assert all(abs((again / name).stat().st_size - (figures / name).stat().st_size) < 0.1 * (figures / name).stat().st_size
               for name in written if name.endswith(".png"))
