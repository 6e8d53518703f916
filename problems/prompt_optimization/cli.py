"""Command line of prompt optimization: ``llmopt run prompt`` and ``llmopt evaluate``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from llmopt.cli.model_options import add_model_arguments
from llmopt.experiments.estimate import check_estimate, estimate, print_estimate
from llmopt.experiments.progress import Bar
from llmopt.experiments.report import format_table
from llmopt.history import TrialState
from llmopt.llm.flags import key_hint, llm_from_args
from llmopt.seeding import stream
from llmopt.store import open_store
from llmopt.store.sqlite import DEFAULT_STORE, StoreError, Usage
from llmopt.validation import chosen, validation_scores
from problems.prompt_optimization.data import DataError, Example, Task, load_task
from problems.prompt_optimization.instructions import FIXED_INSTRUCTIONS
from problems.prompt_optimization.problem import RACE_DELTA, RACE_FIRST, STYLES, PromptOptimization
from problems.prompt_optimization.scorer import POSITIONS, Scorer

TRANSFER = ("multiarith", "aqua")
SCORER = "scorer-"  # the scorer's model options: --scorer, --scorer-api-base, ... (llmopt.llm.flags)
SCORER_ALIASES = {"num-retries": ["--scorer-retries"], "max-output-tokens": ["--scorer-max-tokens"]}


# --- shared arguments ------------------------------------------------------------------------
def add_task_arguments(g: Any, task_required: bool = True, local_threads: bool = False) -> None:
    """The task's options and the scorer's; ``local_threads``: also ``--local-threads`` (a command
    without the optimizer's options, which have it)."""
    g.add_argument("--task", required=task_required,
                   help="gsm8k, bbh/<task> (e.g. bbh/navigate), multiarith or aqua")
    g.add_argument("--data-dir", help="directory with gsm8k/, bbh/, multiarith/, aqua/ "
                   "(default: $LLMOPT_DATA, else the copy shipped with the package)")
    g.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/test split, kept apart from --seed so runs share one split (default 0)")
    g.add_argument("--train-fraction", type=float,
                   help="training share (default: the paper's, 0.035 for gsm8k and 0.2 for BBH)")
    g.add_argument("--validation-fraction", type=float, default=0.0, metavar="F",
                   help="validation share, split from the training pool after the training share (default 0: "
                        "none); with --eval-every K the top instructions are scored on it every K steps")
    g.add_argument("--max-train", type=int, help="score instructions on at most this many training examples")
    g.add_argument("--position", choices=POSITIONS, default="Q_begin",
                   help="where the instruction goes in the scorer's prompt (default Q_begin)")
    add_scorer_arguments(g, local_threads)


def add_scorer_arguments(g: Any, local_threads: bool) -> None:
    """The scorer's model options: the optimizer's (llmopt.llm.flags) under ``--scorer``, at temperature 0.

    The names before they were shared still work, unlisted: ``--scorer-retries`` (now
    ``--scorer-num-retries``) and ``--scorer-max-tokens`` (now ``--scorer-max-output-tokens``)."""
    add_model_arguments(g, SCORER, role="scorer", temperature=None, max_output_tokens=64,
                        local_threads=local_threads, hidden_aliases=SCORER_ALIASES)


def make_task(args: argparse.Namespace, name: str | None = None) -> Task:
    return load_task(name or args.task, args.data_dir, train_fraction=args.train_fraction, seed=args.split_seed,
                     max_train=args.max_train, validation_fraction=args.validation_fraction or 0.0)


def make_scorer(args: argparse.Namespace) -> Scorer:
    return Scorer(llm_from_args(args, SCORER, temperature=0.0), args.position)


# --- llmopt run prompt -----------------------------------------------------------------------
class CLI:
    """``llmopt run prompt``: OPRO on GSM8K, a BBH task, MultiArith or AQuA."""

    HELP = "prompt optimization: instructions scored by a model's accuracy (the paper's Section 4)"

    @staticmethod
    def add_arguments(group: Any) -> None:
        add_task_arguments(group)
        group.add_argument("--style", choices=STYLES, default="ins",
                           help="meta-prompt: ins (the official prompt for chat optimizers, <INS> tags) or "
                                "brackets (the paper's Figure 3, square brackets) (default ins)")
        group.add_argument("--exemplars", type=int, default=3,
                           help="training examples shown in each meta-prompt (default 3)")
        group.add_argument("--max-length", type=int, default=500,
                           help="longest instruction kept, in characters (default 500)")
        group.add_argument("--digits", choices=("auto", "allow", "forbid"), default="auto",
                           help="instructions with digits (default auto: forbidden for gsm8k, as in the official "
                                "code)")
        group.add_argument("--initial", action="append",
                           help="starting instruction (repeatable; default: the paper's, '' for BBH and "
                                "\"Let's solve the problem.\" for GSM8K)")
        group.add_argument("--race-first", type=int, default=RACE_FIRST,
                           help=f"with --race: training examples scored before the first look, doubled at each "
                                f"look (default {RACE_FIRST})")
        group.add_argument("--race-delta", type=float, default=RACE_DELTA,
                           help=f"with --race: the chance of stopping an instruction whose full score would reach "
                                f"the bar (default {RACE_DELTA})")

    @staticmethod
    def from_args(args: argparse.Namespace) -> PromptOptimization:
        try:
            task = make_task(args)
        except DataError as exc:
            raise ValueError(str(exc)) from None
        digits = {"auto": None, "allow": False, "forbid": True}[args.digits]
        return PromptOptimization(task, make_scorer(args), style=args.style, exemplars=args.exemplars,
                                  max_length=args.max_length, forbid_digits=digits, initial=args.initial,
                                  race_first=args.race_first, race_delta=args.race_delta)

    @staticmethod
    def check_credentials(args: argparse.Namespace, problem: PromptOptimization) -> None:
        """The scorer model's API key is set (the optimizer's is checked by llmopt)."""
        problem.scorer.llm.check_credentials(key_hint=key_hint(SCORER))

    @staticmethod
    def preflight(args: argparse.Namespace, problem: PromptOptimization, proposer: Any, budget: Any) -> None:
        steps = budget.max_steps if budget.max_steps is not None else 10**6
        rows = estimate(problem, proposer, steps, args.proposals or 1, args.max_rounds or 1, budget.max_evals,
                        getattr(args, "eval_every", None), getattr(args, "validate_top", 3))  # generic: see llmopt
        if not args.quiet:
            validation = f", {len(problem.task.validation)} validation" if problem.task.validation else ""
            print(f"task {problem.task.name}: {len(problem.task.train)} training examples "
                  f"({problem.task.kind} answers){validation}, {len(problem.task.test)} test", file=sys.stderr)
            print_estimate(rows)
        check_estimate(rows, args.max_calls, args.max_usd)


# --- llmopt evaluate -------------------------------------------------------------------------
def wilson(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy (scipy's)."""
    if total == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Row:
    label: str
    instruction: str
    task: str
    split: str
    correct: int
    total: int
    failed: int

    def cells(self) -> list[str]:
        low, high = wilson(self.correct, self.total)
        acc = 100.0 * self.correct / self.total if self.total else 0.0
        text = self.instruction if len(self.instruction) <= 60 else self.instruction[:57] + "..."
        return [self.label, repr(text), self.task, self.split, str(self.total), f"{acc:.1f}",
                f"[{100 * low:.1f}, {100 * high:.1f}]", str(self.failed)]


class Evaluate:
    """``llmopt evaluate``: instructions (given, a run's top-k, the fixed baselines) on held-out data."""

    HELP = "accuracy of instructions on a task's test split and on transfer sets, next to the baselines"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("task and scorer")
        add_task_arguments(g, task_required=False, local_threads=True)
        w = p.add_argument_group("what to evaluate")
        w.add_argument("--instruction", action="append", default=[], help="an instruction (repeatable)")
        w.add_argument("--run", help="a prompt run in the store: evaluate its top instructions, and its chosen one "
                                     "(best on validation) if it ran validations (task from the run)")
        w.add_argument("--top", type=int, default=3, help="how many of the run's best instructions (default 3)")
        w.add_argument("--no-baselines", action="store_true", help="leave out the fixed baseline instructions")
        w.add_argument("--split", choices=("test", "train", "validation", "all"), default="test",
                       help="which examples of --task to evaluate on (default test)")
        w.add_argument("--max-examples", type=int,
                       help="evaluate on a seeded sample of at most this many examples of each dataset")
        w.add_argument("--transfer", nargs="*", choices=TRANSFER, default=[],
                       help="also evaluate on these datasets (all their examples), e.g. a GSM8K instruction")
        w.add_argument("--store", default=DEFAULT_STORE,
                       help="run store: runs to read, and the reply cache (default %(default)s)")
        p.add_argument("--quiet", action="store_true", help="no progress bar (it counts scorer calls, on stderr)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        instructions = _instructions(args)  # --run's store is only read: a missing store or run writes nothing
        if not args.task:
            raise ValueError("which task? pass --task (or --run NAME of a prompt run)")
        try:
            datasets = [(args.task, args.split, make_task(args))]
            datasets += [(name, "all", load_task(name, args.data_dir)) for name in args.transfer]
        except DataError as exc:
            raise ValueError(str(exc)) from None
        scorer = make_scorer(args)
        scorer.llm.check_credentials(key_hint=key_hint(SCORER))  # no API key: refused before the store is made
        with open_store(args.store) as store:  # the scorer's reply cache
            scorer.bind_cache(store.cache())
            rows, usage = [], Usage()
            for name, split, task in datasets:
                examples = sample_examples(task.examples(split), args.max_examples, args.split_seed)
                if not examples:
                    raise ValueError(f"{name}: the {split} split is empty")
                print(f"{name} ({split}): {len(examples)} examples x {len(instructions)} instructions, "
                      f"scorer {scorer.model}", file=sys.stderr)
                bar = Bar(len(examples) * len(instructions), "call", enabled=not args.quiet,
                          desc=f"{name} ({split})")
                try:
                    for label, text in instructions:
                        result = scorer.score(text, examples, task.kind, on_call=lambda i, c: bar.advance())
                        for c in result.completions:
                            usage = usage.add(c)
                        rows.append(Row(label, text, name, split, result.correct, result.total, result.failed))
                finally:
                    bar.close()
        head = ["instruction", "text", "dataset", "split", "n", "accuracy %", "95% CI (Wilson)", "failed calls"]
        print(format_table([head] + [r.cells() for r in rows]))
        print(f"\nscorer calls: {usage.calls} ({usage.cache_hits} from the cache, {usage.failed_calls} failed), "
              f"{usage.tokens} tokens, {usage.format_dollars()}")
        return 0


def _instructions(args: argparse.Namespace) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if args.run:
        with open_store(args.store, readonly=True) as store:
            run = store.get_run(args.run)
            scored = store.trials(run.id, states=[TrialState.COMPLETE])
            rows = store.validations(run.id)
        problem = run.config.get("problem", {})
        if problem.get("name") != "prompt":
            raise StoreError(f"run {args.run!r} is not a prompt-optimization run")
        if args.task is None:
            args.task = problem["task"]
            split = problem.get("split", {})
            args.split_seed, args.train_fraction = split.get("seed", 0), split.get("train_fraction")
            args.validation_fraction = split.get("validation_fraction") or 0.0  # the run's test split, exactly
        pick = chosen(rows, scored, run.direction)
        if pick is not None:
            on_validation = validation_scores(rows)[pick.number]
            out.append((f"{args.run} chosen: best on validation ({on_validation:.1f}, train {pick.value:.1f})",
                        pick.text))
        scored.sort(key=lambda t: (-t.value, t.number))  # type: ignore[operator]
        for rank, t in enumerate(scored[:args.top], start=1):
            out.append((f"{args.run} #{rank} (train {t.value:.1f})", t.text))
    out += [("given", text) for text in args.instruction]
    if not args.no_baselines:
        out += [(f"baseline: {name}", text) for name, text in fixed_instructions().items()]
    if not out:
        raise ValueError("nothing to evaluate: pass --instruction, --run, or drop --no-baselines")
    seen, unique = set(), []
    for label, text in out:
        if text not in seen:
            seen.add(text)
            unique.append((label, text))
    return unique


def fixed_instructions() -> dict[str, str]:
    """The fixed instructions every result is compared with (:mod:`.instructions`)."""
    return dict(FIXED_INSTRUCTIONS)


def sample_examples(examples: Sequence[Example], limit: int | None, seed: int) -> tuple[Example, ...]:
    if limit is None or limit >= len(examples):
        return tuple(examples)
    picks = sorted(stream(seed, "evaluate-sample").choice(len(examples), size=limit, replace=False))
    return tuple(examples[i] for i in picks)
