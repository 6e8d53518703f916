"""The command line: runs, listings, and one-line errors before anything is spent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmopt import RunStore
from llmopt.cli import main


def llmopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmopt.cli", *args], capture_output=True, text=True, timeout=120)


def test_random_control_runs_and_shows(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "runs.db")
    assert main(["run", "linreg", "--proposer", "random", "--store", store, "--seed", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "linreg-random-seed1" in out and "stopped by" in out and "exact_pair_step" in out
    assert main(["show", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert "linreg-random-seed1" in listing and "random" in listing
    assert main(["show", "--store", store, "linreg-random-seed1"]) == 0
    steps = capsys.readouterr().out
    assert steps.splitlines()[0].split()[:3] == ["step", "complete", "invalid"] and "stop: solved" in steps


def test_a_taken_default_name_is_refused_not_renamed(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "runs.db")
    argv = ["run", "linreg", "--proposer", "random", "--store", store, "--steps", "1", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "run 'linreg-random-seed0' already exists" in capsys.readouterr().err
    with RunStore(store, readonly=True) as s:
        assert [r.name for r in s.runs()] == ["linreg-random-seed0"]


def test_progress_bar_and_summary_in_a_real_process(tmp_path: Path) -> None:
    done = llmopt("run", "linreg", "--proposer", "random", "--store", str(tmp_path / "r.db"), "--steps", "3",
                  "--no-stop-when-solved")
    assert done.returncode == 0, done.stderr
    assert "step" in done.stderr and "best=" in done.stderr and "calls=0" in done.stderr  # tqdm on stderr
    assert "max_steps" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "-3"], "must be >= 0"),
    (["--model", "gpt-nonsense-9000"], "unknown model 'gpt-nonsense-9000'"),
    (["--model", "local/nonexistent"], "unknown local model 'local/nonexistent'"),
    (["--model", "local//tmp/no-such-model.gguf"], "does not exist"),
    (["--store", "/nonexistent-dir/x.db", "--proposer", "random"], "does not exist"),
    (["--resume", "--name", "ghost", "--proposer", "random"], "no run named 'ghost'"),
    (["--temperature", "5", "--model", "openai/x"], "temperature"),
    (["--api-key-env", "LLMOPT_TEST_UNSET_VAR", "--model", "openai/x"], "not set"),
    (["--start-range", "20", "10", "--proposer", "random"], "start_range"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    argv = ["run", "linreg", *args]
    if "--store" not in args:
        argv += ["--store", str(tmp_path / "r.db")]
    done = llmopt(*argv)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unusable_store_paths_are_refused(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, I am not a database\n" * 100)
    for path, message in ((tmp_path, "cannot open store"), (not_a_db, "cannot open store")):
        done = llmopt("run", "linreg", "--proposer", "random", "--store", str(path))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("root writes a read-only directory anyway (test_a_store_it_may_not_write_is_refused "
                        "checks the refusal as root too)")
        done = llmopt("run", "linreg", "--proposer", "random", "--store", str(locked / "r.db"))
        assert done.returncode == 2 and "permission denied" in done.stderr
    finally:
        locked.chmod(0o700)


def test_a_store_it_may_not_write_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    """The permission check, as root too: os.access says the directory is not writable."""
    locked = (tmp_path / "locked").resolve()
    locked.mkdir()
    real = os.access

    def access(path, mode, *args, **kwargs) -> bool:
        return False if mode & os.W_OK and Path(path).resolve() == locked else real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    assert main(["run", "linreg", "--proposer", "random", "--store", str(locked / "r.db"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot write store {locked / 'r.db'}: permission denied" in err and len(err.splitlines()) == 1, err
    assert list(locked.iterdir()) == []  # nothing created


def test_every_subcommand_has_help(capsys) -> None:
    """In this process: argparse's --help exits 0 (SystemExit(0), a process's exit status 0) after
    printing the usage; a child process each would only add four imports."""
    for args in (["--help"], ["run", "--help"], ["run", "linreg", "--help"], ["show", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code in (0, None) and "usage:" in capsys.readouterr().out, args
