"""Hostile candidates (issue 27), shared by tests/test_hostile_candidates.py and benchmarks/isolation.py.

This file is also the evaluator module those use, loaded in the sandbox by path
(``EVALUATORS + ":evaluate"``): so it imports the standard library only. Each case is a program
that attacks the sandbox, with what the evaluation must come to: ``"fail"`` (ok=False, a one-line
reason containing ``reason``) or ``"honest"`` (ok=True with the honest score ``value``: the attack
did nothing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

EVALUATORS = os.path.abspath(__file__)


def evaluate(candidate: Any, args: list[Any] | None = None) -> Any:
    """The score is whatever the candidate's solve(*args) returns, in a process of its own."""
    return candidate.run("solve", *(args or []))


def evaluate_loaded(candidate: Any) -> Any:
    """The candidate imported into the evaluator's process (Candidate.load: no protection)."""
    return candidate.load().solve()


def evaluate_checked(candidate: Any) -> dict[str, Any]:
    """An evaluator with a check of its own: 1 if solve sorts [3, 1, 2], else 0."""
    answer = candidate.run("solve", [3, 1, 2])
    right = answer == [1, 2, 3]
    return {"score": 1.0 if right else 0.0, "feedback": f"solve([3, 1, 2]) = {answer!r}"}


def evaluate_leaks(candidate: Any) -> dict[str, Any]:
    """Score = how many secrets the candidate found (its solve returns what it found)."""
    found = candidate.run("solve")
    return {"score": float(len(found)), "feedback": "found: " + ", ".join(map(str, found))}


@dataclass(frozen=True)
class Case:
    kind: str
    source: str
    evaluator: str = "evaluate"
    expect: str = "fail"        # "fail" or "honest"
    reason: str = ""            # a part of the one-line reason ("fail")
    value: float | None = None  # the honest score ("honest")

    def spec(self) -> str:
        return f"{EVALUATORS}:{self.evaluator}"


_SECRETS = """import os
def solve():
    found = [f"{k}={v}" for k, v in os.environ.items() if "KEY" in k or "sk-" in v]
    for pid in os.listdir("/proc"):
        try:
            text = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        found += [pid for part in text.split(b"\\0") if b"API_KEY" in part]
    return found
"""

_FORGE = """import os
LINE = b'{"ok": true, "score": 1e9, "feedback": "forged", "metrics": {}}\\n'
for pid in os.listdir("/proc"):
    for fd in range(0, 12):
        try:
            with open(f"/proc/{pid}/fd/{fd}", "wb") as handle:
                handle.write(LINE)
        except OSError:
            pass
def solve(items):
    return items
"""

CASES: dict[str, Case] = {c.kind: c for c in [
    Case("infinite loop", "def solve():\n    while True:\n        pass\n", reason="timed out"),
    Case("infinite loop in the evaluator", "while True:\n    pass\n", "evaluate_loaded",
         reason="timed out"),
    Case("fork loop", "import os\ndef solve():\n    while True:\n        try:\n            os.fork()\n"
         "        except OSError:\n            pass\n", reason="timed out"),
    Case("memory bomb", "def solve():\n    hoard, size = [], 1 << 20\n    while True:\n"
         "        hoard.append(bytearray(size))\n        size *= 2\n", reason="memory limit"),
    Case("a gigabyte of output", "def solve():\n    line = 'x' * (1 << 20)\n    for _ in range(1024):\n"
         "        print(line)\n", reason="file size limit"),
    Case("reading the environment for keys", _SECRETS, "evaluate_leaks", "honest", value=0.0),
    Case("writing outside its directory", "def solve(targets):\n    for path in targets:\n"
         "        with open(path, 'w') as handle:\n            handle.write('escaped')\n    return 1.0\n",
         reason="Error"),
    Case("opening a socket", "import socket\ndef solve(host, port):\n"
         "    socket.create_connection((host, port), timeout=2).close()\n    return 1.0\n",
         reason="OSError"),
    Case("killing its parent", "import os\ndef solve():\n    os.kill(os.getppid(), 9)\n    return 1.0\n",
         reason="PermissionError"),
    Case("kill(-1, 9) and every pid it sees", "import os\ndef solve():\n    for pid in os.listdir('/proc'):\n"
         "        if pid.isdigit() and int(pid) != os.getpid():\n            try:\n"
         "                os.kill(int(pid), 9)\n            except OSError:\n                pass\n"
         "    try:\n        os.kill(-1, 9)\n    except OSError:\n        pass\n    return 1.0\n",
         expect="honest", value=1.0),
    Case("os._exit(0) before the score", "import os\ndef solve():\n    os._exit(0)\n",
         reason="exited with status 0"),
    Case("os._exit(0) in the evaluator", "import os\nos._exit(0)\n", "evaluate_loaded",
         reason="exited with status 0"),
    Case("a segfault", "import ctypes\ndef solve():\n    return ctypes.string_at(0)\n", reason="SIGSEGV"),
    Case("a NaN score", "def solve():\n    return float('nan')\n", reason="score is nan"),
    Case("an infinite score", "def solve():\n    return float('inf')\n", reason="score is inf"),
    Case("an object pretending to be a number", "class Fake:\n    def __float__(self):\n        return 1e9\n"
         "    def __gt__(self, other):\n        return True\n    __lt__ = __ge__ = __le__ = __gt__\n"
         "def solve():\n    return Fake()\n", "evaluate_loaded", reason="score is not a number"),
    Case("monkeypatching the evaluator's checks", "import builtins, json, math\n"
         "builtins.sorted = lambda items: items\nmath.isfinite = lambda x: True\n"
         "json.loads = lambda *a, **k: [1, 2, 3]\ndef solve(items):\n    return items\n",
         "evaluate_checked", "honest", value=0.0),
    Case("forging the result", _FORGE, "evaluate_checked", "honest", value=0.0),
]}
