"""One run from options: the ``llmopt run <problem>`` options (a namespace of settings, parsed by
:mod:`llmopt.cli.run_options` from the command line or a grid cell) made a problem, a proposer
(through the registry) and a budget, opened in a store and run to a stop.

The options are the language of every run: the command line, grid cells (``llmopt compare``)
and the problems' own options all go through one parser and :func:`prepare_run`, so anything a
run can do, a grid can compare.
"""

from __future__ import annotations

from typing import Any

from llmopt import plugins
from llmopt.budget import Budget
from llmopt.executors import open_executor
from llmopt.experiments.progress import RunProgress
from llmopt.experiments.tracking import check as check_tracking
from llmopt.experiments.tracking import run_tracked, tracking_of
from llmopt.llm import LLMConfigError
from llmopt.llm.flags import key_hint, llm_from_args
from llmopt.optimizer import Optimizer, RunResult, default_run_name
from llmopt.problem import Problem
from llmopt.proposers import Proposer, registry
from llmopt.store import RunStore


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def baseline_hook(problem: str, attribute: str) -> Any:
    """``attribute`` of the baseline registered for ``problem`` in the ``llmopt.baselines`` group
    (e.g. ``references``), or None: baselines attach themselves to problems,
    which never import them."""
    baseline = plugins.entry_points("llmopt.baselines").get(problem)
    return getattr(baseline.load(), attribute, None) if baseline is not None else None


def make_proposer(args: Any, problem: Problem) -> Proposer:
    """The proposer ``--proposer`` names, from its options (the registry's spec builds it)."""
    spec = registry.get(args.proposer)
    spec.check_model_settings([k for k in spec.decides if getattr(args, k, None) is not None], lambda k: f"--{k}")
    options = {o.key: getattr(args, o.key) for o in spec.options if o.cli and hasattr(args, o.key)}
    spec.check_options(options, problem)  # one line before the model is built and checked
    return spec.build(options, llm_from_args(args) if spec.uses_llm else None, problem)


def check_credentials(args: Any, problem: Problem, proposer: Proposer) -> None:
    """The optimizer's model, then the problem's own (the plugin's optional ``check_credentials``,
    e.g. a scorer model), has its API key (:meth:`LLM.check_credentials`), else MissingCredentials."""
    llm = getattr(proposer, "llm", None)
    if llm is not None:
        llm.check_credentials(key_hint=key_hint())
    hook = getattr(args.plugin, "check_credentials", None)
    if hook is not None:
        hook(args, problem)


def check_proposer(problem: Problem, proposer: Proposer, seed: int) -> None:
    """A proposer without a model is checked in full here, before any store is created: optuna
    installed, a problem it can search (ValueError, one line). A model's proposer is checked by
    :func:`check_credentials` here and by the optimizer (which validates every proposer) later."""
    if proposer.uses_llm():
        return
    try:
        proposer.validate()
    except ImportError as exc:  # an optional dependency (optuna): the message says how to install it
        raise ValueError(str(exc)) from None
    proposer.bind(problem, seed)  # the optimizer binds it again to the same run


def make_budget(args: Any) -> Budget:
    return Budget(max_steps=args.steps, max_evals=args.max_evals, max_calls=args.max_calls,
                  max_tokens=args.max_tokens, max_usd=args.max_usd, max_seconds=args.max_seconds,
                  target=args.target, patience=None if _early_stop(args) else args.patience or None,
                  stop_when_solved=not args.no_stop_when_solved)


def _early_stop(args: Any) -> bool:
    return getattr(args, "early_stop", None) == "validation"


def check_validation(args: Any, problem: Problem) -> None:
    """The validation options fit together and the problem can be validated (UsageError, one line)."""
    every = getattr(args, "eval_every", None)
    if _early_stop(args) and every is None:
        raise UsageError("--early-stop validation needs --eval-every K (how often to score on the validation split)")
    if _early_stop(args) and args.patience is None:
        raise UsageError("--early-stop validation needs --patience P (validations without improvement)")
    if every is not None and not problem.has_validation:
        raise UsageError(f"--eval-every: problem {problem.name!r} has no validation split to score on "
                         "(prompt optimization: --validation-fraction F gives the task a validation split)")


def check_tracking_args(args: Any, problem: Problem) -> None:
    """``--mlflow``: MLflow is installed and its URI takes the experiment (UsageError, one line)."""
    tracking = tracking_of(args)
    if tracking is None:
        return
    try:
        check_tracking(tracking, problem.name)
    except ImportError as exc:  # the install line
        raise UsageError(str(exc)) from None


def prepare_run(args: Any, calls: bool = True) -> tuple[Problem, Proposer, Budget]:
    """Problem, proposer and budget of a parsed ``llmopt run``; bad settings raise UsageError.

    ``calls``: the run will call its models, so a model whose API key is not set is refused here,
    before any store is created (``False``: a stored run is only read back)."""
    refused = getattr(args, "refused_options", None)
    if refused:  # another proposer's option
        raise UsageError(refused[0])
    try:
        problem = args.plugin.from_args(args)
        check_validation(args, problem)
        proposer = make_proposer(args, problem)
        if calls:
            check_credentials(args, problem, proposer)
            check_proposer(problem, proposer, args.seed)
        budget = make_budget(args)
        if calls:
            check_tracking_args(args, problem)
        preflight = getattr(args.plugin, "preflight", None)
        if preflight is not None:  # e.g. a cost estimate that may refuse the run
            preflight(args, problem, proposer, budget)
    except (ValueError, LLMConfigError) as exc:
        raise UsageError(str(exc)) from None
    return problem, proposer, budget


def open_run(args: Any, store: RunStore, problem: Problem, proposer: Proposer,
             budget: Budget) -> Optimizer:
    name = args.name or default_run_name(problem, proposer, args.seed)  # taken: refused, never renamed
    return Optimizer(problem, proposer, seed=args.seed, budget=budget, proposals_per_step=args.proposals,
                     max_rounds=args.max_rounds, store=store, name=name, resume=args.resume, race=args.race,
                     validate_every=getattr(args, "eval_every", None), validate_top=getattr(args, "validate_top", 3),
                     validation_patience=args.patience if _early_stop(args) else None,
                     accept_changed_objective=getattr(args, "accept_changed_objective", False),
                     command=getattr(args, "command_line", None),
                     novelty_threshold=getattr(args, "novelty_threshold", None))


def execute(opt: Optimizer, args: Any, progress_bar: bool | None = None) -> RunResult:
    """Run to a stop, with a progress bar (unless --quiet, or ``progress_bar`` says otherwise),
    scoring on the chosen executor, logged to MLflow with ``--mlflow``."""
    progress = RunProgress(opt.budget.max_steps, enabled=not args.quiet if progress_bar is None else progress_bar)
    progress.attach(opt)
    progress(opt, force=True)
    try:
        with open_executor(args.executor, args.workers or None, args.dask_scheduler) as executor:
            return run_tracked(opt, tracking_of(args), lambda on_step: opt.run(executor=executor, on_step=on_step),
                               progress)
    finally:
        progress.close()
