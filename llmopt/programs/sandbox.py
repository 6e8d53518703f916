"""Evaluate a candidate program in isolation: the optimizer's side (it never imports candidate code).

One evaluation = a fresh ``python -I`` supervisor in its own session, inside network, pid and mount
namespaces where the machine has them (``isolation()``); the supervisor starts the user's evaluator
as one fresh unprivileged uid and each ``Candidate.run`` as another (see ``_runner.py``). The
optimizer trusts only one newline-terminated JSON line read from a pipe that only the evaluator holds,
and validates it here: a finite score, bounded feedback, bounded metrics. Nothing is unpickled.
"""
from __future__ import annotations

import ast
import fcntl
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from llmopt.programs import _runner
from llmopt.programs._outcome import judge
from llmopt.programs.isolation import Isolation, isolation, mount_plan

_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")
_GRACE_S = 0.5  # the evaluator's own deadline comes first, so it can report a candidate's timeout


@dataclass(frozen=True)
class Limits:
    """Every resource one evaluation may use; all bounded (``to_dict()`` for the run's record)."""

    wall_s: float = 20.0       # the whole evaluation (evaluator and every candidate process it starts)
    cpu_s: float = 20.0        # RLIMIT_CPU, per process
    memory_mb: int = 2048      # RLIMIT_AS, per process
    file_mb: int = 16          # RLIMIT_FSIZE (also bounds stdout/stderr files)
    processes: int = 64        # RLIMIT_NPROC where it applies (a fresh uid per evaluation)
    output_kb: int = 64        # stdout and stderr kept, each
    feedback_chars: int = 2000

    def __post_init__(self) -> None:
        bounds = {"wall_s": (0.1, 86400), "cpu_s": (0.1, 86400), "memory_mb": (64, 1 << 20),
                  "file_mb": (1, 1 << 16), "processes": (1, 4096), "output_kb": (1, 1 << 16),
                  "feedback_chars": (0, 20000)}
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"Limits.{name} must be a number in [{low}, {high}], got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What the optimizer learns from one evaluation: validated, bounded, picklable."""

    ok: bool
    value: float | None        # a finite float when ok, else None
    feedback: str | None       # bounded text from the evaluator (or the failure line)
    metrics: dict[str, float | int | str | bool] = field(default_factory=dict)
    reason: str | None = None  # one line when not ok
    stdout: str = ""           # capped
    stderr: str = ""           # capped
    wall_s: float = 0.0
    cpu_s: float = 0.0


def _parse_spec(spec: str) -> dict[str, str]:
    """'pkg.mod:fn' or 'path/file.py:fn' -> {"module"| "path", "function"}; ValueError, one line."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(f"evaluator {spec!r}: expected 'pkg.mod:function' or 'path/file.py:function'")
    target, function = spec.rsplit(":", 1)
    if not function.isidentifier():
        raise ValueError(f"evaluator {spec!r}: {function!r} is not a function name")
    if target.endswith(".py"):
        return {"path": os.path.abspath(target), "function": function}
    if not all(part.isidentifier() for part in target.split(".")):
        raise ValueError(f"evaluator {spec!r}: {target!r} is not a module name (or a .py file)")
    return {"module": target, "function": function}


def _defines(path: str, function: str) -> bool:
    """Whether the file defines ``function`` at top level (read, never imported or run)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return True
        if isinstance(node, (ast.Assign, ast.ImportFrom, ast.Import)):
            names = [getattr(t, "id", None) for t in getattr(node, "targets", [])]
            names += [a.asname or a.name for a in getattr(node, "names", [])]
            if function in names:
                return True
    return False


def _others_can_read(path: str) -> bool:
    """The file o+r and its folder o+x (the folders above are bound in for the sandbox if need be)."""
    try:
        return bool(os.stat(path).st_mode & 0o004 and os.stat(os.path.dirname(path)).st_mode & 0o001)
    except OSError:
        return False


def check_evaluator(spec: str) -> None:
    """Validate an evaluator spec before any budget is spent: ValueError with one line, else None."""
    parsed = _parse_spec(spec)
    path = parsed.get("path")
    if path is None:
        try:
            found = importlib.util.find_spec(parsed["module"])
        except (ImportError, ValueError) as exc:
            raise ValueError(f"evaluator {spec!r}: cannot import {parsed['module']!r}: {exc}") from None
        if found is None:
            raise ValueError(f"evaluator {spec!r}: no module named {parsed['module']!r}")
        path = found.origin if found.origin and found.origin.endswith(".py") else None
    elif not os.path.isfile(path):
        raise ValueError(f"evaluator {spec!r}: no file {path}")
    if path is not None and isolation().separate_uids and "module" in parsed and not _others_can_read(path):
        raise ValueError(f"evaluator {spec!r}: {path} is not readable by the sandbox's unprivileged uid "
                         "(make it and its folder world-readable, or name it as 'path/file.py:function')")
    try:
        if path is not None and not _defines(path, parsed["function"]):
            raise ValueError(f"evaluator {spec!r}: {path} defines no {parsed['function']!r}")
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"evaluator {spec!r}: cannot read {path}: {exc}") from None


def _sys_path(spec: dict[str, str]) -> list[str]:
    """The parent's import path, explicit (``-I`` ignores PYTHONPATH and the cwd): where the evaluator
    module, llmopt and the site-packages are found here, they are found in the sandbox."""
    paths = [os.path.realpath(p or os.getcwd()) for p in sys.path]
    roots = [os.path.dirname(os.path.dirname(os.path.dirname(_RUNNER)))]
    if "module" in spec:
        try:
            top = importlib.util.find_spec(spec["module"].split(".")[0])
        except (ImportError, ValueError):
            top = None
        if top is not None:
            places = list(top.submodule_search_locations or []) or [top.origin or ""]
            roots += [os.path.dirname(os.path.realpath(p)) for p in places if p]
    return list(dict.fromkeys(paths + [os.path.realpath(r) for r in roots]))


def _request(source: str, spec: dict[str, str], kwargs: dict[str, Any], limits: Limits,
             iso: Isolation, tmp: str, deadline: float, result_fd: int) -> dict[str, Any]:
    sys_path = _sys_path(spec)
    if "path" in spec:  # its text travels with the request: the sandbox's uids may not reach the file
        with open(spec["path"], encoding="utf-8") as handle:
            spec = dict(spec, text=handle.read())
    needed = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
              os.path.dirname(_RUNNER), *sys_path]
    covers, writable = mount_plan(needed) if iso.private_tmp else ([], [])
    return {"source": source, "evaluator": spec, "kwargs": kwargs, "sys_path": sys_path,
            "limits": limits.to_dict(), "uids": iso.fresh_uids(), "covers": covers,
            "writable": writable, "needed": needed, "python": sys.executable,
            "workdir": "/tmp/llmopt-sandbox" if iso.private_tmp else os.path.join(tmp, "work"),
            # a candidate process in a group of its own is killed whole on its timeout; without a pid
            # namespace or uids of its own to sweep, it stays in the evaluation's group (killed at the end)
            "own_groups": "pid" in iso.namespaces or iso.separate_uids, "deadline": deadline, "result_fd": result_fd,
            "drop_caps": list(iso.drop_caps)}


def evaluate_in_sandbox(source: str, evaluator: str, *, limits: Limits = Limits(),
                        kwargs: dict[str, Any] | None = None) -> Outcome:
    """Run ``evaluator(candidate, **kwargs)`` on the program ``source`` in isolation.

    Never raises for anything the candidate or the evaluator does (that is an Outcome with ok=False
    and a one-line reason); raises ValueError only for bad arguments (spec, kwargs not JSON)."""
    spec = _parse_spec(evaluator)
    if "path" in spec and not os.path.isfile(spec["path"]):
        raise ValueError(f"evaluator {evaluator!r}: no file {spec['path']}")
    kwargs = dict(kwargs or {})
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"evaluator kwargs must be JSON: {exc}") from None
    iso = isolation()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmopt-sandbox-", ignore_cleanup_errors=True) as tmp:
        if iso.separate_uids:
            os.chmod(tmp, 0o711)
        result_r, result_w = os.pipe()
        try:  # room for the largest result line, so the evaluator never blocks writing it
            fcntl.fcntl(result_w, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        request = _request(source, spec, kwargs, limits, iso, tmp, started + limits.wall_s, result_w)
        try:
            return _run(request, iso, limits, tmp, started, (result_r, result_w))
        finally:
            os.close(result_r)


def _run(request: dict[str, Any], iso: Isolation, limits: Limits, tmp: str, started: float,
         pipe: tuple[int, int]) -> Outcome:
    path = os.path.join(tmp, "request.json")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
        json.dump(request, handle)
    out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(
                [*iso.prefix, sys.executable, "-I", "-S", "-B", _RUNNER, "supervise", path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp, env=_runner.child_env(tmp),
                pass_fds=(pipe[1],), start_new_session=True)
        except OSError as exc:  # the machine refused a process (EAGAIN, ENOMEM): this trial fails
            reason = f"sandbox failed to start: {type(exc).__name__}: {exc}"
            return Outcome(ok=False, value=None, feedback=reason, reason=reason,
                           wall_s=round(time.monotonic() - started, 4))
        finally:
            os.close(pipe[1])
    code, timed_out, cpu = _wait(proc, started + limits.wall_s + _GRACE_S)
    _clean_up(proc.pid, request["uids"], iso)
    result = _read_result(pipe[0])
    stdout, stderr = _capped(out_path, limits.output_kb), _capped(err_path, limits.output_kb)
    verdict = judge(result, code, timed_out, limits.to_dict(), stderr)
    return Outcome(ok=verdict.ok, value=verdict.value, feedback=verdict.feedback,
                   metrics=verdict.metrics, reason=verdict.reason, stdout=stdout, stderr=stderr,
                   wall_s=round(time.monotonic() - started, 4), cpu_s=round(cpu, 4))


def _wait(proc: subprocess.Popen[bytes], until: float) -> tuple[int, bool, float]:
    """(exit code or -signal, timed out, CPU seconds of the reaped tree); kills the group at ``until``."""
    pidfd = _runner._pidfd(proc.pid)
    if pidfd is None:  # no pidfds here: poll every 10 ms
        while not _runner._exited(proc.pid) and time.monotonic() < until:
            time.sleep(0.01)
        timed_out = not _runner._exited(proc.pid)
    else:
        try:
            timed_out = not select.select([pidfd], [], [], max(0.0, until - time.monotonic()))[0]
        finally:
            os.close(pidfd)
    if timed_out:
        _kill_group(proc.pid)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, timed_out, usage.ru_utime + usage.ru_stime


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _alive(uids: list[int]) -> list[int]:
    """Pids of live processes owned by ``uids`` (a /proc scan; the sandbox's uids are used by no one
    else). Zombies do not count: they run nothing, and init reaps them when it gets to it."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids and not _zombie(name):
                    found.append(int(name))
            except OSError:
                pass
    return found


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
        return handle.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _clean_up(pgid: int, uids: list[int] | None, iso: Isolation) -> None:
    """Nothing of the evaluation survives it: its group, and (fallbacks) every process of its uids."""
    _kill_group(pgid)
    if not uids:
        return
    deadline = time.monotonic() + 2.0
    while _alive(uids) and time.monotonic() < deadline:
        if "pid" not in iso.namespaces:  # no namespace to take them down: kill(-1) as each uid
            for uid in uids:
                subprocess.run([sys.executable, "-I", "-S", "-c", "import os; os.kill(-1, 9)"],
                               user=uid, group=uid, extra_groups=[], env={}, check=False)
        time.sleep(0.01)


def _read_result(fd: int, cap: int = 1 << 20) -> bytes:
    """What the evaluator left in the pipe (it has exited): at most ``cap`` bytes, never blocking."""
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size <= cap:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _capped(path: str, kb: int) -> str:
    """The head and tail of a captured stream, ``kb`` KiB in all (tracebacks live at the end)."""
    size = os.path.getsize(path)
    limit = kb * 1024
    with open(path, "rb") as handle:
        if size <= limit:
            data = handle.read()
        else:
            head = handle.read(limit // 2)
            handle.seek(size - limit // 2)
            data = head + f"\n... [{size - limit} bytes cut] ...\n".encode() + handle.read()
    return data.decode("utf-8", errors="replace")


__all__ = ["Limits", "Outcome", "check_evaluator", "evaluate_in_sandbox", "isolation"]
