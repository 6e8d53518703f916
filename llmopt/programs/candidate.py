"""What a user's evaluator receives: the candidate program, callable only in processes of its own.

This module runs inside the sandbox (the evaluator's process imports it by path, without importing
``llmopt``), so it uses the standard library only. ``Candidate.run`` asks the sandbox's supervisor to
start a fresh process as a uid other than the evaluator's, so the candidate cannot signal the
evaluator, read its memory or descriptors, or patch the checks it runs; ``Candidate.load`` imports the
candidate into the evaluator's own process instead (fast, and no protection against tampering).
"""
from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import types
from typing import Any

_MAX_REPLY = 64 << 20  # the most a candidate call may send back (bytes of JSON)


class CandidateError(Exception):
    """The candidate raised, timed out, died, or returned non-JSON; ``str()`` is one line."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.kind = kind  # the candidate's exception type, a signal name, or "timeout"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An evaluator's line for a candidate's failure: a ``CandidateError``'s message (already one line
    naming what the candidate did), anything else's type and message."""
    text = " ".join(str(exc).split())[:limit]
    if isinstance(exc, CandidateError) or type(exc).__name__ == "CandidateError":  # a test's stand-in too
        return text or "the candidate failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def to_json(value: Any) -> Any:
    """json.dumps' ``default``: numpy arrays and scalars (anything with tolist()/item()) as lists/numbers."""
    for name in ("tolist", "item"):
        method = getattr(value, name, None)
        if callable(method):
            return method()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _Channel:
    """The evaluator's line to the supervisor: one request per call, with the call's descriptors."""

    def __init__(self, control: socket.socket, deadline: float) -> None:
        self.control = control
        self.deadline = deadline  # time.monotonic() at which the whole evaluation is killed
        self.lock = threading.Lock()

    def start(self, function: str, args_r: int, result_w: int) -> socket.socket:
        mine, theirs = socket.socketpair()
        with self.lock:
            socket.send_fds(self.control, [json.dumps({"function": function}).encode()],
                            [args_r, result_w, theirs.fileno()])
        theirs.close()
        return mine


def _read_line(fd: int, until: float, cap: int) -> bytes | None:
    """Bytes up to the first newline, or None at the deadline; EOF gives what came (maybe b'')."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = until - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > cap:
            return b"".join(chunks)


def _reply(conn: socket.socket, until: float) -> dict[str, Any]:
    line = _read_line(conn.fileno(), until, 1 << 16)
    return json.loads(line) if line else {}


def _death(status: int | None, function: str) -> str:
    """Why a candidate process ended without an answer, in words."""
    if status is None:
        return f"candidate process for {function}() did not report its exit"
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.Signals._value2member_map_ else -status
        hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)",
                "SIGKILL": " (killed: memory or process limit?)"}.get(str(name), "")
        return f"candidate crashed with {name}{hint} in {function}()"
    return f"candidate exited with status {status} before {function}() returned"


class Candidate:
    """The candidate program: its text, its file, and two ways to call it."""

    def __init__(self, source: str, path: str, *, _channel: _Channel | None = None) -> None:
        self.source = source
        self.path = path
        self._channel = _channel
        self._module: types.ModuleType | None = None

    def __repr__(self) -> str:
        return f"Candidate(path={self.path!r}, {len(self.source)} chars)"

    def run(self, function: str, *args: Any, timeout: float | None = None) -> Any:
        """function(*args) of the candidate in a fresh process of its own (never the evaluator's:
        the candidate cannot touch the evaluator's checks); args and result are JSON (numpy
        arrays/scalars converted with tolist()/item()); raises CandidateError."""
        if self._channel is None:
            raise CandidateError("Candidate.run works only inside evaluate_in_sandbox")
        try:
            payload = json.dumps(list(args), default=to_json).encode()
        except (TypeError, ValueError) as exc:
            raise CandidateError(f"arguments to {function}() are not JSON: {exc}", "TypeError") from None
        limit = self._channel.deadline - time.monotonic()
        limit = min(limit, timeout) if timeout is not None else limit
        return self._call(function, payload, time.monotonic() + max(0.0, limit), limit)

    def _call(self, function: str, payload: bytes, until: float, limit: float) -> Any:
        args_r, args_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            conn = self._channel.start(function, args_r, result_w)  # type: ignore[union-attr]
        finally:
            os.close(args_r)
            os.close(result_w)
        try:
            started = _reply(conn, until)
            if "pid" not in started:
                raise CandidateError(started.get("error", f"{function}() could not be started"))
            threading.Thread(target=_feed, args=(args_w, payload), daemon=True).start()
            args_w = -1
            line = _read_line(result_r, until, _MAX_REPLY)
            if line is None:
                conn.sendall(b"kill\n")
                _reply(conn, time.monotonic() + 5)
                raise CandidateError(f"{function}() timed out after {limit:.3g} s (killed)", "timeout")
            status = _reply(conn, until + 5).get("status")
            return _answer(line, status, function)
        finally:
            for fd in (args_w, result_r):
                if fd >= 0:
                    os.close(fd)
            conn.close()

    def load(self) -> types.ModuleType:
        """import the candidate in the evaluator's process: fast, no protection against tampering."""
        if self._module is None:
            spec = importlib.util.spec_from_file_location("candidate", self.path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules["candidate"] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            self._module = module
        return self._module


def _feed(fd: int, payload: bytes) -> None:
    """Write the arguments (a thread: a candidate that never reads them must not block the caller)."""
    try:
        while payload:
            payload = payload[os.write(fd, payload):]
    except OSError:
        pass
    finally:
        os.close(fd)


def _answer(line: bytes, status: int | None, function: str) -> Any:
    """The call's value, or CandidateError with the candidate's one line or the way it died."""
    if len(line) > _MAX_REPLY:
        raise CandidateError(f"{function}() returned more than {_MAX_REPLY >> 20} MB of JSON")
    if not line.endswith(b"\n"):
        kind = signal.Signals(-status).name if status is not None and status < 0 else "exit"
        raise CandidateError(_death(status, function), kind)
    try:
        reply = json.loads(line)
    except ValueError:
        raise CandidateError(f"{function}() sent a malformed reply") from None
    if "error" in reply:
        raise CandidateError(str(reply["error"]), str(reply.get("kind")))
    return reply.get("value")
