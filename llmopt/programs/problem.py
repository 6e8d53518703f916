"""A program as a solution: :class:`ProgramProblem`, any program problem in a few lines.

The model sees the initial program, with the part it may change marked (``# EVOLVE-BLOCK-START``
/ ``# EVOLVE-BLOCK-END``; no markers: the whole program), and earlier versions of that part with
their scores. It replies with the part in a fenced code block, or with SEARCH/REPLACE edits of
the parent it was shown (:mod:`llmopt.programs.source`). A reply without code, an edit that does
not apply, code that does not parse: an INVALID trial with the reason.

A candidate is scored by the user's evaluator, a function named ``"pkg.mod:evaluate"`` or
``"path/to/file.py:evaluate"`` that receives the candidate (:class:`llmopt.programs.candidate.Candidate`)
and returns a score or a mapping with ``score``, ``feedback`` and ``metrics``. Evaluator and
candidate never run in llmopt's process: each evaluation is a fresh, limited, isolated process
(:mod:`llmopt.programs.sandbox`), and the candidate's own calls run in processes of their own.
An evaluation that crashes, hangs or is killed is a FAILED trial with its one-line reason, and it
counts in the evaluation budget.

Cascades: ``stages`` evaluate a candidate in turn (a quick check, then the full evaluation); a
candidate goes on only while its score reaches each stage's threshold. Its value is the score of
the last stage it reached; ``metrics["stage"]`` records which, and every stage's time is counted.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from llmopt.problem import Direction, Evaluation, ParseError, Problem, clamp
from llmopt.programs.sandbox import Limits, check_evaluator, evaluate_in_sandbox
from llmopt.programs.source import Template, apply_edits, canonical, code_in, edits_in, normalized, syntax_error

REPLIES = ("full", "edits")


class CandidateFailed(RuntimeError):
    """An evaluation that did not give a score (the candidate or the evaluator crashed, hung, was
    killed, or returned no finite number): the optimizer records a FAILED trial with this line."""


@dataclass(frozen=True)
class Stage:
    """One stage of a cascade: the evaluator, its keyword arguments, and the score a candidate must
    reach here to go on to the next stage (None: always go on; the last stage's is not used)."""

    evaluator: str
    threshold: float | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator, "threshold": self.threshold, "kwargs": dict(self.kwargs)}


def _stages(evaluator: str | Stage | Sequence[str | Stage], kwargs: Mapping[str, Any]) -> tuple[Stage, ...]:
    items = [evaluator] if isinstance(evaluator, (str, Stage)) else list(evaluator)
    if not items:
        raise ValueError("evaluator: give at least one evaluator ('pkg.mod:evaluate' or 'path/file.py:evaluate')")
    out = tuple(item if isinstance(item, Stage) else Stage(str(item), kwargs=dict(kwargs)) for item in items)
    for stage in out:
        check_evaluator(stage.evaluator)
    return out


_FLOW = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith, ast.IfExp, ast.ListComp,
         ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _shape(template: Template, block: str) -> tuple[int, int, int]:
    """(non-blank lines, branches and loops, calls) of ``block``, counted on the nodes of the whole
    program that start inside the block (the fixed part does not count); a program that does not
    parse counts its lines only."""
    lines = sum(1 for line in block.splitlines() if line.strip())
    try:
        tree = ast.parse(template.program(block))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return lines, 0, 0
    first = template.prefix.count("\n") + 1
    last = first + max(block.count("\n"), 1) - 1
    inside = [node for node in ast.walk(tree) if first <= getattr(node, "lineno", 0) <= last]
    return lines, sum(isinstance(n, _FLOW) for n in inside), sum(isinstance(n, ast.Call) for n in inside)


class ProgramProblem(Problem[str]):
    """Programs as solutions. ``initial``: the source of a Python program (a module), with optional
    markers around the part the model may change; ``evaluator``: a spec, or a list of them (or of
    :class:`Stage`) for a cascade; ``kwargs``: keyword arguments of every evaluator given as a spec;
    ``replies``: what the answer format asks for, a whole block ("full") or SEARCH/REPLACE edits of
    the parent ("edits"; a full block is accepted either way); ``limits``: of every evaluation."""

    solution_noun = "program"
    solution_plural = "programs"
    value_noun = "score"
    solution_label = "program"
    value_label = "score"
    default_shown = 4  # programs are long: the embedded model's context holds a few
    default_scores = "significant"
    can_draw = False  # no random program: the random control refuses; llm-iid is the control

    def __init__(self, evaluator: str | Stage | Sequence[str | Stage], initial: str, *, description: str,
                 direction: Direction | str = "maximize", name: str = "program", replies: str = "full",
                 limits: Limits | None = None, kwargs: Mapping[str, Any] | None = None,
                 optimum: float | None = None) -> None:
        if not isinstance(initial, str) or not initial.strip():
            raise ValueError("initial: give the source of a Python program (the text, not a path)")
        if not isinstance(description, str) or not description.strip():
            raise ValueError("description: say in a sentence or two what the program must do and how it is scored")
        if replies not in REPLIES:
            raise ValueError(f"replies must be one of {', '.join(REPLIES)}, got {replies!r}")
        self.template = Template.of(initial)  # ValueError on bad markers
        bad = syntax_error(initial)
        if bad:
            raise ValueError(f"initial: the program does not parse ({bad})")
        self.stages = _stages(evaluator, kwargs or {})
        self.direction = Direction(direction)
        self.name, self.description, self.replies = name, description.strip(), replies
        self.limits = limits or Limits()
        self._optimum = optimum

    # --- text ------------------------------------------------------------------------------------
    def describe(self) -> str:
        where = ("You may change only the part between the lines # EVOLVE-BLOCK-START and "
                 "# EVOLVE-BLOCK-END; the rest stays as it is." if self.template.marked else
                 "You may change the whole program.")
        return (f"{self.description}\n\nThe initial program:\n```python\n{self.template.program(self.template.block)}```\n"
                f"{where} Below are versions of the part you may change, with their scores.")

    def operator_context(self) -> str:
        return self.describe().rsplit(" Below are versions", 1)[0]

    def answer_format(self) -> str:
        part = "the part between the markers" if self.template.marked else "the whole program"
        full = f"Write {part} in full in one ```python fenced code block."
        if self.replies == "full":
            return full
        return ("Reply with edits of the best program above (the initial program if none is shown), each "
                "written as\n<<<<<<< SEARCH\n<lines of that program, exactly>\n=======\n<the new lines>\n"
                f">>>>>>> REPLACE\nOr: {full}")

    def render(self, text: str, value: str | None) -> str:
        body = f"{self.solution_label}:\n```python\n{text}```"
        return body if value is None else f"{body}\n{self.value_label}:\n{value}"

    def encode(self, solution: str) -> str:
        return solution

    def decode(self, text: str) -> str:
        return self.revise(text, None)

    def revise(self, text: str, parent: str | None) -> str:
        """A reply's block: its edits applied to ``parent`` (None: the initial block), or its code."""
        edits = edits_in(text)
        block = apply_edits(parent if parent is not None else self.template.block, edits) if edits else code_in(text)
        bad = syntax_error(self.template.program(block))
        if bad:
            raise ParseError(f"the program does not parse: {bad}")
        return block

    def from_text(self, text: str) -> str:
        return text

    def key(self, solution: str) -> Hashable:
        return canonical(self.template.program(solution))

    def similarity_text(self, solution: str) -> str:
        """The block without comments, blank lines or layout (the fixed part would only add sameness)."""
        return normalized(solution)

    def program(self, solution: str) -> str:
        """The whole program of a solution (its block in the fixed part)."""
        return self.template.program(solution)

    # --- features (MAP-Elites) -----------------------------------------------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """The block's length in non-blank lines, its branches and loops (if, for, while, try, with,
        conditional expressions, comprehensions), and its calls."""
        return ("lines", "control_flow", "calls")

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        """Up to four times the initial block's count of each (at least 40 lines, 16 branches and
        loops, 32 calls): room for programs that grow, bins that still separate small ones."""
        if getattr(self, "_initial_shape", None) is None:  # parsed once per instance
            self._initial_shape = _shape(self.template, self.template.block)
        lines, flow, calls = self._initial_shape
        return ((0.0, float(max(40, 4 * lines))), (0.0, float(max(16, 4 * flow))), (0.0, float(max(32, 4 * calls))))

    def features(self, solution: str) -> tuple[float, ...]:
        return clamp(_shape(self.template, solution), self.feature_ranges())

    # --- scoring -----------------------------------------------------------------------------------
    def score(self, solution: str) -> float:
        return self.evaluate(solution).value

    def evaluate(self, solution: str) -> Evaluation:
        """Every stage in its own sandbox, until one is failed or its threshold is not reached."""
        source, done, metrics = self.template.program(solution), None, {}
        wall = cpu = 0.0
        for i, stage in enumerate(self.stages, 1):
            out = evaluate_in_sandbox(source, stage.evaluator, limits=self.limits, kwargs=dict(stage.kwargs))
            wall, cpu = wall + out.wall_s, cpu + out.cpu_s
            if not out.ok or out.value is None:
                where = f"stage {i} of {len(self.stages)}: " if len(self.stages) > 1 else ""
                raise CandidateFailed(f"{where}{out.reason or 'no score'}")
            done, metrics = out, dict(out.metrics)
            if stage.threshold is not None and i < len(self.stages) and self.direction.better(stage.threshold,
                                                                                                 out.value):
                break
        assert done is not None and done.value is not None
        metrics.update(stage=i, wall_s=round(wall, 4), cpu_s=round(cpu, 4))
        return Evaluation(float(done.value), metrics=metrics, feedback=done.feedback or None)

    def initial_solutions(self, rng: np.random.Generator) -> list[str]:
        return [self.template.block]

    def random_solution(self, rng: np.random.Generator) -> str:
        raise NotImplementedError("a program has no random draw: compare with --proposer llm-iid, or a "
                                  "classical reference (llmopt baselines)")

    def random_space(self) -> str:
        return "none (programs have no random draw)"

    def typical_text(self) -> str:
        return self.template.block

    @property
    def optimum(self) -> float | None:
        return self._optimum

    def config(self) -> dict[str, Any]:
        initial = self.template.program(self.template.block)
        return {"name": self.name, "direction": self.direction.value, "description": self.description,
                "initial": initial, "initial_sha256": hashlib.sha256(initial.encode()).hexdigest(),
                "stages": [s.to_dict() for s in self.stages], "replies": self.replies,
                "limits": self.limits.to_dict(), "optimum": self._optimum}
