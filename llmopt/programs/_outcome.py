"""Judging what came back from the sandbox: the optimizer trusts nothing it has not validated here.

The evaluator's one JSON line may have been forged or bent by code the evaluator loaded in-process;
so every field is checked again: the score a finite number (NaN, infinities, strings and objects
pretending to be numbers rejected with a one-line reason), feedback bounded text, metrics at most 32
simple entries. Failures without a line (a timeout, a signal, an early exit) get their reason from
the exit status.
"""
from __future__ import annotations

import json
import math
import signal
from dataclasses import dataclass, field
from typing import Any, Mapping

from llmopt.programs._runner import SETUP_FAILED

Limits = Mapping[str, Any]  # Limits.to_dict(): this module sits below sandbox.py, which defines Limits

_MAX_METRICS, _MAX_KEY, _MAX_TEXT = 32, 64, 200


@dataclass(frozen=True)
class Verdict:
    ok: bool
    value: float | None = None
    feedback: str | None = None
    metrics: dict[str, float | int | str | bool] = field(default_factory=dict)
    reason: str | None = None


def _line(text: Any, cap: int = 500) -> str:
    return " ".join(str(text).split())[:cap]


def _failed(reason: str) -> Verdict:
    reason = _line(reason)
    return Verdict(ok=False, feedback=reason, reason=reason)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_reason(code: int, limits: Limits, stderr: str) -> str:
    """Why the evaluator ended without a result, from the supervisor's exit code (128+signal)."""
    if code == SETUP_FAILED:
        last = [line for line in stderr.splitlines() if line.strip()]
        return f"sandbox failed to start: {last[-1] if last else 'no reason given'}"
    if code > 128 or code < 0:
        name = _signal_name(code - 128 if code > 128 else -code)
        return {"SIGXCPU": f"CPU limit {limits['cpu_s']:g} s exceeded (evaluator killed)",
                "SIGXFSZ": f"file size limit {limits['file_mb']} MB exceeded (evaluator killed)",
                "SIGKILL": "evaluator killed (SIGKILL: memory or process limit?)",
                }.get(name, f"evaluator crashed with {name}")
    return f"evaluator exited with status {code} before reporting a score"


def _limit_reason(error: str, kind: str, limits: Limits) -> str:
    """Name the limit a failure hit, where the error says which."""
    if kind == "MemoryError" or error.startswith("MemoryError"):
        return f"memory limit {limits['memory_mb']} MB exceeded: {error}"
    if "File too large" in error or kind == "SIGXFSZ":
        return f"file size limit {limits['file_mb']} MB exceeded: {error}"
    if kind == "SIGXCPU":
        return f"CPU limit {limits['cpu_s']:g} s exceeded: {error}"
    return error


def _score(raw: Any) -> tuple[float | None, str | None]:
    if isinstance(raw, dict):
        return None, f"score is not a number (got {_line(raw.get('not_a_number'), 60)})"
    if isinstance(raw, str):
        return None, f"score is {_line(raw, 40)}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None, f"score is not a number (got {type(raw).__name__})"
    try:
        value = float(raw)
    except OverflowError:
        return None, "score is too large to be a float"
    return (value, None) if math.isfinite(value) else (None, f"score is {value!r}")


def _metrics(raw: Any) -> dict[str, float | int | str | bool]:
    """At most 32 entries of short keys and simple values; anything else is dropped."""
    if not isinstance(raw, dict):
        return {}
    kept: dict[str, float | int | str | bool] = {}
    for key, value in list(raw.items())[:_MAX_METRICS]:
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, (bool, int, float, str)):
            kept[str(key)[:_MAX_KEY]] = value[:_MAX_TEXT] if isinstance(value, str) else value
    return kept


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite constant {name}")


def judge(raw: bytes, code: int, timed_out: bool, limits: Limits, stderr: str) -> Verdict:
    """The evaluation's verdict from the result line, the exit code and whether it was killed."""
    if timed_out:
        return _failed(f"timed out after {limits['wall_s']:g} s (process group killed)")
    if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
        return _failed(_exit_reason(code, limits, stderr) if not raw else "malformed result from the sandbox")
    try:
        message = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return _failed("malformed result from the sandbox")
    if not isinstance(message, dict):
        return _failed("malformed result from the sandbox")
    if message.get("ok") is not True:
        return _failed(_limit_reason(_line(message.get("error", "evaluation failed")),
                                     _line(message.get("kind", ""), 40), limits))
    value, problem = _score(message.get("score"))
    if problem:
        return _failed(problem)
    feedback = message.get("feedback")
    feedback = feedback[: limits["feedback_chars"]] if isinstance(feedback, str) else None
    return Verdict(ok=True, value=value, feedback=feedback, metrics=_metrics(message.get("metrics")))
