"""The store as a newcomer meets it: one default store, reading commands that never create or
change a store, damaged stores refused in one line, crashed runs shown as interrupted, taken
names refused (never silently renamed), and a resume refusal that names only what differs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import scripted_llm
from harness import assert_one_line_error

from llmopt import Budget, LLMProposer, Optimizer, RandomProposer, RunStore, StoreError
from llmopt.cli import build_parser, main
from problems.linear_regression.problem import LinearRegression

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "scripts" / "fake_run.py"


def run_random(store: Path | str, *extra: str) -> int:
    return main(["run", "linreg", "--proposer", "random", "--store", str(store), "--steps", "2",
                 "--no-stop-when-solved", "--quiet", *extra])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert_one_line_error(err)
    return err


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --- 1. one default store; reading commands never create or modify one ----------------------

def test_every_command_defaults_to_one_store(tmp_path: Path, monkeypatch, capsys) -> None:
    from llmopt.store.sqlite import DEFAULT_STORE

    assert DEFAULT_STORE == "runs.db"
    parser = build_parser()
    for argv in (["run", "linreg"], ["show"], ["export"], ["evaluate"]):
        assert parser.parse_args(argv).store == DEFAULT_STORE, argv
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "--problems", "linreg", "--proposers", "random", "--seeds", "1"]) == 2
    assert "no store at runs.db" in error_line(capsys)
    assert main(["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--set", "steps=1",
                 "--no-references"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == [".llmopt-locks", "runs.db"]  # no compare.db, no llmopt.db
    assert main(["show"]) == 0 and "compare/linreg/random/seed0" in capsys.readouterr().out


READERS = [
    ["show"],
    ["show", "some-run"],
    ["export"],
    ["export", "--table", "runs", "--format", "jsonl"],
    ["evaluate", "--run", "prompt-llm-seed0"],
    ["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--no-run", "--no-references"],
    ["plot", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--no-references"],
]


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_reading_a_missing_store_creates_nothing(tmp_path: Path, monkeypatch, capsys, argv: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2  # the default store
    assert "no store at runs.db" in error_line(capsys)
    assert main([*argv, "--store", "elsewhere.db"]) == 2
    assert "no store at elsewhere.db" in error_line(capsys)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_reading_an_empty_or_foreign_file_changes_nothing(tmp_path: Path, capsys, argv: list[str]) -> None:
    empty, foreign = tmp_path / "empty.db", tmp_path / "notes.db"
    empty.touch()
    foreign.write_text("not a database, just notes\n" * 50)
    before = {p: fingerprint(p) for p in (empty, foreign)}
    assert main([*argv, "--store", str(empty)]) == 2
    assert f"{empty} is an empty file (0 bytes), not a run store" in error_line(capsys)
    assert main([*argv, "--store", str(foreign)]) == 2
    assert "not an SQLite database" in error_line(capsys)
    assert {p: fingerprint(p) for p in (empty, foreign)} == before
    assert sorted(os.listdir(tmp_path)) == ["empty.db", "notes.db"]


def test_reading_commands_leave_a_store_untouched(tmp_path: Path, capsys) -> None:
    store = tmp_path / "runs.db"
    assert run_random(store, "--name", "r") == 0
    before = fingerprint(store)
    for argv in (["show"], ["show", "r"], ["export"], ["export", "--table", "calls"],
                 ["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--no-run",
                  "--no-references"]):
        assert main([*argv, "--store", str(store)]) == 0, argv
    assert main(["evaluate", "--run", "r", "--store", str(store)]) == 2  # not a prompt run: refused, unchanged
    assert "not a prompt-optimization run" in error_line(capsys)
    assert fingerprint(store) == before


def test_read_only_store_api(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        RunStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    with RunStore(tmp_path / "r.db") as s:
        s.create_run("a", "p", {}, {})
    with RunStore(tmp_path / "r.db", readonly=True) as s:
        assert [r.name for r in s.runs()] == ["a"]
        with pytest.raises(StoreError, match="read-only"):
            s.create_run("b", "p", {}, {})
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a run store"):
        RunStore(other, readonly=True)


# --- 2. a damaged store: one line, exit non-zero, nothing written ----------------------------

def quick_check(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()


def damaged_store(tmp_path: Path, where: str = "pages 2-3") -> Path:
    store = tmp_path / "runs.db"
    for seed in range(3):
        assert run_random(store, "--name", f"r{seed}", "--seed", str(seed), "--steps", "5") == 0
    assert quick_check(store) == "ok"
    db = sqlite3.connect(store)
    page, pages = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    db.close()
    assert pages >= 4 and not Path(f"{store}-wal").exists()  # every write is in the file itself
    original = store.read_bytes()
    if where == "pages 2-3":  # garbage over table roots and their rows: reading fails outright
        spots = [(page, 2 * page)]
    else:  # garbage over one leaf page's cell pointers: quick_check lists the bad cells
        spots = [((n - 1) * page + 100, 600) for n in range(pages, 1, -1)]
    for offset, size in spots:
        with open(store, "r+b") as f:
            f.seek(offset)
            f.write(bytes((i * 37 + 11) % 256 for i in range(size)))
        if quick_check(store) != "ok":
            return store
        store.write_bytes(original)
    raise AssertionError("could not damage the store")


@pytest.mark.parametrize("where", ["pages 2-3", "a leaf page"])
def test_a_damaged_store_is_one_line_and_never_written(tmp_path: Path, capsys, where: str) -> None:
    store = damaged_store(tmp_path, where)
    before = fingerprint(store)
    for argv in (["show"], ["show", "r0"], ["export"], ["export", "--table", "calls"],
                 ["run", "linreg", "--proposer", "random", "--quiet", "--name", "new"],
                 ["run", "linreg", "--proposer", "random", "--quiet", "--name", "r0", "--resume", "--steps", "9"],
                 ["evaluate", "--run", "r0"],
                 ["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--no-references"],
                 ["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "1", "--no-run",
                  "--no-references"]):
        code = main([*argv, "--store", str(store)])
        err = error_line(capsys)
        assert code != 0, argv
        assert err.startswith(f"llmopt: error: the store {store} is damaged (PRAGMA quick_check: "), err
        assert fingerprint(store) == before, argv


def test_a_damaged_store_in_a_real_process(tmp_path: Path) -> None:
    store = damaged_store(tmp_path)
    before = fingerprint(store)
    for argv in (["show"], ["run", "linreg", "--proposer", "random", "--quiet"]):
        done = subprocess.run([sys.executable, "-m", "llmopt.cli", *argv, "--store", str(store)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode != 0 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and "is damaged (PRAGMA quick_check:" in done.stderr
        assert fingerprint(store) == before


# --- 3. crashed runs are interrupted; a taken name is refused, not renamed -------------------

def test_a_killed_run_shows_as_interrupted(tmp_path: Path, capsys) -> None:
    store = tmp_path / "runs.db"
    killed = subprocess.run([sys.executable, str(SCRIPT), "--store", str(store), "--kill-at", "40"],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    with RunStore(store, readonly=True) as s:
        assert s.get_run("run").status == "running"  # what the dead process left behind
    assert main(["show", "--store", str(store)]) == 0
    [row] = capsys.readouterr().out.splitlines()[2:]
    assert row.split()[:5] == ["run", "linreg", "opro", "fake/scripted", "interrupted"]  # the tables' name for it
    assert main(["show", "--store", str(store), "run"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stop: interrupted: ") and f"--store {store} --name run --resume" in last
    resumed = subprocess.run([sys.executable, str(SCRIPT), "--store", str(store), "--resume"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    with RunStore(store, readonly=True) as s:
        assert s.get_run("run").status == "finished"


def test_a_live_run_shows_as_running_and_cannot_be_taken(tmp_path: Path, capsys) -> None:
    path = tmp_path / "runs.db"
    llm, _ = scripted_llm()
    with RunStore(path) as store:
        opt = Optimizer(LinearRegression(), LLMProposer(llm), store=store, name="live",
                        budget=Budget(max_steps=3, stop_when_solved=False))
        opt.ask()  # mid-run, as an ask/tell user would be
        assert main(["show", "--store", str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[2].split()[4] == "running"  # after "opro fake/scripted"
        assert main(["show", "--store", str(path), "live"]) == 0
        assert f"stop: running: pid {os.getpid()} on " in capsys.readouterr().out
        with RunStore(path) as other:  # another opener (as another process would be) may not write it
            with pytest.raises(StoreError, match="is running in another process"):
                Optimizer(LinearRegression(), LLMProposer(llm), store=other, name="live", resume=True,
                          budget=Budget(max_steps=3, stop_when_solved=False))
            with pytest.raises(StoreError, match="run 'live' already exists .* running in another process"):
                Optimizer(LinearRegression(), LLMProposer(llm), store=other, name="live")
    assert main(["show", "--store", str(path)]) == 0  # its store closed: the run is not live any more
    assert capsys.readouterr().out.splitlines()[2].split()[4] == "interrupted"


def test_a_taken_name_is_refused_with_the_resume_command(tmp_path: Path, capsys) -> None:
    store = tmp_path / "runs.db"
    assert run_random(store) == 0
    capsys.readouterr()
    assert run_random(store) == 2
    err = error_line(capsys)
    assert err == (f"llmopt: error: run 'linreg-random-seed0' already exists in {store}: resume it with  llmopt run "
                   f"linreg --proposer random --store {store} --steps 2 --no-stop-when-solved --quiet "
                   "--name linreg-random-seed0 --resume  or pick another --name")  # the whole command, to paste
    assert run_random(store, "--name", "linreg-random-seed0") == 2
    assert "already exists" in error_line(capsys)
    with RunStore(store, readonly=True) as s:
        assert [r.name for r in s.runs()] == ["linreg-random-seed0"]


def test_the_api_refuses_a_taken_name_and_numbers_default_names(tmp_path: Path) -> None:
    def optimizer(store: RunStore, **kw) -> Optimizer:
        return Optimizer(LinearRegression(), RandomProposer(), store=store, budget=Budget(max_steps=1), **kw)

    with RunStore(tmp_path / "r.db") as store:
        optimizer(store, name="mine").run()
        with pytest.raises(StoreError, match="run 'mine' already exists"):
            optimizer(store, name="mine")
        names = [optimizer(store).run().name for _ in range(2)]  # no name given: a free one, said in result.name
        assert names == ["linreg-random-seed0", "linreg-random-seed0-2"]


# --- 4. a refused resume names only the settings that differ ---------------------------------

def test_refused_resume_names_only_the_differences(tmp_path: Path, capsys) -> None:
    store = tmp_path / "runs.db"
    assert run_random(store, "--name", "r") == 0
    capsys.readouterr()
    assert run_random(store, "--name", "r", "--resume", "--w-true", "16", "--proposals", "4") == 2
    err = error_line(capsys)
    assert err == ("llmopt: error: cannot resume run 'r' with different settings: "
                   "problem.w_true: 15 -> 16, proposals_per_step: 8 -> 4")


def test_settings_diff_is_dotted_and_short() -> None:
    from llmopt.optimizer import settings_diff

    stored = {"seed": 0, "problem": {"name": "x", "range": [1, 2], "deep": {"a": 1}}, "text": "y" * 500}
    given = {"seed": 0, "problem": {"name": "x", "range": [1, 3], "deep": {"a": 2, "b": None}}, "text": "z" * 500}
    diffs = settings_diff(stored, given)
    assert diffs[:3] == ["problem.deep.a: 1 -> 2", "problem.deep.b: (not set) -> None", "problem.range: [1, 2] -> [1, 3]"]
    assert diffs[3].startswith("text: 'yyy") and len(diffs[3]) < 140


# --- 4. run locks do not clutter a user's repository ---------------------------------------------

def test_run_locks_leave_git_status_clean_but_the_store(tmp_path: Path, capsys) -> None:
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert run_random(tmp_path / "runs.db") == 0
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    assert [line for line in status if line] == ["?? runs.db"]  # no runs.db-locks/, no lock files
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".git") == [".llmopt-locks", "runs.db"]


def test_a_run_locked_by_an_older_llmopt_is_still_live(tmp_path: Path) -> None:
    """An llmopt from before .llmopt-locks/ locked <store>-locks/<hash>: its live run stays live."""
    import fcntl
    import hashlib

    store = tmp_path / "runs.db"
    assert run_random(store) == 0
    old = Path(f"{store.resolve()}-locks") / hashlib.sha256(b"linreg-random-seed0").hexdigest()[:32]
    old.parent.mkdir()
    fd = os.open(old, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with RunStore(store) as s:
            assert s.is_live("linreg-random-seed0")
            with pytest.raises(StoreError, match="is running in another process"):
                s.claim("linreg-random-seed0")
    finally:
        os.close(fd)
    with RunStore(store) as s:
        assert not s.is_live("linreg-random-seed0")


def test_a_crashed_runs_resume_hint_is_the_command_that_started_it(tmp_path: Path, capsys) -> None:
    store = tmp_path / "runs.db"
    assert run_random(store, "--seed", "3") == 0
    with sqlite3.connect(store) as db:  # as a killed process leaves it: still "running", its lock free
        db.execute("UPDATE runs SET status = 'running', stop_reason = NULL")
    capsys.readouterr()
    assert main(["show", "--store", str(store), "linreg-random-seed3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"resume with  llmopt run linreg --proposer random --store {store} --steps 2 "
                         "--no-stop-when-solved --quiet --seed 3 --name linreg-random-seed3 --resume"), last
