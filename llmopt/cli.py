"""The ``llmopt`` command.

Problems plug in through the ``llmopt.problems`` entry-point group: each entry names an object
with ``add_arguments(parser)`` and ``from_args(args) -> Problem``, so llmopt never imports a
problem module by name and a new problem needs no change here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Any, Sequence

from .executors import EXECUTORS, open_executor
from .llm import LLM, LLMConfigError
from .local import DEFAULT_MODEL, set_threads
from .metaprompt import MetaPromptConfig
from .optimizer import Budget, CallEvent, Optimizer, RunResult, StopReason, default_run_name
from .problem import Problem
from .progress import Bar
from .proposers import STRUCTURED, LLMProposer, Proposer, RandomProposer
from .report import format_table, run_summary, runs_table, steps_table
from .storage import DEFAULT_STORE, RunExistsError, RunStore, StoreError


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def _positive_int(text: str) -> int:
    """An integer >= 1: counts where 0 means nothing (proposals per step, rounds, threads, workers)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    """An integer >= 0: seeds, and limits where 0 makes sense (``--steps 0`` scores only the starts)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--proposer", choices=("llm", "random"), default="llm",
                   help="llm: OPRO; random: the random-search control (default: llm)")
    g.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the instance and the run (default 0)")
    g.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite run store (default {DEFAULT_STORE})")
    g.add_argument("--name", help="run name in the store (default: <problem>-<proposer>-seed<S>)")
    g.add_argument("--resume", action="store_true", help="continue the named run (same settings; budgets may grow)")
    g.add_argument("--proposals", type=_positive_int, default=8, help="valid proposals per step (default 8)")
    g.add_argument("--max-rounds", type=_positive_int, default=3,
                   help="sampling rounds per step to replace invalid or duplicate replies (default 3)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--executor", choices=EXECUTORS, default="none",
                   help="where solutions are scored: in the loop (none), threads, processes, or a Dask cluster "
                        "(default none)")
    g.add_argument("--workers", type=_positive_int, help="workers of the executor (default: the pool's own)")
    g.add_argument("--dask-scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    b = p.add_argument_group("budget (the first limit reached stops the run)")
    b.add_argument("--steps", type=_non_negative_int, default=50,
                   help="max steps; 0 scores only the starting solutions (default 50)")
    b.add_argument("--max-evals", type=_non_negative_int, help="max scored solutions, starting ones included")
    b.add_argument("--max-calls", type=_non_negative_int, help="max LLM calls")
    b.add_argument("--max-tokens", type=_non_negative_int, help="max LLM tokens, prompt + completion")
    b.add_argument("--max-usd", type=_non_negative, help="max dollars (calls with a known price)")
    b.add_argument("--max-seconds", type=_non_negative, help="max wall time")
    b.add_argument("--target", type=float, help="stop once the best value reaches this")
    b.add_argument("--patience", type=_positive_int, help="stop after this many steps without improvement")
    b.add_argument("--no-stop-when-solved", action="store_true",
                   help="keep going after the known optimum is proposed")
    m = p.add_argument_group("model")
    m.add_argument("--model", "--optimizer", dest="model", default=DEFAULT_MODEL,
                   help=f"litellm model string (default {DEFAULT_MODEL}, the embedded offline model), e.g. "
                        "openai/gpt-4o-mini, ollama/llama3, openai/<name> with --api-base for any "
                        "OpenAI-compatible server, local//path/to/model.gguf")
    m.add_argument("--structured", choices=STRUCTURED, default="auto",
                   help="structured output (the problem's JSON schema; a grammar for the embedded model): where "
                        "supported (auto), always in OpenAI's json_schema style (on), in llama.cpp-server's "
                        "json_object style, or never (off: the paper's free-text replies) (default auto)")
    m.add_argument("--local-threads", type=_positive_int, default=1,
                   help="CPU threads of the embedded model (default 1, the robust choice on 2 shared cores)")
    endpoint = m.add_mutually_exclusive_group()
    endpoint.add_argument("--api-base", help="endpoint of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    endpoint.add_argument("--router", metavar="FILE",
                          help="a litellm Router configuration (.yaml, .json or .toml: model_list, router_settings) "
                               "spreading calls over several deployments; --model then names its model group")
    m.add_argument("--api-key-env", help="read the API key from this environment variable "
                                         "(default: the provider's usual variable, e.g. OPENAI_API_KEY)")
    m.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    m.add_argument("--max-output-tokens", type=_positive_int, default=512, help="max tokens per reply (default 512)")
    m.add_argument("--concurrency", type=_positive_int, default=8, help="concurrent LLM calls (default 8)")
    m.add_argument("--num-retries", type=_non_negative_int, default=3,
                   help="retries per call, with backoff (default 3)")
    m.add_argument("--timeout", type=_non_negative, default=120.0, help="seconds per call attempt (default 120)")
    m.add_argument("--no-cache", action="store_true", help="do not serve replies from the store's cache")
    mp = p.add_argument_group("meta-prompt")
    mp.add_argument("--show", type=_non_negative_int,
                    help="past solutions shown (default: the paper's for the problem, 20 for linreg, 10 for tsp)")
    mp.add_argument("--order", choices=("worst_to_best", "best_to_worst", "random"), default="worst_to_best",
                    help="order of the past solutions shown (default worst_to_best: the best last, as in the paper)")
    mp.add_argument("--scores", choices=("exact", "rounded", "buckets", "hidden"), default="rounded",
                    help="how their scores are shown: as computed, rounded to --decimals, as a bucket 1..--buckets, "
                         "or not at all (default rounded)")
    mp.add_argument("--decimals", type=_non_negative_int, default=0, help="decimals for --scores rounded (default 0)")
    mp.add_argument("--buckets", type=_positive_int, default=10, help="buckets for --scores buckets (default 10)")
    mp.add_argument("--instruction", help="replace the closing instruction of the meta-prompt")


def plugin_commands(parent: argparse.ArgumentParser, group: str) -> list[tuple[str, Any, argparse.ArgumentParser]]:
    """One sub-command per entry point of ``group``; each remembers its plugin object."""
    sub = parent.add_subparsers(dest="problem", required=True, metavar="PROBLEM")
    out = []
    for name, ep in sorted(entry_points(group).items()):
        plugin = ep.load()
        # every help string states its own default: argparse's ArgumentDefaultsHelpFormatter would say
        # it a second time, and "(default: None)" where the text already explains what None means
        parser = sub.add_parser(name, help=getattr(plugin, "HELP", None))
        parser.set_defaults(plugin=plugin)
        out.append((name, plugin, parser))
    return out


def build_parser(parser_class: type[argparse.ArgumentParser] = Parser) -> argparse.ArgumentParser:
    parser = parser_class(prog="llmopt", description="LLM-driven black-box optimization (OPRO).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run OPRO (or the random control) on a problem")
    for name, plugin, pp in plugin_commands(run, "llmopt.problems"):
        plugin.add_arguments(pp.add_argument_group(name))
        add_run_arguments(pp)
    baselines = sub.add_parser("baselines", help="classical baselines of a problem, as a table")
    for _, plugin, bp in plugin_commands(baselines, "llmopt.baselines"):
        plugin.add_arguments(bp)
    from . import compare, plot

    for name, command in (("compare", compare.CompareCommand), ("plot", plot.PlotCommand)):
        cp = sub.add_parser(name, help=command.HELP, description=command.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        cp.set_defaults(plugin=command)
        command.add_arguments(cp)
    for name, ep in sorted(entry_points("llmopt.commands").items()):
        plugin = ep.load()
        cp = sub.add_parser(name, help=getattr(plugin, "HELP", None))
        cp.set_defaults(plugin=plugin)
        plugin.add_arguments(cp)
    show = sub.add_parser("show", help="list the runs of a store, or one run step by step")
    show.add_argument("name", nargs="?", help="a run name (omit to list all runs)")
    show.add_argument("--store", default=DEFAULT_STORE, help="run store (default %(default)s)")
    return parser


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
    set_threads(args.local_threads or 1)
    settings = dict(temperature=args.temperature, max_tokens=args.max_output_tokens, concurrency=args.concurrency,
                    num_retries=args.num_retries, timeout_s=args.timeout)
    if args.router and args.api_key_env:
        raise UsageError("--api-key-env does not apply with --router: each deployment names its key in the "
                         "router file (api_key: os.environ/NAME)")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UsageError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    if args.router:
        llm = LLM.from_router(args.router, args.model, **settings)
    else:
        llm = LLM.from_model(args.model, api_key=api_key, api_base=args.api_base, **settings)
    llm.validate()  # an unroutable model is refused before any store is created
    shown = problem.default_shown if args.show is None else args.show
    meta = MetaPromptConfig(max_shown=shown, order=args.order, scores=args.scores, decimals=args.decimals,
                            buckets=args.buckets, instruction=args.instruction, shuffle_seed=args.seed)
    return LLMProposer(llm, meta, use_store_cache=not args.no_cache, structured=args.structured)


def check_credentials(args: argparse.Namespace, problem: Problem, proposer: Proposer) -> None:
    """The optimizer's model, then the problem's own (the plugin's optional ``check_credentials``,
    e.g. a scorer model), has its API key (:meth:`LLM.check_credentials`), else MissingCredentials."""
    llm = getattr(proposer, "llm", None)
    if llm is not None:
        llm.check_credentials(key_hint="--api-key-env NAME")
    hook = getattr(args.plugin, "check_credentials", None)
    if hook is not None:
        hook(args, problem)


def make_budget(args: argparse.Namespace) -> Budget:
    return Budget(max_steps=args.steps, max_evals=args.max_evals, max_calls=args.max_calls,
                  max_tokens=args.max_tokens, max_usd=args.max_usd, max_seconds=args.max_seconds,
                  target=args.target, patience=args.patience or None, stop_when_solved=not args.no_stop_when_solved)


class Progress:
    """A bar over steps showing best value, calls, tokens, dollars and trials so far.

    It moves at each step's end and, within a step, as each LLM call completes, each trial is
    recorded and each scorer call is answered (the optimizer's callbacks; redraws rate-limited by
    :class:`llmopt.progress.Bar`), so a step of many calls is never a silent wait.
    """

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = Bar(total, "step", enabled=enabled)
        self._optimum: Any = None
        self._scoring = 0  # scorer calls answered for the trial being scored (not yet accounted)

    def attach(self, opt: Optimizer) -> None:
        """Follow ``opt`` call by call (nothing to follow when the bar is off)."""
        if self.bar.bar is None:
            return
        opt.register_callback("call", self._redraw)
        opt.register_callback("trial", self._trial)
        opt.register_callback("scoring", self._scorer_call)

    def _redraw(self, opt: Optimizer, event: Any = None) -> None:
        if self.bar.due():
            self.bar.show(postfix=self.postfix(opt))

    def _trial(self, opt: Optimizer, trial: Any) -> None:
        self._scoring = 0  # its scorer calls, if any, are in the usage now
        self._redraw(opt)

    def _scorer_call(self, opt: Optimizer, event: CallEvent) -> None:
        self._scoring += 1
        self._redraw(opt)

    def postfix(self, opt: Optimizer) -> str:
        best, u, c = opt.history.best(), opt.usage, opt.history.counts()
        if self._optimum is None:
            self._optimum = opt.problem.config().get("optimum") or 0
        gap = f" gap={100 * (best.value - self._optimum) / self._optimum:.2f}%" \
            if best is not None and self._optimum else ""
        text = (f"best={'-' if best is None else f'{best.value:.6g}'}{gap} calls={u.calls} tokens={u.tokens} "
                f"cost={u.format_dollars()} valid={c['COMPLETE']} invalid={c['INVALID']} dup={c['DUPLICATE']}")
        if c["FAILED"]:
            text += f" failed={c['FAILED']}"
        if self._scoring:
            text += f" scoring={self._scoring}"
        return text

    def __call__(self, opt: Optimizer, force: bool = False) -> None:
        """At a step's end (the loop's ``on_step``), or at the start (``force``: drawn at once)."""
        self.bar.show(n=opt.step, postfix=self.postfix(opt), force=force)

    def close(self) -> None:
        self.bar.close()


def prepare_run(args: argparse.Namespace, calls: bool = True) -> tuple[Problem, Proposer, Budget]:
    """Problem, proposer and budget of a parsed ``llmopt run``; bad settings raise UsageError.

    ``calls``: the run will call its models, so a model whose API key is not set is refused here,
    before any store is created (``False``: a stored run is only read back)."""
    try:
        problem = args.plugin.from_args(args)
        proposer = make_proposer(args, problem)
        if calls:
            check_credentials(args, problem, proposer)
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
                     max_rounds=args.max_rounds, store=store, name=name, resume=args.resume)


def execute(opt: Optimizer, args: argparse.Namespace, progress_bar: bool | None = None) -> RunResult:
    """Run to a stop, with a progress bar (unless --quiet, or ``progress_bar`` says otherwise),
    scoring on the chosen executor."""
    progress = Progress(opt.budget.max_steps, enabled=not args.quiet if progress_bar is None else progress_bar)
    progress.attach(opt)
    progress(opt, force=True)
    try:
        with open_executor(args.executor, args.workers or None, args.dask_scheduler) as executor:
            return opt.run(executor=executor, on_step=progress)
    finally:
        progress.close()


def cmd_run(args: argparse.Namespace) -> int:
    problem, proposer, budget = prepare_run(args)
    with RunStore(args.store) as store:
        try:
            opt = open_run(args, store, problem, proposer, budget)
        except RunExistsError as exc:
            where = "" if args.store == DEFAULT_STORE else f" --store {args.store}"
            raise StoreError(f"run {exc.name!r} already exists in {args.store}: resume it with  llmopt run "
                             f"{args.problem} ...{where} --name {exc.name} --resume, or pick another --name") from None
        result = execute(opt, args)
        print(format_table(run_summary(result, problem), header=False))
        if result.stop_reason is StopReason.INTERRUPTED:
            print(f"\ninterrupted: resume with  llmopt run {args.problem} ... --store {args.store} "
                  f"--name {result.name} --resume", file=sys.stderr)
            return 130
        if result.stop_reason is StopReason.LLM_FAILURE:  # nothing was proposed: a script or CI must notice
            print(f"\nllmopt: error: run {result.name} stopped by {result.stop_reason.value}: {result.stop_detail}",
                  file=sys.stderr)
            return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if not os.path.exists(args.store):
        raise UsageError(f"no store at {args.store}")
    with RunStore(args.store, readonly=True) as store:
        if args.name is None:
            print(format_table(runs_table(store)))
        else:
            run = store.get_run(args.name)
            print(format_table(steps_table(store, run)))
            status, detail = store.run_status(run), run.stop_detail or ""
            if run.status == "running" and status == "interrupted":  # its process died (see RunStore)
                where = "" if args.store == DEFAULT_STORE else f" --store {args.store}"
                detail = (f"its process ended without recording a stop (killed or crashed); resume with  "
                          f"llmopt run {run.problem} ...{where} --name {run.name} --resume")
            elif status == "running":
                detail = f"{store.owner(run.name) or 'in another process'}, now"
            print(f"\nstop: {run.stop_reason or status}: {detail}".rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "show":
            return cmd_show(args)
        return args.plugin.run(args)  # baselines and plugin commands
    except (UsageError, StoreError, LLMConfigError, ValueError) as exc:
        print(f"llmopt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
