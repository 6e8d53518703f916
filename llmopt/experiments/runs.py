"""One run from options: the ``llmopt run <problem>`` options, parsed into a problem, a proposer
and a budget, opened in a store and run to a stop.

The options are the language of every run: the command line, grid cells (``llmopt compare``)
and the problems' own options all go through :func:`run_parser` and :func:`prepare_run`, so
anything a run can do, a grid can compare, checked by one parser.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any

from llmopt.budget import Budget
from llmopt.executors import EXECUTORS, open_executor
from llmopt.experiments.progress import RunProgress
from llmopt.llm import LLMConfigError
from llmopt.llm.flags import add_model_arguments, key_hint, llm_from_args, non_negative, non_negative_int, positive_int
from llmopt.metaprompt import MetaPromptConfig
from llmopt.optimizer import Optimizer, RunResult, default_run_name
from llmopt.problem import Problem
from llmopt.proposers import (
    STRUCTURED,
    EvoPromptDE,
    EvoPromptGA,
    LLMProposer,
    OptunaProposer,
    Proposer,
    RandomProposer,
    SamplingProposer,
)
from llmopt.proposers.evoprompt import DONORS, INITS, POPULATION, SELECTIONS, TEMPERATURE
from llmopt.store import DEFAULT_STORE, RunStore


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def baseline_hook(problem: str, attribute: str) -> Any:
    """``attribute`` of the baseline registered for ``problem`` in the ``llmopt.baselines`` group
    (e.g. ``references``, ``INSTRUCTIONS``), or None: baselines attach themselves to problems,
    which never import them."""
    baseline = entry_points("llmopt.baselines").get(problem)
    return getattr(baseline.load(), attribute, None) if baseline is not None else None


#: The ``--proposer`` choices: OPRO, its LLM controls (independent samples; the latest solutions
#: without scores), the random control, optuna's samplers, EvoPrompt's GA and DE.
PROPOSERS = ("llm", "llm-iid", "llm-scs", "random", "optuna:tpe", "optuna:cmaes", "evoprompt-ga", "evoprompt-de")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--proposer", choices=PROPOSERS, default="llm",
                   help="llm: OPRO; llm-iid: the same model sampled independently, no solutions or scores shown "
                        "(the LLM control); llm-scs: the same model shown the latest --show solutions without their "
                        "scores (sequential conditioned sampling); random: the random-search control; "
                        "optuna:tpe, optuna:cmaes: optuna's TPE or "
                        "CMA-ES sampler on the problem's search space, the classical black-box baselines (needs "
                        "pip install -e '.[classical]' and a problem with a bounded search space, e.g. linreg; "
                        "CMA-ES: one generation per step); "
                        "evoprompt-ga, evoprompt-de: EvoPrompt's genetic algorithm and differential evolution with "
                        "the model as operators, one generation per step (default: llm)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the instance and the run (default 0)")
    g.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite run store (default {DEFAULT_STORE})")
    g.add_argument("--name", help="run name in the store (default: <problem>-<proposer>-seed<S>)")
    g.add_argument("--resume", action="store_true", help="continue the named run (same settings; budgets may grow)")
    g.add_argument("--accept-changed-objective", action="store_true",
                   help="with --resume: continue even though the objective's code changed since the run began "
                        "(its new values mix with the recorded ones; refused without this flag)")
    g.add_argument("--proposals", type=positive_int, default=8, help="valid proposals per step (default 8; optuna:cmaes and "
                   "evoprompt-*: their population instead)")
    g.add_argument("--max-rounds", type=positive_int, default=3,
                   help="sampling rounds per step to replace invalid or duplicate replies (default 3)")
    g.add_argument("--race", type=positive_int, metavar="K",
                   help="race the scoring: score each step's solutions on a growing sample and stop those whose "
                        "confidence bound cannot reach the K-th best value of the earlier steps (prompt "
                        "optimization's scorer calls; --race 1: must be able to beat the best) (default: score all)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--executor", choices=EXECUTORS, default="none",
                   help="where solutions are scored: in the loop (none), threads, processes, or a Dask cluster "
                        "(default none)")
    g.add_argument("--workers", type=positive_int, help="workers of the executor (default: the pool's own)")
    g.add_argument("--dask-scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    b = p.add_argument_group("budget (the first limit reached stops the run)")
    b.add_argument("--steps", type=non_negative_int, default=50,
                   help="max steps; 0 scores only the starting solutions (default 50)")
    b.add_argument("--max-evals", type=non_negative_int, help="max scored solutions, starting ones included")
    b.add_argument("--max-calls", type=non_negative_int, help="max LLM calls")
    b.add_argument("--max-tokens", type=non_negative_int, help="max LLM tokens, prompt + completion")
    b.add_argument("--max-usd", type=non_negative, help="max dollars (calls with a known price)")
    b.add_argument("--max-seconds", type=non_negative, help="max wall time")
    b.add_argument("--target", type=float, help="stop once the best value reaches this")
    b.add_argument("--patience", type=positive_int,
                   help="stop after this many steps without improvement (with --early-stop validation: this many "
                        "validations without a better validation score)")
    b.add_argument("--no-stop-when-solved", action="store_true",
                   help="keep going after the known optimum is proposed")
    v = p.add_argument_group("validation (overfitting; the problem needs a validation split, e.g. prompt's "
                             "--validation-fraction)")
    v.add_argument("--eval-every", type=positive_int, metavar="K",
                   help="every K steps (step 0 included), score the top solutions by training score on the "
                        "validation split; the run's chosen solution is then the best on validation")
    v.add_argument("--validate-top", type=validate_top, default=3, metavar="N",
                   help="how many of the top solutions each validation scores, or 'all' (default 3)")
    v.add_argument("--early-stop", choices=("validation",),
                   help="validation: stop when the best validation score has not improved in --patience "
                        "validations (needs --eval-every)")
    m = p.add_argument_group("model")
    add_model_arguments(m, model_aliases=("--optimizer",))
    p.set_defaults(temperature=None)  # not given: the model's 1.0; given, refused where it would be replaced
    m.add_argument("--structured", choices=STRUCTURED, default="auto",
                   help="structured output (the problem's JSON schema; a grammar for the embedded model): where "
                        "supported (auto), always in OpenAI's json_schema style (on), in llama.cpp-server's "
                        "json_object style, or never (off: the paper's free-text replies) (default auto)")
    m.add_argument("--no-cache", action="store_true", help="do not serve replies from the store's cache")
    c = p.add_argument_group("cost (each recorded with the run; the defaults are the paper's protocol)")
    c.add_argument("--per-call", type=positive_int, default=1, metavar="K",
                   help="answers asked for in one reply: K proposals share one call and its prompt (default 1)")
    c.add_argument("--samples-per-request", type=positive_int, default=1, metavar="N",
                   help="choices asked of one request (OpenAI's and vLLM's n: the prompt billed once; a server "
                        "that ignores n is asked the rest one call each) (default 1)")
    c.add_argument("--redraw-temperature", type=non_negative, metavar="T",
                   help="temperature of a step's redraw rounds (the rounds that replace invalid and duplicate "
                        "replies) (default: the model's --temperature)")
    c.add_argument("--prompt-cache", action="store_true",
                   help="mark the meta-prompt for the provider's prompt cache (Anthropic's cache_control; OpenAI "
                        "caches prefixes by itself); cached prompt tokens are recorded and priced at the cached rate")
    e = p.add_argument_group("evolution (--proposer evoprompt-ga / evoprompt-de; EvoPrompt's defaults)")
    e.add_argument("--population", type=positive_int, default=POPULATION,
                   help=f"population size: children per generation (default {POPULATION})")
    e.add_argument("--selection", choices=SELECTIONS, default="wheel",
                   help="GA parent selection: roulette wheel by score, tournament of two, or random (default wheel)")
    e.add_argument("--donor", choices=DONORS, default="best",
                   help="DE's third donor: the population's best, or a random member (default best)")
    e.add_argument("--init", choices=INITS, default="evoprompt",
                   help="initial population: the best half of the starting solutions and LLM paraphrases of them "
                        "(step 1), or the starting solutions alone (default evoprompt)")
    e.add_argument("--evolution-temperature", type=non_negative, default=TEMPERATURE, metavar="T",
                   help=f"temperature of the operators' calls (default {TEMPERATURE}, EvoPrompt's)")
    mp = p.add_argument_group("meta-prompt")
    mp.add_argument("--show", type=non_negative_int,
                    help="past solutions shown (default: the paper's for the problem, 20 for linreg, 10 for tsp)")
    mp.add_argument("--order", choices=("worst_to_best", "best_to_worst", "random"), default="worst_to_best",
                    help="order of the past solutions shown (default worst_to_best: the best last, as in the paper)")
    mp.add_argument("--scores", choices=("exact", "rounded", "significant", "buckets", "hidden"),
                    help="how their scores are shown: as computed, rounded to --decimals, to --score-digits significant "
                         "digits of the shown scores' spread (more where two would print alike), as a bucket "
                         "1..--buckets, or not at all (default: the problem's: rounded to integers for linreg, tsp "
                         "and prompt, as in the paper; significant for a function; rounded with --decimals)")
    mp.add_argument("--decimals", type=non_negative_int,
                    help="decimals for --scores rounded (default: 0, the paper's integers)")
    mp.add_argument("--score-digits", type=positive_int, default=3,
                    help="significant digits for --scores significant (default 3)")
    mp.add_argument("--buckets", type=positive_int, default=10, help="buckets for --scores buckets (default 10)")
    mp.add_argument("--instruction", help="replace the closing instruction of the meta-prompt")


def validate_top(text: str) -> int | None:
    """``--validate-top``: a count >= 1, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        return positive_int(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', got {text!r}") from None


def run_parser(command: str, parser_class: type[argparse.ArgumentParser] = Parser) -> argparse.ArgumentParser:
    """The parser of ``llmopt run <command>`` alone (for grids, which build many runs)."""
    eps = entry_points("llmopt.problems")
    if command not in eps:
        raise UsageError(f"unknown problem {command!r} (installed: {', '.join(sorted(eps))})")
    plugin = eps[command].load()
    parser = parser_class(prog=f"llmopt run {command}")
    plugin.add_arguments(parser.add_argument_group(command))
    add_run_arguments(parser)
    parser.set_defaults(plugin=plugin, problem=command, command="run")
    return parser


def make_proposer(args: argparse.Namespace, problem: Problem) -> Proposer:
    if args.proposer == "random":
        return RandomProposer()
    if args.proposer.startswith("optuna:"):
        return OptunaProposer(args.proposer.split(":", 1)[1])
    if args.proposer.startswith("evoprompt-") and args.temperature is not None:  # never silently replaced
        raise ValueError(f"--temperature does not apply to {args.proposer}: its calls sample at --evolution-temperature")
    llm = llm_from_args(args)
    if args.proposer.startswith("evoprompt-"):
        common = dict(population=args.population, init=args.init, temperature=args.evolution_temperature,
                      use_store_cache=not args.no_cache)
        if args.proposer == "evoprompt-ga":
            return EvoPromptGA(llm, selection=args.selection, **common)
        return EvoPromptDE(llm, donor=args.donor, **common)
    shown = problem.default_shown if args.show is None else args.show
    cost = dict(use_store_cache=not args.no_cache, structured=args.structured, per_call=args.per_call,
                samples_per_request=args.samples_per_request, redraw_temperature=args.redraw_temperature,
                prompt_cache=args.prompt_cache)
    if args.proposer == "llm-iid" and args.show:
        raise ValueError(f"--show {args.show}: llm-iid shows no solutions (llm-scs shows the latest --show)")
    if args.proposer in ("llm-iid", "llm-scs"):
        return SamplingProposer(llm, shown=0 if args.proposer == "llm-iid" else shown, seed=args.seed, **cost)
    scores = args.scores or ("rounded" if args.decimals is not None else "auto")  # auto: the problem's
    meta = MetaPromptConfig(max_shown=shown, order=args.order, scores=scores, decimals=args.decimals or 0,
                            digits=args.score_digits, buckets=args.buckets, instruction=args.instruction,
                            shuffle_seed=args.seed)
    return LLMProposer(llm, meta, **cost)


def check_credentials(args: argparse.Namespace, problem: Problem, proposer: Proposer) -> None:
    """The optimizer's model, then the problem's own (the plugin's optional ``check_credentials``,
    e.g. a scorer model), has its API key (:meth:`LLM.check_credentials`), else MissingCredentials."""
    llm = getattr(proposer, "llm", None)
    if llm is not None:
        llm.check_credentials(key_hint=key_hint())
    hook = getattr(args.plugin, "check_credentials", None)
    if hook is not None:
        hook(args, problem)


def check_proposer(problem: Problem, proposer: Proposer) -> None:
    """A proposer without a model is checked in full here, before any store is created: optuna
    installed, a problem it can search (ValueError, one line). A model's proposer is checked by
    :func:`check_credentials` here and by the optimizer (which validates every proposer) later."""
    if proposer.uses_llm():
        return
    try:
        proposer.validate()
    except ImportError as exc:  # an optional dependency (optuna): the message says how to install it
        raise ValueError(str(exc)) from None
    proposer.prepare(problem)


def make_budget(args: argparse.Namespace) -> Budget:
    return Budget(max_steps=args.steps, max_evals=args.max_evals, max_calls=args.max_calls,
                  max_tokens=args.max_tokens, max_usd=args.max_usd, max_seconds=args.max_seconds,
                  target=args.target, patience=None if _early_stop(args) else args.patience or None,
                  stop_when_solved=not args.no_stop_when_solved)


def _early_stop(args: argparse.Namespace) -> bool:
    return getattr(args, "early_stop", None) == "validation"


def check_validation(args: argparse.Namespace, problem: Problem) -> None:
    """The validation options fit together and the problem can be validated (UsageError, one line)."""
    every = getattr(args, "eval_every", None)
    if _early_stop(args) and every is None:
        raise UsageError("--early-stop validation needs --eval-every K (how often to score on the validation split)")
    if _early_stop(args) and args.patience is None:
        raise UsageError("--early-stop validation needs --patience P (validations without improvement)")
    if every is not None and not problem.has_validation:
        raise UsageError(f"--eval-every: problem {problem.name!r} has no validation split to score on "
                         "(prompt optimization: --validation-fraction F gives the task a validation split)")


def prepare_run(args: argparse.Namespace, calls: bool = True) -> tuple[Problem, Proposer, Budget]:
    """Problem, proposer and budget of a parsed ``llmopt run``; bad settings raise UsageError.

    ``calls``: the run will call its models, so a model whose API key is not set is refused here,
    before any store is created (``False``: a stored run is only read back)."""
    try:
        problem = args.plugin.from_args(args)
        check_validation(args, problem)
        proposer = make_proposer(args, problem)
        if calls:
            check_credentials(args, problem, proposer)
            check_proposer(problem, proposer)
        budget = make_budget(args)
        preflight = getattr(args.plugin, "preflight", None)
        if preflight is not None:  # e.g. a cost estimate that may refuse the run
            preflight(args, problem, proposer, budget)
    except (ValueError, LLMConfigError) as exc:
        raise UsageError(str(exc)) from None
    return problem, proposer, budget


def open_run(args: argparse.Namespace, store: RunStore, problem: Problem, proposer: Proposer,
             budget: Budget) -> Optimizer:
    name = args.name or default_run_name(problem, proposer, args.seed)  # taken: refused, never renamed
    return Optimizer(problem, proposer, seed=args.seed, budget=budget, proposals_per_step=args.proposals,
                     max_rounds=args.max_rounds, store=store, name=name, resume=args.resume, race=args.race,
                     validate_every=getattr(args, "eval_every", None), validate_top=getattr(args, "validate_top", 3),
                     validation_patience=args.patience if _early_stop(args) else None,
                     accept_changed_objective=getattr(args, "accept_changed_objective", False),
                     command=getattr(args, "command_line", None))


def execute(opt: Optimizer, args: argparse.Namespace, progress_bar: bool | None = None) -> RunResult:
    """Run to a stop, with a progress bar (unless --quiet, or ``progress_bar`` says otherwise),
    scoring on the chosen executor."""
    progress = RunProgress(opt.budget.max_steps, enabled=not args.quiet if progress_bar is None else progress_bar)
    progress.attach(opt)
    progress(opt, force=True)
    try:
        with open_executor(args.executor, args.workers or None, args.dask_scheduler) as executor:
            return opt.run(executor=executor, on_step=progress)
    finally:
        progress.close()
