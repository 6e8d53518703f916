"""One read path for stored runs (llmopt.experiments.stored): a grid's tables are read from the store
alone, with the facts recorded when its runs ran; reading rebuilds no problem and solves nothing; a
store written before facts were recorded is read the old way, and says so in one line."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from llmopt import RunStore
from llmopt.cli import main
from llmopt.cli.run_options import parse_cell
from llmopt.experiments import compare
from llmopt.experiments.grid import load_grid
from llmopt.experiments.grouping import collect_runs
from llmopt.experiments.stored import ProblemFacts, read_run
from llmopt.experiments.tables import tables

GRID = """
name = "rd"
seeds = 2

[defaults]
steps = 2
proposals = 3

[problems.tsp5]          # five cities: random search finds the optimum, so "solved" is not all zeros
problem = "tsp"
n = 5

[configs.random]
proposer = "random"
"""


def _rows(collected: compare.Collected) -> dict[str, list[list[str]]]:
    """The tables without the references' wall-time column (the baselines are timed when they run)."""
    return {label: [row[:-1] for row in table] for label, table in tables(collected).items()}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, compare.Collected]:
    folder = tmp_path_factory.mktemp("grid")
    grid, store = folder / "rd.toml", folder / "rd.db"
    grid.write_text(GRID)
    collected = compare.collect(load_grid(grid), str(store), run=True, parse=parse_cell, log=lambda line: None)
    return grid, store, collected


def _no_rebuilding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("reading a stored run rebuilt its problem or ran a baseline")

    monkeypatch.setattr(compare, "prepare_run", refuse)
    monkeypatch.setattr(compare, "baseline_hook", refuse)
    monkeypatch.setattr(compare, "open_run", refuse)


def test_reading_a_grid_rebuilds_no_problem_and_gives_the_tables_of_the_run(ran, monkeypatch) -> None:
    grid, store, live = ran
    _no_rebuilding(monkeypatch)
    lines: list[str] = []
    read = compare.collect(load_grid(grid), str(store), run=False, parse=parse_cell, log=lines.append)
    assert lines == []
    assert _rows(read) == _rows(live)
    assert [o.record.name for o in read.outcomes] == [o.cell.name for o in live.outcomes]
    assert any(o.solved() for o in read.outcomes)  # the problem's own test, as recorded when it ran
    refs = {r.name for r in read.references["tsp5"][0]}
    assert {"optimum", "LKH-3"} <= refs


def test_a_runs_facts_are_what_its_problem_said(ran) -> None:
    _, store, live = ran
    with RunStore(store, readonly=True) as opened:
        for outcome in live.outcomes:
            stored = read_run(opened, opened.get_run(outcome.cell.name))
            assert stored.has_facts and stored.facts.success_test and stored.facts.drawable
            assert stored.facts.optimum == pytest.approx(outcome.live.optimum)
            assert stored.facts.targets() == [tuple(t) for t in outcome.live.targets()]  # JSON keeps floats exact
            solved = {t.number for t in outcome.result.history if t.ok and outcome.live.is_solved(t.solution)}
            assert stored.facts.solved == solved
            assert stored.ran == outcome.ran and stored.result.steps == outcome.result.steps
            assert stored.result.usage == outcome.result.usage


def test_a_store_without_facts_is_read_by_rebuilding_and_says_so_in_one_line(ran, tmp_path: Path) -> None:
    grid, store, live = ran
    old = tmp_path / "old.db"
    old.write_bytes(store.read_bytes())
    db = sqlite3.connect(old)
    db.execute("DROP TABLE facts")  # as an llmopt before facts left it
    db.commit()
    db.close()
    lines: list[str] = []
    read = compare.collect(load_grid(grid), str(old), run=False, parse=parse_cell, log=lines.append)
    assert len(lines) == 1 and re.search(r"2 run\(s\) of grid 'rd' .* stored without the facts", lines[0])
    assert _rows(read) == _rows(live)
    with sqlite3.connect(old) as db:  # read only: the table was not added back
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'facts'").fetchall()


def test_a_writer_adds_the_facts_table_to_an_older_store_and_records_facts_without_rerunning(ran, tmp_path) -> None:
    grid, store, _ = ran
    old = tmp_path / "old.db"
    old.write_bytes(store.read_bytes())
    with sqlite3.connect(old) as db:
        db.execute("DROP TABLE facts")
        trials = db.execute("SELECT count(*) FROM trials").fetchone()[0]
    assert main(["compare", str(grid), "--store", str(old), "--quiet"]) == 0
    with RunStore(old, readonly=True) as opened:
        assert all(read_run(opened, run).has_facts for run in opened.runs())
        assert opened._read("SELECT count(*) FROM trials")[0][0] == trials  # nothing ran again


def test_a_stores_runs_read_without_a_grid_keep_the_recorded_references(ran, monkeypatch) -> None:
    _, store, live = ran
    _no_rebuilding(monkeypatch)
    with RunStore(store, readonly=True) as opened:
        read = collect_runs(opened)
    (label,) = read.references
    assert {r.name for r in read.references[label][0]} == {r.name for r in live.references["tsp5"][0]}
    assert read.instance is None  # no grid: nothing to rebuild a solution's drawing from


def test_facts_of_a_run_recorded_before_them_come_from_its_record(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    with RunStore(store) as opened:
        run = opened.create_run("r", "tsp", {"direction": "minimize", "problem": {"optimum": 10.0}}, {})
        facts = ProblemFacts.of_record(opened.get_run("r"), opened.facts(run.id))
        assert facts.optimum == 10.0 and facts.solved is None and not facts.success_test
        opened.set_facts(run.id, {"ran": "x"})
        opened.set_facts(run.id, {"ran": "y"})  # the latest wins
        assert opened.facts(run.id) == {"ran": "y"}


def test_the_facts_export_like_the_other_tables(ran) -> None:
    from llmopt.store.export import rows

    _, store, _ = ran
    with RunStore(store, readonly=True) as opened:
        exported = rows(opened, "facts")
    assert {r["name"] for r in exported} == {"problem", "references", "ran", "budget"}
    assert {r["run"] for r in exported} == {"rd/tsp5/random/seed0", "rd/tsp5/random/seed1"}
