"""Unit tests of a program evaluator without the sandbox: :class:`InProcessCandidate`.

    from llmopt.testing import InProcessCandidate
    verdict = my_eval.evaluate(InProcessCandidate("def construct():\\n    return [1, 2]\\n"))

It keeps :class:`llmopt.programs.candidate.Candidate`'s contract (arguments and result through JSON,
numpy arrays as lists, any failure a ``CandidateError`` naming the exception and the candidate's
line) but runs the program in the test's own process: for programs the test wrote, never for a
model's. What the sandbox adds (limits, isolation, kills) is tested in llmopt's own suite.
"""

from __future__ import annotations

import json
import traceback
import types
from typing import Any

from llmopt.programs.candidate import CandidateError, to_json

FILE = "candidate.py"


class InProcessCandidate:
    """A trusted program as an evaluator sees a candidate: ``source``, ``path``, ``run``, ``load``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.path = FILE

    def load(self) -> types.ModuleType:
        module = types.ModuleType("candidate")
        module.__file__ = FILE
        exec(compile(self.source, FILE, "exec"), module.__dict__)  # noqa: S102 - the test's own program
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
