"""The suite's shared harness: kill/resume helpers, child processes, loopback servers, one-line errors.

Plain functions live here (a helper module, imported by test modules and by tests/scripts/*);
tests/conftest.py turns the expensive ones into fixtures (the reference runs, the servers, the
embedded model). No test module imports another test module: what two of them share is here,
in tests/toys.py (toy tasks), tests/fakes.py (scripted models) or tests/openai_server.py.

Kill points are deterministic: a child kills itself at the N-th write to its store
(:func:`arm_kill`), or the test kills it after it has recorded N trials (:func:`wait_for_trials`),
never after a sleep whose length decides what is being tested.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE_RUN = TESTS / "scripts" / "fake_run.py"
VALIDATION_RUN = TESTS / "scripts" / "validation_run.py"
#: what a trial is compared on between a killed-then-resumed run and an uninterrupted one
FIELDS = ("number", "step", "state", "source", "text", "value", "raw", "error", "duplicate_of")
#: the store writes a kill point counts (validation rows only exist in validation runs)
WRITES = ("add_trial", "add_call", "begin_step", "finish_step", "add_validation")


def arm_kill(at: str | int, store_class: Any, writes: Iterable[str] = WRITES) -> None:
    """Make this process SIGKILL itself right after a chosen write to its store.

    ``N``: at the N-th write of any kind; ``METHOD:N``: at the N-th call of that method (e.g.
    ``finish_step:3``, the write that finishes step 2). A deterministic kill point: the same
    write every time, whatever the machine's load."""
    method_name, _, count = str(at).rpartition(":")
    limit, seen = int(count), {"n": 0}

    def wrap(name: str, method: Any) -> Any:
        def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = method(self, *args, **kwargs)
            if not method_name or name == method_name:
                seen["n"] += 1
                if seen["n"] == limit:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out
        return inner

    for name in writes:
        if hasattr(store_class, name):
            setattr(store_class, name, wrap(name, getattr(store_class, name)))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A child's environment: this checkout's code first (not whatever an editable install points
    at), a random hash seed (so same-seed runs are compared across processes that hash strings
    differently) and no litellm network look-up of prices."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # this checkout's llmopt
    return dict(os.environ, PYTHONHASHSEED="random", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=path,
                **(extra or {}))


def run_script(store: Path, *args: str, script: Path = FAKE_RUN, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a scripted optimization (tests/scripts/) on ``store`` in a child process, to the end or its kill."""
    return subprocess.run([sys.executable, str(script), "--store", str(store), *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env())


def spawn(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    """``python ARGS`` in the background from the repository root (to be signalled by the test).

    The child gets SIGINT's default disposition back: a suite started in the background of a
    non-interactive shell (``bash .ci/run &``, nohup) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler, so a test's Ctrl-C would not reach the run."""
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(env), cwd=ROOT, preexec_fn=_default_sigint, **kw)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snapshot(store_path: Path, name: str = "run") -> tuple[list[tuple], list[tuple], dict]:
    """A run's trials, calls and end state, as compared between a resumed run and a reference."""
    from llmopt import RunStore

    with RunStore(store_path) as store:
        run = store.get_run(name)
        trials = [tuple(getattr(t, f) for f in FIELDS) for t in store.trials(run.id)]
        calls = [(c.number, c.seed, c.prompt_tokens, c.completion_tokens) for c in store.calls(run.id)]
        return trials, calls, {"status": run.status, "stop": run.stop_reason}


def count_trials(store: Path, name: str) -> int:
    """Trials a run has recorded so far (0 while the store or the run does not exist yet)."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as db:
            return db.execute("SELECT count(*) FROM trials t JOIN runs r ON r.id = t.run_id WHERE r.name = ?",
                              (name,)).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer for a moment
        return 0


def wait_until(ready: Any, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll ``ready()`` until true: the event a test acts on (a kill, a Ctrl-C), not a fixed sleep.
    Fails at once if ``proc`` ends first (it would never come)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the child ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout} s")
        time.sleep(0.02)


def wait_for_trials(store: Path, name: str, at_least: int, proc: subprocess.Popen | None = None,
                    timeout: float = 120.0) -> None:
    """Wait until run ``name`` in ``store`` has recorded ``at_least`` trials."""
    wait_until(lambda: count_trials(store, name) >= at_least, f"{at_least} trials of run {name}", proc, timeout)


def assert_one_line_error(err: str, *fragments: str) -> None:
    """A refusal is one clear line (no traceback) naming what was wrong."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
