"""A user's function as a run: :func:`minimize` and :func:`maximize` from Python, ``llmopt run function``
from the command line (the :class:`CLI` plugin, in the ``llmopt.problems`` entry-point group).

    import llmopt
    result = llmopt.minimize(lambda s: (s["x"] - 3) ** 2,
                             {"type": "object", "properties": {"x": {"type": "integer", "minimum": -20, "maximum": 20}},
                              "required": ["x"]},
                             steps=10)

Both build a :class:`FunctionProblem` and run it on the same loop, store and budgets as every
``llmopt run``: OPRO on the embedded model by default (offline), or ``proposer="random"``,
``"optuna:tpe"``, ``"optuna:cmaes"``, or any :class:`Proposer`; ``model`` any model string litellm
routes, or an :class:`LLM` (``llmopt.testing.ScriptedLLM`` in tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from llmopt.budget import Budget
from llmopt.experiments.paths import base_dir, beside
from llmopt.experiments.progress import RunProgress
from llmopt.experiments.tracking import Tracking, run_tracked
from llmopt.experiments.tracking import check as check_tracking
from llmopt.function_problem import FunctionProblem
from llmopt.llm import LLM
from llmopt.llm.embedded import DEFAULT_MODEL
from llmopt.metaprompt import MetaPromptConfig
from llmopt.novelty import check_threshold
from llmopt.optimizer import Optimizer, RunResult, default_run_name
from llmopt.problem import Problem
from llmopt.proposers import Proposer, registry
from llmopt.store import RunStore, StoreBase, open_store

DEFAULT_DESCRIPTION = "Help me {verb} a function of the input below. I have some inputs and the function values at them."

#: Keywords of :func:`minimize` that go to the :class:`Budget` (``steps`` is its ``max_steps``).
BUDGET_KEYWORDS = ("max_evals", "max_calls", "max_tokens", "max_usd", "max_seconds", "target", "patience",
                   "stop_when_solved")


def make_proposer(proposer: str | Proposer, model: str | LLM, problem: Problem, *, structured: str = "auto",
                  metaprompt: MetaPromptConfig | None = None, proposer_options: dict[str, Any] | None = None,
                  **llm_settings: Any) -> Proposer:
    """A registered proposer by name (``"llm"``, ``"llm-iid"``, ``"random"``, ``"optuna:tpe"``, a
    plugin's...; see :mod:`llmopt.proposers.registry`), built from ``proposer_options`` (its own
    options, ``per_call`` or ``per-call``; one it does not have is refused), or a Proposer as is.
    ``structured`` and ``metaprompt`` are options of the proposers that have them."""
    if isinstance(proposer, Proposer):
        return proposer
    spec = registry.get(proposer)
    spec.check_model_settings(llm_settings, lambda k: f"llm_settings {k}")
    options = dict(proposer_options or {})
    if structured != "auto" and spec.option("structured") is not None:
        options.setdefault("structured", structured)
    if metaprompt is not None:
        options["metaprompt"] = metaprompt  # refused in one line by a proposer without a meta-prompt
    spec.check_options(options, problem)  # one line before the model is built and checked
    llm = None
    if spec.uses_llm:
        llm = model if isinstance(model, LLM) else LLM.from_model(model, **llm_settings)
        llm.check_credentials()  # a hosted model without its key: refused before anything is spent
    return spec.build(options, llm, problem)


def optimize(objective: Callable[[Any], float], schema: dict[str, Any], *, direction: str,
             description: str | None = None, model: str | LLM = DEFAULT_MODEL, proposer: str | Proposer = "llm",
             steps: int = 50, seed: int = 0, store: str | os.PathLike[str] | RunStore | None = None,
             name: str | None = None, resume: bool = False, proposals_per_step: int = 8, max_rounds: int = 3,
             budget: Budget | None = None, structured: str = "auto", metaprompt: MetaPromptConfig | None = None,
             llm_settings: dict[str, Any] | None = None, proposer_options: dict[str, Any] | None = None,
             progress: bool = True, accept_changed_objective: bool = False, mlflow: str | None = None,
             mlflow_experiment: str | None = None, novelty_threshold: float | None = None,
             **options: Any) -> RunResult:
    """One run of a :class:`FunctionProblem`; see :func:`minimize`."""
    check_threshold(novelty_threshold)  # one line, before the problem or a model is built
    budget_options = {k: options.pop(k) for k in BUDGET_KEYWORDS if k in options}
    if budget is not None and (budget_options or steps != 50):
        raise ValueError("give either budget= or steps= and the budget keywords, not both")
    budget = budget or Budget(max_steps=steps, **budget_options)
    verb = "minimize" if direction == "minimize" else "maximize"
    problem_name = options.pop("problem_name", "function")  # ``name`` is the run's, as everywhere else
    problem = FunctionProblem(objective, schema, description=description or DEFAULT_DESCRIPTION.format(verb=verb),
                              direction=direction, name=problem_name, **options)
    chosen = make_proposer(proposer, model, problem, structured=structured, metaprompt=metaprompt,
                           proposer_options=proposer_options, **(llm_settings or {}))
    return run_problem(problem, chosen, budget, seed=seed, store=store, name=name, resume=resume,
                       proposals_per_step=proposals_per_step, max_rounds=max_rounds, progress=progress,
                       accept_changed_objective=accept_changed_objective,
                       tracking=tracking_for(mlflow, mlflow_experiment), novelty_threshold=novelty_threshold)


def tracking_for(mlflow: str | None, experiment: str | None) -> Tracking | None:
    """The ``mlflow=URI`` (and ``mlflow_experiment=NAME``) keywords as a :class:`Tracking`."""
    if experiment is not None and not mlflow:
        raise ValueError("mlflow_experiment= needs mlflow=URI (where to log)")
    return Tracking(mlflow, experiment) if mlflow else None


def run_problem(problem: Problem, proposer: Proposer, budget: Budget, *, seed: int = 0,
                store: str | os.PathLike[str] | RunStore | None = None, name: str | None = None, resume: bool = False,
                proposals_per_step: int = 8, max_rounds: int = 3, progress: bool = True, executor: Any = None,
                accept_changed_objective: bool = False, tracking: Tracking | None = None,
                novelty_threshold: float | None = None) -> RunResult:
    """One run of any problem from Python, with its store opened and closed here when given as a path
    (what :func:`minimize` and :func:`llmopt.experiments.programs.evolve` share); logged to MLflow
    with ``tracking`` (checked first: MLflow missing is an ImportError before anything is created)."""
    if tracking is not None:
        check_tracking(tracking, problem.name)
    own_store = store is not None and not isinstance(store, StoreBase)
    run_store = open_store(os.fspath(store)) if own_store else store  # type: ignore[arg-type]
    try:
        if run_store is not None and name is None:
            name = default_run_name(problem, proposer, seed)
        opt = Optimizer(problem, proposer, seed=seed, budget=budget, proposals_per_step=proposals_per_step,
                        max_rounds=max_rounds, store=run_store, name=name, resume=resume,
                        accept_changed_objective=accept_changed_objective, novelty_threshold=novelty_threshold)
        return _run_with_progress(opt, progress, executor, tracking)
    finally:
        if own_store:
            run_store.close()  # type: ignore[union-attr]


def _run_with_progress(opt: Optimizer, enabled: bool, executor: Any = None,
                       tracking: Tracking | None = None) -> RunResult:
    """Run to a stop with the command line's progress bar on stderr (a minute of embedded-model
    calls is not a silent wait), unless ``enabled`` is False; logged to MLflow with ``tracking``."""
    bar = RunProgress(opt.budget.max_steps, enabled=enabled)
    bar.attach(opt)
    bar(opt, force=True)
    try:
        return run_tracked(opt, tracking, lambda on_step: opt.run(on_step=on_step, executor=executor), bar)
    finally:
        bar.close()


def minimize(objective: Callable[[Any], float], schema: dict[str, Any], **options: Any) -> RunResult:
    """Minimize ``objective(value)`` over the JSON values ``schema`` admits; returns the :class:`RunResult`.

    Keywords: ``description`` (opens the meta-prompt), ``model`` (default: the embedded model,
    offline), ``proposer`` (a registered name: "llm", "llm-iid", "llm-scs", "evoprompt-ga",
    "evoprompt-de", "map-elites", "random", "optuna:tpe", "optuna:cmaes", a plugin's; or a Proposer), ``steps``
    (default 50), ``seed``, ``store`` (a SQLite path, a postgresql:// URL or an open store: the run is kept and resumable;
    default: none), ``name``, ``resume`` (refused when the objective's code changed since the run
    began, unless ``accept_changed_objective=True``), ``proposals_per_step``, ``max_rounds``, the budget's
    ``max_evals``, ``max_calls``, ``max_tokens``, ``max_usd``, ``max_seconds``, ``target``,
    ``patience`` (or ``budget=Budget(...)``), ``structured``, ``metaprompt``, ``llm_settings`` (for
    ``LLM.from_model``: temperature, api_base, ...), ``proposer_options`` (the proposer's own options,
    as ``llmopt run --proposer NAME --help`` lists them: ``per_call``, ``samples_per_request``,
    ``population``, ...; one the proposer does not have is refused),
    ``novelty_threshold`` (0 < T <= 1: a proposal at least T similar to a scored solution is recorded as a
    duplicate, never scored; see docs/populations.md),
    ``progress`` (default True: a progress bar on stderr, as the command line draws), ``mlflow``
    (an MLflow tracking URI: the run is logged there, see docs/tracking.md) and ``mlflow_experiment``, and
    FunctionProblem's ``initial``,
    ``num_starts``, ``random_solution``, ``optimum``, ``features`` (with ``feature_ranges`` and
    ``feature_names``: the measures ``proposer="map-elites"`` bins), ``name`` of the problem via ``problem_name``.
    """
    return optimize(objective, schema, direction="minimize", **options)


def maximize(objective: Callable[[Any], float], schema: dict[str, Any], **options: Any) -> RunResult:
    """Maximize ``objective(value)``; the keywords of :func:`minimize`."""
    return optimize(objective, schema, direction="maximize", **options)


def load_objective(spec: str, base: str | None = None) -> Callable[[Any], float]:
    """``package.module:function`` or ``path/to/file.py:function`` -> the function (one-line errors).

    The current directory is importable, as for ``python -m``: a module beside the user's schema
    file loads without installing it. ``base`` (a grid file's directory): its files and modules
    come first (see :mod:`llmopt.experiments.paths`)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--objective {spec!r}: expected package.module:function or path/file.py:function")
    try:
        module = _import_objective_module(spec, module_name, base)
    except ValueError:
        raise
    except Exception as exc:  # the user's module failed to import: say which and why, in one line
        raise ValueError(f"--objective {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"--objective {spec!r}: {module_name} has no {attr}")
    if not callable(fn):
        raise ValueError(f"--objective {spec!r}: {attr} is not a function")
    return fn  # type: ignore[return-value]


def _import_objective_module(spec: str, module_name: str, base: str | None) -> Any:
    if module_name.endswith(".py"):
        path = Path(beside(base, module_name))
        if not path.is_file():
            where = "" if base is None else f" (nor beside the grid file, in {base})"
            raise ValueError(f"--objective {spec!r}: no file {module_name}{where}")
        loader = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
        sys.modules.setdefault(path.stem, module)
        loader.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if base is not None:  # the grid file's directory first
        folder = os.path.abspath(base)
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    return importlib.import_module(module_name)


def load_schema(text: str, base: str | None = None) -> dict[str, Any]:
    """``--schema``: a JSON file (``base``: a grid file's directory, read first), or the JSON itself
    (starting with ``{``)."""
    if text.lstrip().startswith("{"):
        source, label = text, "--schema"
    else:
        try:
            source, label = Path(beside(base, text)).read_text(encoding="utf-8"), f"--schema {text}"
        except OSError as exc:
            raise ValueError(f"--schema {text}: {exc.strerror or exc}") from None
    try:
        schema = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(schema, dict):
        raise ValueError(f"{label}: a JSON schema is an object, got {type(schema).__name__}")
    return schema


class CLI:
    """``llmopt run function``: a user's objective over the JSON values of a schema."""

    HELP = "your own function: --objective module:function --schema space.json"

    @staticmethod
    def add_arguments(group: Any) -> None:
        group.add_argument("--objective", required=True, metavar="MODULE:FUNCTION",
                           help="the function to optimize: package.module:function or path/file.py:function, "
                                "called with one JSON value, returning a number (the current directory is importable)")
        group.add_argument("--schema", required=True, metavar="FILE",
                           help="JSON schema of a solution (a file, or the JSON itself); bounded numbers and enums "
                                "for random search, optuna and the starting draws")
        group.add_argument("--description", help="what is optimized, in words (opens the meta-prompt; default: generic)")
        group.add_argument("--maximize", action="store_true", help="maximize the function (default: minimize)")
        group.add_argument("--num-starts", type=int, default=5, help="random starting solutions (default 5)")
        group.add_argument("--optimum", type=float, help="the best value, if known (gaps are measured against it)")

    @staticmethod
    def from_args(args: Any) -> FunctionProblem:
        direction = "maximize" if args.maximize else "minimize"
        base = base_dir(args)  # a grid file's directory: its relative paths are read from there
        return FunctionProblem(load_objective(args.objective, base), load_schema(args.schema, base), direction=direction,
                               description=args.description or DEFAULT_DESCRIPTION.format(verb=direction),
                               num_starts=args.num_starts, optimum=args.optimum)
