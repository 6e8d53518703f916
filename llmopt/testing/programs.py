"""Unit tests of a program evaluator without the sandbox: :class:`InProcessCandidate`.

    from llmopt.testing import InProcessCandidate
    verdict = my_eval.evaluate(InProcessCandidate("def construct():\\n    return [1, 2]\\n"))

It keeps :class:`llmopt.programs.candidate.Candidate`'s contract (arguments and result through JSON,
numpy arrays as lists, any failure a ``CandidateError`` naming the exception and the candidate's
line) but runs the program in the test's own process: for programs the test wrote, never for a
model's. What the sandbox adds (limits, isolation, kills) is tested in llmopt's own suite.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import traceback
import types
from typing import Any

from llmopt.programs.candidate import CandidateError, to_json

FILE = "candidate.py"


class _Source(importlib.abc.SourceLoader):
    """A module's source held in memory, reported as ``candidate.py`` (tracebacks name its lines)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def get_filename(self, fullname: str) -> str:
        return FILE

    def get_data(self, path: str) -> bytes:
        return self.source.encode("utf-8")


class InProcessCandidate:
    """A trusted program as an evaluator sees a candidate: ``source``, ``path``, ``run``, ``load``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.path = FILE

    def load(self) -> types.ModuleType:
        """The program imported as a module named ``candidate`` (from ``source``, by importlib)."""
        spec = importlib.util.spec_from_loader("candidate", _Source(self.source), origin=FILE)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module

    def run(self, function: str, *args: Any, timeout: float | None = None) -> Any:
        """``function(*args)`` of the program, its result through JSON; ``timeout`` is not enforced here."""
        try:
            result = getattr(self.load(), function)(*json.loads(json.dumps(args, default=to_json)))
            return json.loads(json.dumps(result, default=to_json))
        except Exception as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILE]
            where = f" ({FILE} line {frames[-1].lineno})" if frames else ""
            raise CandidateError(f"{type(exc).__name__}{where}: {exc}", type(exc).__name__) from None
