"""The options of ``llmopt run <problem>`` as argparse knows them: the run's, the budget's,
validation's, the model's (:mod:`llmopt.cli.model_options`), the problem's (its plugin's
``add_arguments``) and the chosen proposer's (declared as data in the proposer registry, so
``--help`` shows the chosen proposer's options and another proposer's are refused in one line).
Grid cells (``llmopt compare``) are parsed by the same parser (:func:`parse_cell`)."""

from __future__ import annotations

import argparse
from typing import Any

from llmopt.cli.model_options import add_model_arguments, non_negative, non_negative_int, positive_int
from llmopt.executors import EXECUTORS
from llmopt.experiments.compare import grid_message
from llmopt.experiments.grid import Cell, Grid, GridError
from llmopt.experiments.runs import UsageError
from llmopt.novelty import check_threshold
from llmopt.plugins import entry_points
from llmopt.proposers import registry
from llmopt.store import DEFAULT_STORE


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_run_arguments(p: argparse.ArgumentParser, proposer: str = registry.DEFAULT) -> None:
    """The options of ``llmopt run``: the run's, the budget's, validation's, the model's, and those
    of ``proposer`` (the chosen one's, from the registry). Every other proposer's options are
    accepted by name only to be refused in one line (:class:`RefusedOption`), not shown."""
    specs = registry.all_specs()
    spec = specs.get(proposer) or specs[registry.DEFAULT]
    g = p.add_argument_group("run")
    g.add_argument("--proposer", choices=registry.names(), default=registry.DEFAULT,
                   help="where proposals come from: " + "; ".join(f"{n}: {s.help}" for n, s in specs.items())
                        + f" (default {registry.DEFAULT}; `--proposer NAME --help` shows NAME's own options)")
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
    g.add_argument("--novelty-threshold", type=novelty_threshold, metavar="T",
                   help="novelty filtering, for any proposer: a proposal whose text is at least T similar (0 < T <= 1; "
                        "rapidfuzz's normalized similarity; a program's without comments) to a solution already "
                        "scored, or pending in the step, is recorded as a duplicate and never scored (default: off)")
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
    add_tracking_arguments(g)
    _add_budget_arguments(p)
    _add_validation_arguments(p)
    model = p.add_argument_group("model")
    add_model_arguments(model, model_aliases=("--optimizer",))
    p.set_defaults(temperature=None)  # not given: the model's 1.0; given, refused where it would be replaced
    if not spec.uses_llm:
        _hide_model_options(p, model)
    add_proposer_arguments(p, spec, specs)


def _hide_model_options(p: argparse.ArgumentParser, model: Any) -> None:
    """The optimizer's model options, for a proposer that calls no model: accepted (a grid's
    defaults may name a model for every row), not shown; ``--local-threads`` stays (a problem's
    own model, a scorer, runs on them). A group left with no shown option is dropped from the
    usage line (argparse 3.11 cannot format one)."""
    hidden = [a for a in model._group_actions if "--local-threads" not in a.option_strings]
    for action in hidden:
        action.help = argparse.SUPPRESS
    p._mutually_exclusive_groups = [g for g in p._mutually_exclusive_groups
                                    if not all(a in hidden for a in g._group_actions)]


def _add_budget_arguments(p: argparse.ArgumentParser) -> None:
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


def add_tracking_arguments(g: Any) -> None:
    """``--mlflow`` and ``--mlflow-experiment`` (``llmopt run``, and ``llmopt compare`` for every cell)."""
    g.add_argument("--mlflow", metavar="URI", help="also log the run to MLflow at URI (see docs/tracking.md)")
    g.add_argument("--mlflow-experiment", metavar="NAME", help="its MLflow experiment (default: the problem)")


def _add_validation_arguments(p: argparse.ArgumentParser) -> None:
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


class RefusedOption(argparse.Action):
    """An option of another proposer than the chosen one: refused in one line when given (by
    :func:`prepare_run`, as every bad setting is, before anything is created or spent)."""

    def __init__(self, option_strings: list[str], dest: str, spec: registry.ProposerSpec, **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        self.spec = spec

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        refused = getattr(namespace, "refused_options", None) or []
        refused.append(registry.unused_message(self.option_strings[0], self.spec, values or None))
        namespace.refused_options = refused


def _argtype(option: registry.Option) -> Any:
    """argparse's type for ``option``: its converter, a bad word told in its own words."""
    def convert(text: str) -> Any:
        try:
            return option.type(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = option.name
    return convert


def add_proposer_arguments(p: argparse.ArgumentParser, spec: registry.ProposerSpec,
                           specs: dict[str, registry.ProposerSpec]) -> None:
    """``spec``'s options in their own group; the other proposers' options, hidden and refused."""
    own = [o for o in spec.options if o.cli]
    group = p.add_argument_group(f"proposer {spec.name} (its own options; `--proposer NAME --help`: another's)")
    for o in own:
        if o.switch:
            group.add_argument(o.flag, dest=o.key, action="store_true", help=o.help)
        else:
            group.add_argument(o.flag, dest=o.key, type=_argtype(o), default=o.default, choices=o.choices,
                               metavar=o.metavar, help=o.help)
    taken = set(p._option_string_actions)  # the public API has no lookup by flag
    for other in {o.flag: o for s in specs.values() for o in s.options if o.cli}.values():
        if other.flag not in taken:
            taken.add(other.flag)
            p.add_argument(other.flag, action=RefusedOption, spec=spec, nargs=0 if other.switch else None,
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def chosen_proposer(words: list[str]) -> str:
    """The ``--proposer`` among command-line words (the last given), before they are parsed: the
    parser shows and accepts that proposer's options. Not given: the default."""
    chosen = registry.DEFAULT
    for i, word in enumerate(words):
        if word == "--proposer" and i + 1 < len(words):
            chosen = words[i + 1]
        elif word.startswith("--proposer="):
            chosen = word.split("=", 1)[1]
    return chosen


def novelty_threshold(text: str) -> float:
    """``--novelty-threshold``: a number in (0, 1]."""
    try:
        value = float(text)
        check_threshold(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    return value


def validate_top(text: str) -> int | None:
    """``--validate-top``: a count >= 1, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        return positive_int(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', got {text!r}") from None


def run_parser(command: str, parser_class: type[argparse.ArgumentParser] = Parser,
               proposer: str = registry.DEFAULT) -> argparse.ArgumentParser:
    """The parser of ``llmopt run <command> --proposer <proposer>`` alone (for grids, which build many runs)."""
    eps = entry_points("llmopt.problems")
    if command not in eps:
        raise UsageError(f"unknown problem {command!r} (installed: {', '.join(sorted(eps))})")
    plugin = eps[command].load()
    parser = parser_class(prog=f"llmopt run {command}")
    plugin.add_arguments(parser.add_argument_group(command))
    add_run_arguments(parser, proposer)
    parser.set_defaults(plugin=plugin, problem=command, command="run")
    return parser




# --- grid cells: the same parser ---------------------------------------------------------------

class _RaisingParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a bad grid cell is reported with its label."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GridError(message)


# --- from a cell to the arguments of one run -------------------------------------------------

def cell_argv(cell: Cell, parser: argparse.ArgumentParser) -> list[str]:
    """The ``llmopt run <problem>`` flags of a cell (TOML values to command-line words)."""
    argv: list[str] = []
    actions = parser._option_string_actions  # the public API has no lookup by flag
    for key, value in cell.options.items():
        flag = f"--{key}"
        action = actions.get(flag)
        if action is None:
            raise GridError(f"--{key}: unknown option of `llmopt run {cell.command}`")
        if isinstance(action, RefusedOption):  # another proposer's option: one line, as on the command line
            raise GridError(registry.unused_message(flag, action.spec, value))
        if value is None:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise GridError(f"--{key}: a switch: true or false, got {value!r}")
            if value != action.default:
                argv.append(flag)
            continue
        if isinstance(value, bool):
            raise GridError(f"--{key}: takes a value, got {value!r}")
        values = value if isinstance(value, list) else [value]
        if isinstance(action, argparse._AppendAction):
            for v in values:
                argv += [flag, str(v)]
        else:
            argv += [flag, *map(str, values)]
    return argv + ["--seed", str(cell.seed), "--name", cell.name, "--quiet"]


def parse_cell(cell: Cell, grid: Grid | None = None) -> argparse.Namespace:
    """Parsed run arguments of a cell; a GridError names the option's key in the grid (or the cell) on
    any bad option. (The store is the grid's, opened by :func:`collect`, not an option of the
    cell.) ``args.base_dir``: the grid file's directory, where the run reads relative paths."""
    try:
        parser = run_parser(cell.command, _RaisingParser, str(cell.options.get("proposer") or registry.DEFAULT))
        args = parser.parse_args(cell_argv(cell, parser))
    except (GridError, UsageError) as exc:
        raise GridError(grid_message(grid, cell, str(exc))) from None
    args.base_dir = cell.base
    args.mlflow_tags = {"llmopt.grid": cell.grid, "llmopt.cell": cell.name, "llmopt.config": cell.config}  # with --mlflow
    return args


