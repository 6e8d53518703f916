"""The sandbox's own side, run as a script: ``python -I -S -B _runner.py MODE ...``.

Three modes, three kinds of process (docs/programs-isolation.md has the picture):

- ``supervise REQUEST``: the first process in the sandbox (pid 1 of its pid namespace where there is
  one, still root when the optimizer is). It mounts private tmpfs over the world-writable
  directories, makes the working directories, starts the evaluator as one unprivileged uid and,
  on the evaluator's request, each candidate process as ANOTHER uid. It passes the result pipe
  (fd 3) to the evaluator only, so nothing a candidate does can reach the optimizer's result.
- ``evaluate REQUEST``: the user's evaluator, given a ``Candidate``; writes one JSON line to fd 3.
- ``call CONFIG``: one ``Candidate.run`` call: args on stdin, one JSON line on fd 3.

The optimizer imports this file only for ``child_env`` and ``SETUP_FAILED``; in the sandbox it
imports only the standard library and its sibling ``candidate.py`` (by path: ``-I -S`` puts nothing
on sys.path, and importing ``llmopt`` costs 0.6 s).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import resource
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a candidate's process starts faster without them
    import socket
    import subprocess
    import threading

SETUP_FAILED = 250  # the supervisor could not build the sandbox (its reason is on stderr)
_dumps, _write = json.dumps, os.write  # taken before any user code can patch them


def apply_limits(limits: dict[str, Any], *, nproc: bool) -> None:
    """Lower this process's rlimits (hard = soft, CPU's one second above: untrusted code cannot raise them)."""
    cpu = max(1, math.ceil(limits["cpu_s"]))
    pairs = [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, limits["memory_mb"] << 20),
             (resource.RLIMIT_FSIZE, limits["file_mb"] << 20), (resource.RLIMIT_NOFILE, 256),
             (resource.RLIMIT_CORE, 0)]
    if nproc:
        pairs.append((resource.RLIMIT_NPROC, limits["processes"]))
    for res, value in pairs:
        hard = resource.getrlimit(res)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # CPU: SIGXCPU at the soft limit (named in the reason), SIGKILL a second later
        top = value + 1 if res == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY else value
        resource.setrlimit(res, (value, top))


def child_env(home: str) -> dict[str, str]:
    """The whole environment of every sandboxed process: an allow-list, nothing of the parent's."""
    one = "1"
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home,
            "OMP_NUM_THREADS": one, "OPENBLAS_NUM_THREADS": one, "MKL_NUM_THREADS": one}


def one_line(exc: BaseException, prefer: str | None = None) -> str:
    """'Type (file.py line N): message': the line of a syntax error, else of the deepest frame in
    ``prefer``, else of the deepest frame of user code (not importlib's, not this file's)."""
    import traceback

    message = " ".join(str(exc).split())[:500]
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" ({os.path.basename(exc.filename or '?')} line {exc.lineno})"
        message = " ".join(str(exc.msg).split())[:500]
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
        chosen = ([f for f in frames if prefer and f.filename == prefer]
                  or [f for f in frames if f.filename != os.path.abspath(__file__)] or frames)
        ours = not chosen or chosen[-1].filename == os.path.abspath(__file__)  # no user line to name
        where = "" if ours else f" ({os.path.basename(chosen[-1].filename)} line {chosen[-1].lineno})"
    return f"{type(exc).__name__}{where}: {message}" if message else f"{type(exc).__name__}{where}"


def write_line(fd: int, text: str) -> None:
    """One newline-terminated JSON message (JSON has no raw newlines), then close the fd."""
    data = (text + "\n").encode()
    while data:
        data = data[_write(fd, data):]
    os.close(fd)


def load_file(name: str, path: str) -> Any:
    """Import a file as module ``name`` (registered in sys.modules first, as an import would)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _candidate_module() -> Any:
    """candidate.py, also importable as ``llmopt.programs.candidate`` without importing llmopt."""
    here = os.path.dirname(os.path.abspath(__file__))
    return load_file("llmopt.programs.candidate", os.path.join(here, "candidate.py"))


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (no polling), where the kernel has one."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, leaving it to be reaped (WNOWAIT)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


# --- the supervisor ---------------------------------------------------------------------------


def _cover(covers: list[str], writable: list[str], needed: list[str], size_mb: int) -> None:
    """A fresh tmpfs over each of ``covers`` (our mount namespace only), then each ``needed`` path
    under one bound back in place: world-writable directories become private and size-bounded, and
    a directory the sandbox's uids cannot traverse (/root, where pyenv keeps python) shows them only
    what they need. The needed paths are held open (O_PATH) across the cover and bound from
    /proc/self/fd, so no staging directory is needed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: bytes, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
        if libc.mount(source, target.encode(), fstype, flags, data) != 0:
            raise OSError(ctypes.get_errno(), f"mount {source.decode()} on {target}")

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip("/") + "/")

    kept = [p for p in sorted(set(needed)) if any(under(p, c) for c in covers) and os.path.exists(p)]
    kept = [p for p in kept if not any(q != p and under(p, q) for q in kept)]
    held = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in kept]
    for target in covers:
        if os.path.isdir(target) and not os.path.islink(target):
            mode = "1777" if target in writable else "0755"
            mount(b"tmpfs", target, b"tmpfs", 2 | 4, f"size={size_mb}m,mode={mode}".encode())
    old = os.umask(0o022)
    for path, fd in held:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        mount(f"/proc/self/fd/{fd}".encode(), path, None, 4096 | 16384, None)  # MS_BIND | MS_REC
        os.close(fd)
    os.umask(old)


def _make_dir(path: str, uid: int | None, mode: int) -> str:
    os.makedirs(path, exist_ok=True)
    if uid is not None:
        os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def _write_file(path: str, text: str) -> None:
    """Root-owned, read-only for everyone: the sandbox's uids can read it, never change it."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o444)


class Supervisor:
    """Starts the evaluator and, on its requests, candidate processes; reports the evaluator's exit."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        uids = request["uids"]
        self.eval_uid, self.cand_uid = (uids[0], uids[1]) if uids else (None, None)
        self.python, self.runner = request["python"], os.path.abspath(__file__)
        self.keep: list[subprocess.Popen[bytes]] = []  # referenced until waited (subprocess reaps orphans)

    def prepare(self) -> str:
        """Mounts, directories, the candidate's file and the evaluator's request; returns eval's request."""
        req = self.request
        if req["covers"]:
            _cover(req["covers"], req["writable"], req["needed"], max(64, 4 * req["limits"]["file_mb"]))
        base = _make_dir(req["workdir"], None, 0o711)
        self.eval_dir = _make_dir(os.path.join(base, "eval"), self.eval_uid, 0o700)
        self.cand_dir = _make_dir(os.path.join(base, "cand"), self.cand_uid, 0o711)
        self.cand_path = os.path.join(self.cand_dir, "candidate.py")
        _write_file(self.cand_path, req["source"])
        spec = req["evaluator"]
        if spec.get("path"):  # a copy the evaluator's uid can read, wherever the user keeps the file
            copy = os.path.join(self.eval_dir, os.path.basename(spec["path"]))
            _write_file(copy, spec.pop("text"))
            spec = dict(spec, path=copy)
        self.call_config = os.path.join(base, "call.json")
        common = {"sys_path": req["sys_path"], "limits": req["limits"], "nproc": bool(req["uids"])}
        _write_file(self.call_config, json.dumps(dict(common, candidate=self.cand_path)))
        eval_request = os.path.join(self.eval_dir, "request.json")
        _write_file(eval_request, json.dumps(dict(common, evaluator=spec, kwargs=req["kwargs"],
                                                  candidate=self.cand_path, source=req["source"],
                                                  deadline=req["deadline"])))
        return eval_request

    def spawn(self, argv: list[str], uid: int | None, cwd: str, *, stdin: int | None = None,
              fds: tuple[int, ...] = (), own_group: bool = False) -> int:
        """A sandboxed python as ``uid``, given exactly ``fds`` besides 0-2 (numbers passed in argv)."""
        import subprocess

        proc = subprocess.Popen(
            [*self.request["drop_caps"], self.python, "-I", "-S", "-B", self.runner, *argv],
            stdin=subprocess.DEVNULL if stdin is None else stdin, cwd=cwd, env=child_env(cwd),
            pass_fds=fds, close_fds=True, user=uid, group=uid,
            extra_groups=[] if uid is not None else None, process_group=0 if own_group else None)
        self.keep.append(proc)
        return proc.pid

    def serve_call(self, conn: socket.socket, function: str, args_r: int, result_w: int) -> None:
        """One Candidate.run: start the process, say its pid, kill it on request, report its exit."""
        try:
            pid = self.spawn(["call", self.call_config, function, str(result_w)], self.cand_uid,
                             self.cand_dir, stdin=args_r, fds=(result_w,),
                             own_group=self.request["own_groups"])
        except OSError as exc:
            conn.sendall((_dumps({"error": f"could not start: {exc}"}) + "\n").encode())
            return
        finally:
            os.close(args_r)
            os.close(result_w)
        conn.sendall((_dumps({"pid": pid}) + "\n").encode())
        status = self.wait(pid, conn)
        conn.sendall((_dumps({"status": status}) + "\n").encode())
        conn.close()

    def wait(self, pid: int, conn: socket.socket | None) -> int:
        """Wait for ``pid``; a message on ``conn`` kills it (its group where it has one)."""
        import select

        pidfd = _pidfd(pid)
        watched = ([pidfd] if pidfd is not None else []) + ([conn] if conn is not None else [])
        while True:  # without pidfds (Linux < 5.3, not Linux): a 10 ms poll instead
            ready = select.select(watched, [], [], None if pidfd is not None else 0.01)[0]
            if (pidfd in ready) if pidfd is not None else _exited(pid):
                break
            if conn is not None and conn in ready:
                watched.remove(conn)
                self.kill(pid)
        if pidfd is not None:
            os.close(pidfd)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def kill(self, pid: int) -> None:
        try:
            if self.request["own_groups"]:
                os.killpg(pid, 9)
            else:
                os.kill(pid, 9)
        except OSError:
            pass

    def run(self) -> int:
        """Start the evaluator, serve its calls until it exits; exit code: its code, or 128+signal."""
        import socket
        import threading

        eval_request = self.prepare()
        mine, theirs = socket.socketpair()
        result_fd, control = self.request["result_fd"], theirs.fileno()
        pid = self.spawn(["evaluate", eval_request, str(result_fd), str(control)], self.eval_uid,
                         self.eval_dir, fds=(result_fd, control))
        os.close(result_fd)
        theirs.close()
        done = threading.Event()
        threading.Thread(target=self._accept, args=(mine, done), daemon=True).start()
        code = self.wait(pid, None)
        done.set()
        return code if code >= 0 else 128 - code

    def _accept(self, control: socket.socket, done: threading.Event) -> None:
        import socket
        import threading

        while not done.is_set():
            try:
                msg, fds, _flags, _addr = socket.recv_fds(control, 4096, 3)
            except OSError:
                return
            if not msg:
                return
            try:  # the evaluator's process may run candidate code (load()): trust no message
                function = str(json.loads(msg.decode())["function"])
            except (ValueError, KeyError, TypeError):
                function = ""
            if len(fds) != 3 or not function.isidentifier():
                for fd in fds:
                    os.close(fd)
                continue
            conn = socket.socket(fileno=fds[2])
            threading.Thread(target=self.serve_call, args=(conn, function, fds[0], fds[1]),
                             daemon=True).start()


def supervise(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            request = json.load(handle)
        return Supervisor(request).run()
    except Exception as exc:  # the sandbox could not be built: say why on stderr, exit SETUP_FAILED
        print(f"sandbox setup failed: {one_line(exc)}", file=sys.stderr, flush=True)
        return SETUP_FAILED


# --- the evaluator and the candidate's calls ----------------------------------------------------


def _enter(config: dict[str, Any]) -> None:
    """Limits first, then the import path: all before any user code runs."""
    apply_limits(config["limits"], nproc=config["nproc"])
    sys.dont_write_bytecode = True
    sys.path[:] = config["sys_path"]


def _resolve(spec: dict[str, Any]) -> Any:
    if spec.get("path"):
        module = load_file("_llmopt_evaluator", spec["path"])
    else:
        module = importlib.import_module(spec["module"])
    if not callable(getattr(module, spec["function"], None)):
        raise AttributeError(f"the evaluator module defines no function {spec['function']!r}")
    return getattr(module, spec["function"])


def evaluate(path: str, result_fd: int, control_fd: int) -> int:
    """Run the user's evaluator on the candidate; exactly one JSON line goes to ``result_fd``."""
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    _enter(config)
    import socket

    os.set_inheritable(result_fd, False)
    os.set_inheritable(control_fd, False)
    try:
        module = _candidate_module()
        channel = module._Channel(socket.socket(fileno=control_fd), config["deadline"])
        candidate = module.Candidate(config["source"], config["candidate"], _channel=channel)
        from_user = _resolve(config["evaluator"])(candidate, **config["kwargs"])
        payload = _encode_result(from_user, config["limits"])
    except BaseException as exc:  # noqa: BLE001 - whatever the evaluator raises becomes the reason
        kind = getattr(exc, "kind", None) or type(exc).__name__
        line = str(exc) if type(exc).__name__ == "CandidateError" else f"evaluator raised {one_line(exc)}"
        payload = {"ok": False, "error": line[:1000], "kind": kind}
    write_line(result_fd, _dumps(payload, default=repr))
    return 0


def _number(value: Any) -> Any:
    """A JSON number for a real number; a string naming the problem otherwise (the parent decides)."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or hasattr(value, "item")):
        return {"not_a_number": type(value).__name__}
    try:
        number = float(value)
    except Exception:  # noqa: BLE001 - an object pretending to be a number
        return {"not_a_number": type(value).__name__}
    return number if math.isfinite(number) else repr(number)


def _encode_result(result: Any, limits: dict[str, Any]) -> dict[str, Any]:
    """The small, bounded result: score, feedback (capped), metrics (<= 32 simple entries)."""
    if not isinstance(result, dict) and hasattr(result, "keys"):
        result = {key: result[key] for key in list(result.keys())[:64]}
    if not isinstance(result, dict):
        return {"ok": True, "score": _number(result), "feedback": None, "metrics": {}}
    if "score" not in result:
        return {"ok": False, "error": "evaluator returned a mapping without 'score'", "kind": "KeyError"}
    feedback = result.get("feedback")
    metrics = result.get("metrics") or {}
    kept = {}
    for key, value in list(metrics.items())[:32] if isinstance(metrics, dict) else []:
        try:
            value = value.item() if hasattr(value, "item") and callable(value.item) else value  # numpy
        except Exception:  # noqa: BLE001 - an array of many items: not a metric
            continue
        if type(value) in (str, int, float, bool):
            kept[str(key)[:64]] = value[:200] if isinstance(value, str) else value
    return {"ok": True, "score": _number(result["score"]), "metrics": kept,
            "feedback": None if feedback is None else str(feedback)[: limits["feedback_chars"]]}


def call(path: str, function: str, result_fd: int) -> int:
    """One candidate call: read the args, import the candidate, call, send one JSON line."""
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    _enter(config)
    os.set_inheritable(result_fd, False)
    def converter(value: Any) -> Any:  # numpy and friends: candidate.py's rule, loaded only if needed
        return _candidate_module().to_json(value)

    try:
        args = json.loads(sys.stdin.buffer.read().decode() or "[]")
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        module = load_file("candidate", config["candidate"])
        if not callable(getattr(module, function, None)):
            raise AttributeError(f"the candidate defines no function {function!r}")
        value = getattr(module, function)(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the evaluator as CandidateError
        data = _dumps({"error": one_line(exc, prefer=config["candidate"]), "kind": type(exc).__name__})
    else:
        try:
            data = _dumps({"value": value}, default=converter)
        except (TypeError, ValueError, RecursionError) as exc:
            data = _dumps({"error": f"{function}() returned a value that is not JSON: {exc}"[:500],
                           "kind": "TypeError"})
    write_line(result_fd, data)
    try:
        sys.stdout.flush()
    except OSError:
        pass
    os._exit(0)  # no atexit handlers of the candidate's


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "supervise":
        return supervise(rest[0])
    if mode == "evaluate":
        return evaluate(rest[0], int(rest[1]), int(rest[2]))
    return call(rest[0], rest[1], int(rest[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
