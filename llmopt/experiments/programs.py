"""A user's program problem as a run: :func:`evolve` from Python, ``llmopt run program`` from the
command line (the :class:`CLI` plugin, in the ``llmopt.problems`` entry-point group).

    import llmopt
    result = llmopt.evolve("my_eval.py:evaluate", open("initial.py").read(),
                           description="Write construct() so that ...", steps=10, workers=2)

Both build a :class:`~llmopt.programs.problem.ProgramProblem` and run it on the same loop, store
and budgets as every ``llmopt run``. Candidates are scored ``workers`` at a time, each in its own
isolated process (:mod:`llmopt.programs.sandbox`), on a thread pool that only waits for them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from llmopt.budget import Budget
from llmopt.experiments.functions import BUDGET_KEYWORDS, make_proposer, run_problem, tracking_for
from llmopt.experiments.paths import base_dir, beside
from llmopt.llm import LLM
from llmopt.llm.embedded import DEFAULT_MODEL
from llmopt.novelty import check_threshold
from llmopt.optimizer import RunResult
from llmopt.programs.problem import ProgramProblem, Stage
from llmopt.programs.sandbox import Limits, isolation
from llmopt.proposers import Proposer


def evolve(evaluator: str | Stage | Sequence[str | Stage], initial: str, *, description: str,
           direction: str = "maximize", model: str | LLM = DEFAULT_MODEL, proposer: str | Proposer = "llm",
           steps: int = 20, seed: int = 0, store: str | os.PathLike[str] | None = None, name: str | None = None,
           resume: bool = False, proposals_per_step: int = 4, max_rounds: int = 3, workers: int = 1,
           budget: Budget | None = None, llm_settings: dict[str, Any] | None = None,
           proposer_options: dict[str, Any] | None = None, progress: bool = True, mlflow: str | None = None,
           mlflow_experiment: str | None = None, novelty_threshold: float | None = None,
           **options: Any) -> RunResult:
    """Optimize a program: ``evaluator`` (``"pkg.mod:evaluate"``, ``"path/file.py:evaluate"``, or a
    cascade of them) scores the candidates made from ``initial`` (a program's source). Keywords as
    :func:`llmopt.minimize` (``model``, ``proposer``, ``steps``, ``store``, the budget's ``max_evals``
    ...), ``workers`` (candidates scored at once), ``mlflow`` and ``mlflow_experiment`` (MLflow
    tracking), ``novelty_threshold`` (a candidate whose block, comments aside, is that similar to a
    scored one is not scored; docs/populations.md), and ProgramProblem's ``replies``, ``limits``,
    ``kwargs`` (of the evaluator), ``optimum``, ``name`` of the problem via ``problem_name``."""
    budget_options = {k: options.pop(k) for k in BUDGET_KEYWORDS if k in options}
    if budget is not None and (budget_options or steps != 20):
        raise ValueError("give either budget= or steps= and the budget keywords, not both")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (candidates scored at once), got {workers!r}")
    check_threshold(novelty_threshold)  # one line, before the problem is built
    problem_name = options.pop("problem_name", "program")
    problem = ProgramProblem(evaluator, initial, description=description, direction=direction, name=problem_name,
                             **options)
    chosen = make_proposer(proposer, model, problem, proposer_options=proposer_options, **(llm_settings or {}))
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else contextlib.nullcontext() as pool:
        return run_problem(problem, chosen, budget or Budget(max_steps=steps, **budget_options), seed=seed,
                           store=store, name=name, resume=resume, proposals_per_step=proposals_per_step,
                           max_rounds=max_rounds, progress=progress, executor=pool,
                           tracking=tracking_for(mlflow, mlflow_experiment), novelty_threshold=novelty_threshold)


def _kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``--arg key=value`` pairs: the value read as JSON when it is JSON (numbers, lists), else a string."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--arg {item!r}: expected key=value with key a Python name")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _evaluator_spec(spec: str, base: str | None) -> str:
    """A ``path/file.py:fn`` spec made absolute (relative to a grid file's directory, else the
    current one), since the evaluator runs in a sandbox with a directory of its own."""
    path, sep, fn = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{os.path.abspath(beside(base, path))}:{fn}"
    return spec


def stages_of(evaluators: Sequence[str], thresholds: Sequence[float] | None, kwargs: Mapping[str, Any],
              base: str | None) -> list[Stage]:
    """The cascade of ``--evaluator`` (repeated) and ``--threshold`` (one per evaluator but the last)."""
    thresholds = list(thresholds or [])
    if len(thresholds) != len(evaluators) - 1:
        raise ValueError(f"--threshold: give one per --evaluator but the last ({len(evaluators) - 1}), "
                         f"got {len(thresholds)}")
    return [Stage(_evaluator_spec(e, base), thresholds[i] if i < len(thresholds) else None, dict(kwargs))
            for i, e in enumerate(evaluators)]


def program_options(args: Any) -> dict[str, Any]:
    """ProgramProblem's keywords from the options of :func:`add_program_arguments`; says on stderr
    (once) how this machine isolates candidates."""
    announce_isolation()
    return {"limits": Limits(wall_s=args.time_limit, cpu_s=args.time_limit, memory_mb=args.memory_mb),
            "replies": args.replies}


def add_program_arguments(group: Any) -> None:
    """The options every program problem's ``llmopt run`` has: the sandbox's limits and the replies asked for."""
    group.add_argument("--time-limit", type=float, default=Limits().wall_s, metavar="S",
                       help=f"seconds of wall and CPU time for one evaluation (default {Limits().wall_s:g})")
    group.add_argument("--memory-mb", type=int, default=Limits().memory_mb,
                       help=f"memory (address space) of each evaluation process, MB (default {Limits().memory_mb})")
    group.add_argument("--replies", choices=("full", "edits"), default="full",
                       help="ask for the changed part in full, or as SEARCH/REPLACE edits of the best program "
                            "shown (default full; either form is accepted)")


@functools.cache
def announce_isolation() -> None:
    """Say on stderr, once per process (a grid builds many problems), how candidates are isolated on
    this machine and what is missing."""
    print(f"llmopt: candidates run isolated: {isolation().describe()}", file=sys.stderr)


class BuiltinProgramCLI:
    """The command-line glue of a program problem that ships its evaluator and initial program
    (``llmopt run circle-packing``): a subclass sets ``HELP``, ``NAME``, ``EVALUATOR``,
    ``DESCRIPTION`` and ``initial()``; its options are the sandbox's limits and the replies' form."""

    HELP = ""
    NAME = "program"
    EVALUATOR = ""
    DESCRIPTION = ""

    @staticmethod
    def initial() -> str:
        raise NotImplementedError

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        add_program_arguments(group)

    @classmethod
    def from_args(cls, args: Any) -> ProgramProblem:
        return ProgramProblem(cls.EVALUATOR, cls.initial(), description=cls.DESCRIPTION, direction="maximize",
                              name=cls.NAME, **program_options(args))


class CLI:
    """``llmopt run program``: a user's program problem (--evaluator, --initial, --description)."""

    HELP = "your own program problem: --evaluator mod:fn --initial program.py --description TEXT"

    @staticmethod
    def add_arguments(group: Any) -> None:
        group.add_argument("--evaluator", required=True, action="append", metavar="MODULE:FUNCTION",
                           help="the evaluator: package.module:function or path/file.py:function, called in a "
                                "sandbox with the candidate, returning a score or {score, feedback, metrics}; "
                                "repeat it for a cascade (quick check first)")
        group.add_argument("--threshold", type=float, action="append",
                           help="a cascade's bar: a candidate goes on to the next --evaluator only if its score "
                                "here reaches it (one per --evaluator but the last)")
        group.add_argument("--initial", required=True, metavar="FILE",
                           help="the initial program; # EVOLVE-BLOCK-START / # EVOLVE-BLOCK-END lines mark the "
                                "part the model may change (none: the whole program)")
        group.add_argument("--description", required=True,
                           help="what the program must do and how it is scored, in words (opens the meta-prompt)")
        group.add_argument("--minimize", action="store_true", help="lower scores are better (default: maximize)")
        group.add_argument("--arg", action="append", metavar="KEY=VALUE",
                           help="a keyword argument of the evaluator (VALUE read as JSON where it is JSON)")
        group.add_argument("--optimum", type=float, help="the best score, if known (gaps are measured against it)")
        add_program_arguments(group)

    @staticmethod
    def from_args(args: Any) -> ProgramProblem:
        base = base_dir(args)
        try:
            initial = Path(beside(base, args.initial)).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--initial {args.initial}: {exc.strerror or exc}") from None
        stages = stages_of(args.evaluator, args.threshold, _kwargs(args.arg), base)
        return ProgramProblem(stages, initial, description=args.description,
                              direction="minimize" if args.minimize else "maximize", optimum=args.optimum,
                              **program_options(args))
