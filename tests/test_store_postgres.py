"""The PostgreSQL store against a real server started by the session (tests/pg_server.py): the same
run reads back the same as from SQLite, floats exactly; a killed writer's run is interrupted and
resumable elsewhere, a live one is never taken; ``store copy`` round trips; readers create nothing
and fail in one line; the command line works on a URL; many processes write one store at once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import scripted_llm
from harness import assert_one_line_error

import llmopt
from llmopt import Budget, LLMProposer, Optimizer, RandomProposer
from llmopt.cli import main
from llmopt.experiments.grid import load_grid
from llmopt.store import RunBusyError, open_store
from llmopt.store.copy import RUN_TABLES
from problems.linear_regression.problem import LinearRegression

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: columns that say when or how fast, not what: they differ between two runs of one experiment
VOLATILE = {"created", "started", "latency_s", "elapsed_s"}
#: floats that a 32-bit column, or a text round trip at too few digits, would change
FLOATS = {"third": 1 / 3, "tiny": 5e-324, "big": 1.7976931348623157e308, "sum": 0.1 + 0.2, "int": 2**53 + 1}


def flat(store: Any, name: str, volatile: set[str] = VOLATILE) -> dict[str, list[dict[str, Any]]]:
    """Every row of run ``name`` (every table of it), without the columns in ``volatile``."""
    run = store.get_run(name)
    out = {table: [{k: v for k, v in row.items() if k not in volatile} for row in store.records(table, run.id)]
           for table in RUN_TABLES}
    out["runs"] = [{k: v for k, v in store.run_row(name).items() if k not in volatile | {"id", "updated"}}]
    return out


def opro(store: Any, steps: int, resume: bool = False, name: str = "r") -> Optimizer:
    llm, _ = scripted_llm()
    return Optimizer(LinearRegression(), LLMProposer(llm), store=store, name=name, resume=resume,
                     budget=Budget(max_steps=steps, stop_when_solved=False))


def finish(store: Any, name: str = "r") -> None:
    """What a command adds after a run: facts and validation scores (floats that must come back exact)."""
    run = store.get_run(name)
    store.set_facts(run.id, {"floats": FLOATS, "optimum": 0.1})
    store.set_facts(run.id, {"optimum": 1 / 7})  # replaced, not added
    for number, value in enumerate(FLOATS.values()):
        store.add_validation(run.id, 1, number, value)
    store.add_validation(run.id, 1, 0, 99.0)  # first record wins


def test_one_run_reads_back_the_same_from_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    stored = {}
    for where in (str(tmp_path / "runs.db"), pg_url):
        with open_store(where) as store:
            opro(store, steps=2).run()
            finish(store)
        with open_store(where, readonly=True) as store:  # read back by a fresh connection
            stored[where] = flat(store, "r")
            assert store.facts(store.get_run("r").id) == {"floats": FLOATS, "optimum": 1 / 7}
    sqlite, postgres = stored.values()
    assert sqlite["trials"] and sqlite["calls"] and sqlite["steps"] and len(sqlite["validations"]) == len(FLOATS)
    assert postgres == sqlite
    assert [v["value"] for v in postgres["validations"]] == [float(v) for v in FLOATS.values()]  # bit for bit


def test_a_run_resumed_in_postgresql_continues_as_one_run(tmp_path: Path, pg_url: str) -> None:
    with open_store(tmp_path / "whole.db") as store:
        opro(store, steps=3).run()
        whole = flat(store, "r", VOLATILE | {"finished"})
    with open_store(pg_url) as store:
        opro(store, steps=1).run()  # stopped after one step
    with open_store(pg_url) as store:  # another connection, as another process or machine would be
        assert store.run_status(store.get_run("r")) == "finished"
        opro(store, steps=3, resume=True).run()
        resumed = flat(store, "r", VOLATILE | {"finished"})
    for table in ("trials", "calls", "steps"):
        assert resumed[table] == whole[table], table


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from fakes import scripted_llm
from llmopt import Budget, LLMProposer, Optimizer
from llmopt.store import open_store
from problems.linear_regression.problem import LinearRegression

store = open_store({url!r})
llm, _ = scripted_llm()
opt = Optimizer(LinearRegression(), LLMProposer(llm), store=store, name="r",
                budget=Budget(max_steps=3, stop_when_solved=False))
add, seen = store.add_trial, []
def add_trial(*args):
    add(*args)
    seen.append(1)
    if len(seen) == 5:  # mid-step: hold the run and wait to be killed
        print("ready", flush=True)
        time.sleep(120)
store.add_trial = add_trial
opt.run()
"""


def test_a_killed_writer_leaves_its_run_interrupted_and_resumable(tmp_path: Path, pg_url: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS), url=pg_url)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with open_store(pg_url) as other:
            run = other.get_run("r")
            assert other.run_status(run) == "running"
            assert other.owner("r") == f"pid {child.pid} on {os.uname().nodename}"
            with pytest.raises(RunBusyError, match=f"pid {child.pid}"):  # two live writers: never
                opro(other, steps=3, resume=True)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            deadline = time.monotonic() + 10
            while other.run_status(run) != "interrupted" and time.monotonic() < deadline:
                time.sleep(0.05)  # the server notices the closed socket at once; allow for a loaded machine
            assert other.run_status(run) == "interrupted"
            assert len(other.trials(run.id)) == 5
            result = opro(other, steps=3, resume=True).run()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with open_store(tmp_path / "whole.db") as store:
        whole = [(t.number, t.text, t.value) for t in opro(store, steps=3).run().history]
    assert [(t.number, t.text, t.value) for t in result.history] == whole


def test_store_copy_round_trips_sqlite_postgresql_sqlite(tmp_path: Path, pg_url: str, capsys) -> None:
    first, last = tmp_path / "first.db", tmp_path / "last.db"
    with open_store(first) as store:
        opro(store, steps=2).run()
        finish(store)
        opro(store, steps=1, name="other").run()
        entries = len(store.cache_rows(limit=10_000))
    assert main(["store", "copy", str(first), pg_url, "--run", "r"]) == 0
    assert main(["store", "copy", pg_url, str(last)]) == 0
    assert f"copied 1 run(s) (r) and {entries} cache entries from {pg_url} to {last}" in capsys.readouterr().out
    with open_store(first, readonly=True) as a, open_store(last, readonly=True) as b:
        assert flat(b, "r", set()) == flat(a, "r", set())  # every column, times included
        assert b.cache_rows(limit=10_000) == a.cache_rows(limit=10_000)
        assert [r.name for r in b.runs()] == ["r"]
    assert main(["store", "copy", str(first), pg_url]) == 2  # 'r' is there: nothing copied, not even 'other'
    assert_one_line_error(capsys.readouterr().err, "already holds run(s) 'r'", "nothing copied")
    with open_store(pg_url, readonly=True) as store:
        assert [r.name for r in store.runs()] == ["r"]


def test_store_copy_skips_a_live_run_and_copies_a_dead_one(tmp_path: Path, pg_url: str, capsys) -> None:
    with open_store(pg_url) as store:
        opro(store, steps=3).ask()  # mid-run, owned by this connection
        assert main(["store", "copy", pg_url, str(tmp_path / "copy.db")]) == 0
        out = capsys.readouterr()
        assert "copied 0 run(s)" in out.out and "skipped run 'r': still running (pid" in out.err
    assert main(["store", "copy", pg_url, str(tmp_path / "copy.db")]) == 0  # its owner gone: copied
    with open_store(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.run_status(copy.get_run("r")) == "interrupted"


def _admin(pg_server: Any) -> Any:
    import psycopg

    return psycopg.connect(pg_server.url(), autocommit=True)


def databases(pg_server: Any) -> list[str]:
    with _admin(pg_server) as conn:
        return sorted(r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall())


def tables(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()[0]


def test_reading_a_missing_database_or_server_is_one_line_and_creates_nothing(pg_server: Any, capsys) -> None:
    empty = pg_server.new_database("empty")
    before = databases(pg_server)
    missing = pg_server.url("nowhere").replace("postgres@", "postgres:s3cret@")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"postgresql://postgres:s3cret@127.0.0.1:{s.getsockname()[1]}/db"
    for argv, fragment in ((["show", "--store", missing], "no store at postgresql://postgres@127.0.0.1"),
                           (["export", "--store", missing], "database 'nowhere' does not exist"),
                           (["show", "--store", closed], "cannot open store postgresql://postgres@127.0.0.1"),
                           (["show", "--store", empty], "a PostgreSQL database but not a run store")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err, fragment)
        assert "s3cret" not in err
    assert databases(pg_server) == before and tables(empty) == 0  # no database, no table made


def test_the_command_line_runs_shows_and_exports_a_postgresql_store(pg_url: str, capsys) -> None:
    secret = pg_url.replace("postgres@", "postgres:s3cret@")  # the test server trusts: any password will do
    assert main(["run", "linreg", "--proposer", "random", "--steps", "2", "--no-stop-when-solved", "--quiet",
                 "--store", secret, "--name", "cli"]) == 0
    capsys.readouterr()
    assert main(["show", "--store", pg_url]) == 0
    assert "cli" in capsys.readouterr().out
    assert main(["show", "--store", pg_url, "cli"]) == 0
    assert "stop: max_steps" in capsys.readouterr().out
    assert main(["export", "--store", pg_url, "--table", "trials", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with open_store(pg_url, readonly=True) as store:
        run = store.get_run("cli")
        assert len(lines) == 1 + len(store.trials(run.id)) > 1
        assert f"--store {pg_url} " in run.versions["command"] and "s3cret" not in str(run.versions)


def test_minimize_takes_a_url(pg_url: str) -> None:
    schema = {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer", "minimum": -5, "maximum": 5}}}
    result = llmopt.minimize(lambda v: (v["x"] - 2) ** 2, schema, proposer="random", steps=2, store=pg_url,
                             name="fn", progress=False)
    with open_store(pg_url, readonly=True) as store:
        stored = {t.number: t.value for t in store.trials(store.get_run("fn").id)}
    assert stored == {t.number: t.value for t in result.history} and len(stored) > 2


def _close_in_child(store: Any) -> None:
    store.close()  # what a forked worker's exit may do to the copy of its parent's store


def test_a_forked_child_never_ends_its_parents_session(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.create_run("p", "linreg", {}, {})
        child = multiprocessing.get_context("fork").Process(target=_close_in_child, args=(store,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        assert [r.name for r in store.runs()] == ["p"]  # the parent's connection still works
        with open_store(pg_url, readonly=True) as other:
            assert other.run_status(other.get_run("p")) == "running"  # and still owns its run


def _writer(location: str, index: int, steps: int) -> None:
    with open_store(location) as store:
        Optimizer(LinearRegression(seed=index), RandomProposer(), seed=index, store=store, name=f"w{index}",
                  budget=Budget(max_steps=steps, stop_when_solved=False)).run()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eight_processes_write_eight_runs_into_one_store(tmp_path: Path, request, kind: str) -> None:
    location = str(tmp_path / "shared.db") if kind == "sqlite" else request.getfixturevalue("pg_url")
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(location, i, 3)) for i in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0] * 8
    with open_store(location, readonly=True) as store:
        runs = store.runs()
        assert sorted(r.name for r in runs) == [f"w{i}" for i in range(8)]
        for run in runs:
            numbers = [t.number for t in store.trials(run.id)]
            assert numbers == list(range(len(numbers))) and len(numbers) > 3, run.name  # each trial once
            assert store.run_status(run) == "finished"


def test_without_psycopg_a_url_is_one_line_naming_the_extra(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without the driver sees
    assert main(["show", "--store", "postgresql://me@127.0.0.1/db"]) == 2
    assert_one_line_error(capsys.readouterr().err, 'pip install "llmopt[postgres]"')


def test_a_grid_file_may_name_a_postgresql_store(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text('store = "postgresql://me@db.example/runs"\nseeds = 1\n[problems.linreg]\n[configs.random]\n'
                    'proposer = "random"\n')
    assert load_grid(grid).store == "postgresql://me@db.example/runs"  # not made relative to the grid's folder
    grid.write_text(grid.read_text().replace("postgresql://me@db.example/runs", "near.db"))
    assert load_grid(grid).store == str(tmp_path / "near.db")
