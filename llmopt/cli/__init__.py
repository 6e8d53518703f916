"""The ``llmopt`` command.

Problems plug in through the ``llmopt.problems`` entry-point group: each entry names an object
with ``add_arguments(parser)`` and ``from_args(args) -> Problem``, so llmopt never imports a
problem module by name and a new problem needs no change here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import sys
from typing import Any, Sequence

from llmopt.budget import StopReason
from llmopt.cli.compare import CompareCommand
from llmopt.cli.plot import PlotCommand
from llmopt.cli.report import ReportCommand
from llmopt.cli.run_options import Parser, add_run_arguments, chosen_proposer
from llmopt.cli.store import StoreCommand
from llmopt.experiments.report import (
    format_table,
    most_common_failure,
    run_summary,
    runs_table,
    step_detail,
    steps_table,
    validations_report,
)
from llmopt.experiments.runs import UsageError, execute, open_run, prepare_run
from llmopt.history import TrialState
from llmopt.llm import LLMConfigError
from llmopt.plugins import entry_points
from llmopt.store import DEFAULT_STORE, RunExistsError, StoreError, open_store, store_exists
from llmopt.store.url import redact, redact_words


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


def _version() -> str:
    try:
        return importlib.metadata.version("llmopt")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def build_parser(parser_class: type[argparse.ArgumentParser] = Parser, proposer: str = "llm") -> argparse.ArgumentParser:
    """The ``llmopt`` parser; ``llmopt run`` shows and accepts the options of ``proposer`` (the
    one the command line names, see :func:`chosen_proposer`), and refuses the other proposers'."""
    parser = parser_class(prog="llmopt", description="LLM-driven black-box optimization (OPRO).")
    parser.add_argument("--version", action="version", version=f"llmopt {_version()}",
                        help="print llmopt's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run OPRO (or the random control) on a problem")
    for name, plugin, pp in plugin_commands(run, "llmopt.problems"):
        plugin.add_arguments(pp.add_argument_group(name))
        add_run_arguments(pp, proposer)
    baselines = sub.add_parser("baselines", help="classical baselines of a problem, as a table")
    for _, plugin, bp in plugin_commands(baselines, "llmopt.baselines"):
        plugin.add_arguments(bp)
    for name, command in (("compare", CompareCommand), ("plot", PlotCommand), ("report", ReportCommand),
                          ("store", StoreCommand)):
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
    show.add_argument("--step", type=int, metavar="S",
                      help="print step S of the run in full: its prompt(s), every reply, each trial's parents")
    return parser


def resume_command(command: str, name: str) -> str:
    """The command that resumes run ``name``: the one that started it (``llmopt run ...``, every flag as
    given), with ``--name`` (unless it named the run) and ``--resume``, to paste as is."""
    words = shlex.split(command)
    if not any(w == "--name" or w.startswith("--name=") for w in words):
        words += ["--name", name]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(words)


def cmd_run(args: argparse.Namespace) -> int:
    problem, proposer, budget = prepare_run(args)
    with open_store(args.store) as store:
        try:
            opt = open_run(args, store, problem, proposer, budget)
        except RunExistsError as exc:
            raise StoreError(f"run {exc.name!r} already exists in {redact(args.store)}: resume it with  "
                             f"{resume_command(args.command_line, exc.name)}  or pick another --name") from None
        result = execute(opt, args)
        print(format_table(run_summary(result, problem), header=False))
        if result.stop_reason is StopReason.INTERRUPTED:
            print(f"\ninterrupted: resume with  {resume_command(args.command_line, result.name or '')}",
                  file=sys.stderr)
            return 130
        if result.stop_reason is StopReason.LLM_FAILURE:  # nothing was proposed: a script or CI must notice
            print(f"\nllmopt: error: run {result.name} stopped by {result.stop_reason.value}: {result.stop_detail}",
                  file=sys.stderr)
            return 1
        failure = most_common_failure(list(result.history), TrialState.FAILED)
        if failure is not None and result.evaluations == 0:  # nothing could be scored: that is no result
            count, total, example = failure
            print(f"\nllmopt: error: run {result.name}: every evaluation failed ({total}); {count} of them: "
                  f"{(example.error or '')[:300]}", file=sys.stderr)
            return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if not store_exists(args.store):
        raise UsageError(f"no store at {args.store}")
    with open_store(args.store, readonly=True) as store:
        if args.name is None:
            print(format_table(runs_table(store)))
        else:
            run = store.get_run(args.name)
            if args.step is not None:
                print(step_detail(store, run, args.step))
                return 0
            print(format_table(steps_table(store, run)))
            validated = validations_report(store, run)  # "" for a run without validations
            if validated:
                print(f"\n{validated}")
            status, detail = store.run_status(run), run.stop_detail or ""
            if run.status == "running" and status == "interrupted":  # its process died (see RunStore)
                where = "" if args.store == DEFAULT_STORE else f" --store {redact(args.store)}"
                started = run.versions.get("command") or f"llmopt run {run.problem} ...{where}"  # older runs: "..."
                detail = (f"its process ended without recording a stop (killed or crashed); resume with  "
                          f"{resume_command(started, run.name)}")
            elif status == "running":
                detail = f"{store.owner(run.name) or 'in another process'}, now"
            print(f"\nstop: {run.stop_reason or status}: {detail}".rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(proposer=chosen_proposer(words))
    args = parser.parse_args(words)
    args.command_line = shlex.join(["llmopt", *redact_words(words)])  # recorded: its resume hint (no password)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "show":
            return cmd_show(args)
        return args.plugin.run(args)  # baselines and plugin commands
    except (UsageError, StoreError, LLMConfigError, ValueError) as exc:
        print(f"llmopt: error: {exc}", file=sys.stderr)
        return 2

