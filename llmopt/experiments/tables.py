"""The comparison tables of a grid: one per problem, a row per configuration, from the collected runs.

The numbers are the statistics a black-box benchmark reports (:mod:`llmopt.experiments.stats`):
medians with quartiles and the median's confidence interval, success rates with Wilson intervals,
COCO's aRT to the optimum or a target, a Holm-corrected test of every row against the control,
and the best value at an equal spend of evaluations, tokens, dollars or seconds. Each row says
what ran (its proposer, model and search space), so a label can never hide a different run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from llmopt.experiments.compare import AXES, Collected, Outcome, Reference
from llmopt.experiments.diversity import ArchiveSpec, coverage, has_cells, qd_score
from llmopt.experiments.grid import GridError
from llmopt.experiments.report import Table
from llmopt.experiments.stats import (
    ALPHA,
    SMALL_N,
    Comparison,
    Summary,
    average_runtime,
    compare_to_control,
    holm,
    summarize,
    wilson,
)
from llmopt.novelty import similar_count
from llmopt.problem import Direction, gap_pct

# --- tables ---------------------------------------------------------------------------------

_AXIS_WORDS = {"evals": "evaluations", "tokens": "tokens", "usd": "dollars", "seconds": "seconds"}


def parse_budget(text: str) -> tuple[str, float]:
    """``evals=200``, ``tokens=50000``, ``usd=1`` or ``seconds=60`` -> (axis, amount)."""
    axis, sep, amount = text.partition("=")
    axis = axis.strip()
    if not sep or axis not in AXES:
        raise GridError(f"--budget {text!r}: expected {'|'.join(AXES)}=AMOUNT, e.g. evals=200")
    try:
        value = float(amount)
    except ValueError:
        raise GridError(f"--budget {text!r}: {amount.strip()!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise GridError(f"--budget {text!r}: the amount must be a positive number")
    return axis, value


def parse_gap(text: str) -> float:
    """``1%`` or ``1`` -> 1.0 (percent)."""
    try:
        value = float(str(text).strip().removesuffix("%"))
    except ValueError:
        raise GridError(f"--target-gap {text!r}: expected a percentage such as 1%") from None
    if not math.isfinite(value) or value < 0:
        raise GridError(f"--target-gap {text!r}: must be a percentage >= 0")
    return value


@dataclass(frozen=True)
class TableOptions:
    """What a comparison table tests and at which targets and budgets."""

    control: str | None = None  # the configuration every row is tested against; None: "random" if present
    target: float | None = None  # a value to reach (aRT column)
    target_gap: float | None = None  # a gap to each instance's optimum, in percent (aRT column)
    budget: tuple[str, float] | None = None  # (axis, amount): best value within that spend
    alpha: float = ALPHA

    def target_label(self) -> str | None:
        if self.target is not None:
            return f"aRT to {self.target:g}"
        if self.target_gap is not None:
            return f"aRT to gap {self.target_gap:g}%"
        return None

    def budget_label(self) -> str | None:
        return None if self.budget is None else f"{self.budget[0]} <= {self.budget[1]:g}"


class NotedTable(list):  # type: ignore[type-arg]
    """A table (rows of strings, the first the header) with the notes printed under it."""

    def __init__(self, rows: Table, notes: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.notes = list(notes)


def _num(value: float, fmt: str) -> str:
    return "inf" if value == math.inf else fmt.format(value)


def format_summary(s: Summary | None, fmt: str = "{:.3g}") -> str:
    """``median [q1, q3] (CI low to high)``, the CI the median's; one value is printed alone."""
    if s is None:
        return "-"

    def f(v: float) -> str:  # a value that rounds to zero prints as 0, not -0 (a gap of -1e-13 %)
        text = fmt.format(v)
        return fmt.format(0.0) if v < 0 and text.lstrip("-").strip("0.") == "" else text

    shown = {f(v) for v in (s.median, s.q1, s.q3, s.ci_low, s.ci_high) if v is not None}
    if s.n == 1 or len(shown) == 1:
        return f(s.median)  # one value, or every run the same as printed
    text = f"{f(s.median)} [{f(s.q1)}, {f(s.q3)}]"
    if s.ci_low is not None and s.ci_high is not None:
        text += f" ({f(s.ci_low)} to {f(s.ci_high)})"
    return text


def format_comparison(c: Comparison | None, alpha: float) -> str:
    if c is None:
        return "-"
    p = c.pvalue if c.adjusted is None else c.adjusted
    return f"{c.verdict(alpha)} (p={p:.2g})"


def _art_cell(runs: list[tuple[int | None, int]]) -> str:
    art = average_runtime(runs)
    if art is None:
        return "-"
    hits = sum(1 for hit, _ in runs if hit is not None)
    return f"{_num(art, '{:.4g}')} ({hits}/{len(runs)})"


@dataclass
class ConfigStats:
    """One configuration's finished runs of one problem, as numbers (the table is their text)."""

    label: str
    planned: int
    done: list[Outcome]
    partial: int
    solvable: bool
    columns: dict[str, Summary | None] = field(default_factory=dict)
    solved: int = 0
    beat: tuple[int, int] = (0, 0)  # runs in which a proposal beat every starting solution, of runs that had some
    versus: Comparison | None = None  # at equal evaluations (equal_evaluations)
    cut: bool = False  # some of its runs were compared on fewer evaluations than they made
    versus_budget: Comparison | None = None
    art_optimum: list[tuple[int | None, int]] = field(default_factory=list)
    art_target: list[tuple[int | None, int]] | None = None


NUMERIC = {  # column: (number of an outcome, format)
    "steps to optimum": (lambda o: o.result.solved_step, "{:.1f}"),
    "best": (lambda o: o.best(), "{:.4g}"),
    "gap %": (lambda o: o.gap_pct(), "{:.2f}"),
    "unique proposed": (lambda o: o.unique(), "{:.1f}"),
    "similar": (lambda o: _similar(o), "{:.1f}"),
    "coverage %": (lambda o: _coverage_pct(o), "{:.1f}"),
    "QD-score": (lambda o: qd_score(o.result.history.trials, o.problem.direction) if _archived(o) else None, "{:.4g}"),
    "valid %": (lambda o: o.valid_pct(), "{:.0f}"),
    "calls": (lambda o: o.result.usage.calls, "{:.0f}"),
    "tokens": (lambda o: o.result.usage.tokens, "{:.0f}"),
    "wall s": (lambda o: o.result.elapsed_s, "{:.1f}"),
    "evals": (lambda o: o.evaluations(), "{:.0f}"),
}


def _similar(o: Outcome) -> int | None:
    """Proposals novelty filtering rejected (None: a run without the filter)."""
    count = similar_count(o.proposed())
    on = o.record is not None and o.record.config.get("novelty_threshold") is not None
    return count if count or on else None


def _archived(o: Outcome) -> bool:
    return has_cells(o.result.history)


def _coverage_pct(o: Outcome) -> float | None:
    """A MAP-Elites run's archive coverage, in percent (None: no archive, or its grid not recorded)."""
    spec = ArchiveSpec.of_config(o.record.config.get("proposer")) if o.record is not None else None
    if spec is None or not _archived(o):
        return None
    return 100.0 * coverage(o.result.history, spec, o.problem.direction)


def _target_of(o: Outcome, options: TableOptions) -> float | None:
    if options.target is not None:
        return options.target
    optimum = getattr(o.problem, "optimum", None)
    if options.target_gap is None or optimum is None:
        return None
    sign = 1.0 if o.problem.direction is Direction.MINIMIZE else -1.0
    return float(optimum) + sign * abs(float(optimum)) * options.target_gap / 100.0


def config_stats(label: str, outcomes: list[Outcome], planned: int, options: TableOptions) -> ConfigStats:
    """Finished runs only: a partial run (interrupted, or running elsewhere) would bias the numbers."""
    done = [o for o in outcomes if o.result is not None and o.finished]
    partial = sum(1 for o in outcomes if o.result is not None and not o.finished)
    stats = ConfigStats(label, planned, done, partial, solvable=bool(outcomes) and outcomes[0].solvable())
    solved = [o for o in done if o.solved()]
    stats.solved = len(solved)
    beat = [b for b in (o.beat_starts() for o in done) if b is not None]
    stats.beat = (sum(beat), len(beat))
    for column, (number, _) in NUMERIC.items():
        pool = solved if column == "steps to optimum" else done
        stats.columns[column] = summarize([number(o) for o in pool])
    if options.budget is not None:
        stats.columns["budget"] = summarize([o.best_within(*options.budget) for o in done])
    if stats.solvable:
        stats.art_optimum = [(o.evals_to_optimum(), o.evaluations()) for o in done]
    if options.target_label() is not None:
        targets = [(o, _target_of(o, options)) for o in done]
        stats.art_target = [(o.evals_to_target(t), o.evaluations()) for o, t in targets if t is not None]
    return stats


def _paired_values(mine: list[Outcome], theirs: list[Outcome], value: Callable[[Outcome], float | None]
                   ) -> tuple[list[float], list[float], bool]:
    """Both sides' values; paired (aligned by seed) when both ran exactly the same seeds."""
    a = {o.cell.seed: value(o) for o in mine}
    b = {o.cell.seed: value(o) for o in theirs}
    a = {k: v for k, v in a.items() if v is not None and math.isfinite(v)}
    b = {k: v for k, v in b.items() if v is not None and math.isfinite(v)}
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        return [a[k] for k in seeds], [b[k] for k in seeds], True
    return list(a.values()), list(b.values()), False


def equal_evaluations(mine: list[Outcome], theirs: list[Outcome]) -> tuple[list[float], list[float], bool, bool]:
    """Both sides' best values at an equal number of evaluations: paired by seed (both rows ran the
    same seeds), each seed's two runs cut at the smaller one's scored solutions; unpaired, every run
    cut at the fewest any of them scored. A run that scored more (random search, where an LLM ran
    out of calls) is compared on what it had found when the other stopped, never on its extra
    evaluations. Returns (values, control's values, paired, whether any run was cut)."""
    def best(o: Outcome, n: int) -> float | None:
        return o.best() if o.spend is None or n >= o.evaluations() else o.best_within("evals", n)

    a = {o.cell.seed: o for o in mine if o.best() is not None}
    b = {o.cell.seed: o for o in theirs if o.best() is not None}
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        cut = {s: min(a[s].evaluations(), b[s].evaluations()) for s in seeds}
        pairs = [(best(a[s], cut[s]), best(b[s], cut[s])) for s in seeds]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        was_cut = any(a[s].evaluations() != b[s].evaluations() for s in seeds)
        return [x for x, _ in pairs], [y for _, y in pairs], True, was_cut
    n = min((o.evaluations() for o in [*a.values(), *b.values()]), default=0)
    x = [v for o in a.values() if (v := best(o, n)) is not None]
    y = [v for o in b.values() if (v := best(o, n)) is not None]
    return x, y, False, any(o.evaluations() != n for o in [*a.values(), *b.values()])


def _test_against(rows: list[ConfigStats], control: ConfigStats, direction: Direction, options: TableOptions) -> None:
    """Each row's best against the control's at equal evaluations (:func:`equal_evaluations`), and
    its best within the ``--budget`` spend, Holm-corrected over the rows of the table."""
    for attr in ("versus", "versus_budget"):
        if attr == "versus_budget" and options.budget is None:
            continue
        compared = []
        for row in rows:
            if row is control:
                continue
            if attr == "versus":
                x, y, paired, cut = equal_evaluations(row.done, control.done)
                row.cut = cut
            else:
                budget = options.budget
                x, y, paired = _paired_values(row.done, control.done, lambda o: o.best_within(*budget))
            comparison = compare_to_control(x, y, direction, paired=paired)
            if comparison is not None:
                compared.append((row, comparison))
        for (row, comparison), adjusted in zip(compared, holm([c.pvalue for _, c in compared])):
            setattr(row, attr, replace(comparison, adjusted=adjusted))


def control_label(configs: dict[str, list[Outcome]], options: TableOptions, problem: str) -> str | None:
    """The row every other is tested against: ``--control``, else the configuration labelled
    ``random``, else the one configuration whose runs use the random proposer (a grid's
    ``proposer = "random"``, or a store's runs labelled by it); None when there is none or several."""
    if options.control is not None:
        if options.control not in configs:
            raise GridError(f"--control {options.control!r}: no configuration of that name for {problem} "
                            f"(have: {', '.join(configs)})")
        return options.control
    if "random" in configs:
        return "random"
    randoms = [label for label, outcomes in configs.items()
               if label.startswith("random ") or any(o.cell.options.get("proposer") == "random" for o in outcomes)]
    return randoms[0] if len(randoms) == 1 else None


def comparison_table(label: str, configs: dict[str, list[Outcome]], planned: int,
                     refs: dict[int, list[Reference]], options: TableOptions = TableOptions()) -> NotedTable:
    """One problem's table: a row per configuration, then the references, with the notes that say
    what the cells are."""
    rows = [config_stats(c, outcomes, planned, options) for c, outcomes in configs.items()]
    some = next((o for outcomes in configs.values() for o in outcomes), None)
    direction = some.problem.direction if some else Direction.MINIMIZE
    control = control_label(configs, options, label)
    control_row = next((r for r in rows if r.label == control), None)
    if control_row is not None:
        _test_against(rows, control_row, direction, options)
    budget_label, target_label = options.budget_label(), options.target_label()
    budgets = {r.label: "; ".join(dict.fromkeys(o.budget for o in r.done if o.budget)) or "-" for r in rows}
    unequal = len(set(budgets.values()) - {"-"}) > 1  # rows ran to different limits: say so, with the limits
    vs = f"vs {control} (Holm p)"
    header = ["configuration", "ran", "runs", "evals", "budget" if unequal else None, "solved", "aRT to optimum",
              target_label, "steps to optimum",
              "best", "beat starts", "gap %", f"vs {control} at equal evals (Holm p)" if control_row else None,
              f"best at {budget_label}" if budget_label else None,
              f"{vs} at {budget_label}" if control_row and budget_label else None,
              "unique proposed", "similar", "coverage %", "QD-score", "valid %", "calls", "tokens", "cost (all runs)",
              "wall s"]
    table: Table = [[h for h in header if h is not None]]
    for r in rows:
        solved = "-"
        if r.solvable and r.done:
            lo, hi = wilson(r.solved, len(r.done)) or (0.0, 0.0)
            solved = f"{r.solved}/{len(r.done)} ({100 * lo:.0f} to {100 * hi:.0f}%)"
        fmt = {c: f for c, (_, f) in NUMERIC.items()}
        cells: list[str | None] = [
            r.label,
            "; ".join(dict.fromkeys(o.ran for o in r.done if o.ran)) or "-",
            f"{len(r.done)}/{r.planned}" + (f" (+{r.partial} partial)" if r.partial else ""),
            format_summary(r.columns["evals"], fmt["evals"]),
            budgets[r.label] if unequal else None,
            solved,
            _art_cell(r.art_optimum) if r.solvable else "-",
            (_art_cell(r.art_target) if r.art_target else "-") if target_label else None,
            format_summary(r.columns["steps to optimum"], fmt["steps to optimum"]),
            format_summary(r.columns["best"], fmt["best"]),
            f"{r.beat[0]}/{r.beat[1]}" if r.beat[1] else "-",
            format_summary(r.columns["gap %"], fmt["gap %"]),
            ("control" if r is control_row else format_comparison(r.versus, options.alpha)) if control_row else None,
            format_summary(r.columns.get("budget"), "{:.4g}") if budget_label else None,
            (("control" if r is control_row else format_comparison(r.versus_budget, options.alpha))
             if control_row and budget_label else None),
            *(format_summary(r.columns[c], fmt[c]) for c in ("unique proposed", "similar", "coverage %", "QD-score",
                                                             "valid %", "calls", "tokens")),
            _dollars(r.done) if r.done else "-",
            format_summary(r.columns["wall s"], fmt["wall s"]),
        ]
        table.append([c for c in cells if c is not None])
    optimum_of = {o.cell.seed: getattr(o.problem, "optimum", None) for outs in configs.values() for o in outs}
    width = len(table[0])
    for ref in reference_rows(refs, optimum_of, direction):
        table.append(_reference_row(ref, table[0])[:width])
    kept = _drop_empty_columns(table)
    return NotedTable(kept, _notes(rows, control_row, options, set(kept[0])))


def _reference_row(cells: dict[str, str], header: list[str]) -> list[str]:
    return [cells.get(h, "-") for h in header]


#: What a column's cells are, for the notes under a table that shows it.
_COLUMN_NOTES = {
    "ran": "ran: what each row ran (its proposer, model, and a control's search space)",
    "evals": "evals: scored solutions per run",
    "budget": "budget: each row's stopping limits, which differ between rows: the test against the control is at "
              "equal evaluations, every other column at each row's own budget",
    "solved": "solved: runs (95% Wilson interval)",
    "unique proposed": "unique proposed: distinct solutions among the proposals (duplicates and novelty's rejections "
                       "included once each)",
    "similar": "similar: proposals novelty filtering rejected (--novelty-threshold; counted among the duplicates too)",
    "coverage %": "coverage %: occupied cells of the MAP-Elites archive over all its cells",
    "QD-score": "QD-score: sum over the archive's occupied cells of the elite's improvement on the run's worst "
                "starting value, clipped at 0 (higher is better; see docs/populations.md)",
    "beat starts": "beat starts: runs in which a proposal scored better than every starting solution (the others "
                   "ended at a starting solution, where rows tie whatever their method)",
}


def _notes(rows: list[ConfigStats], control: ConfigStats | None, options: TableOptions,
           columns: set[str]) -> list[str]:
    """The notes of the columns the table shows (``columns``: its header, after empty columns are dropped)."""
    notes = ["cells: median [interquartile range] (95% CI of the median: distribution-free, from order statistics; "
             "none below 6 runs) over finished runs"
             + "".join(f"; {words}" for column, words in _COLUMN_NOTES.items() if column in columns)]
    if any(c.startswith("aRT") for c in columns):
        notes.append("aRT (COCO's average runtime): scored solutions summed over all runs, a successful run up to "
                     "its first success and an unsuccessful one in full, divided by the successful runs (shown in "
                     "brackets); inf when none succeeded")
    if control is not None:
        tests = {c.test for r in rows for c in (r.versus, r.versus_budget) if c is not None}
        paired = ("Wilcoxon signed-rank test of the best values, paired by seed (a seed fixes the instance and the "
                  "starting points)")
        unpaired = "Mann-Whitney U test of the best values (where the rows ran different seeds, runs do not pair)"
        used = {"Wilcoxon signed-rank": paired, "Mann-Whitney U": unpaired}
        described = "; ".join(used[t] for t in sorted(tests, reverse=True)) or "no values to test"
        notes.append(f"vs {control.label}: two-sided {described}; {_holm_words(rows, control)}; "
                     f"alpha = {options.alpha:g}")
        cut = [r.label for r in rows if r.cut]
        notes.append("at equal evals: each seed's pair of runs compared on the best value found within the smaller "
                     "run's evaluations (unpaired rows: the fewest of any run); "
                     + (f"runs of {', '.join(cut)} or of the control were cut there (they scored unequal numbers)"
                        if cut else "every pair scored equally many, so this is the final best"))
    if options.budget is not None and f"best at {options.budget_label()}" in columns:
        axis, amount = options.budget
        notes.append(f"best at {options.budget_label()}: the best value among solutions scored within {amount:g} "
                     f"{_AXIS_WORDS[axis]} (a run that stopped sooner counts with what it reached)")
    counts = [len(r.done) for r in rows if r.done]
    if counts and min(counts) < SMALL_N:
        notes.append(f"n = {min(counts)} runs is small: the intervals are wide and a test can miss a real "
                     f"difference ({SMALL_N} or more recommended)")
    return notes


def _holm_words(rows: list[ConfigStats], control: ConfigStats) -> str:
    """How many tests Holm's correction corrected: with one row against the control it had one, so
    the p-value is the test's own."""
    tested = sum(1 for r in rows if r is not control and r.versus is not None)
    if tested == 1:
        return "p Holm-corrected over the rows (one test here: Holm's correction leaves its p as it is)"
    return f"p Holm-corrected over the rows ({tested} tests)"


def reference_rows(refs: dict[int, list[Reference]], optimum_of: dict[int, float | None],
                   direction: Direction) -> list[dict[str, str]]:
    """The references over seeds, as cells by column name."""
    by_name: dict[str, list[tuple[int, Reference]]] = {}
    for seed, rs in refs.items():
        for r in rs:
            by_name.setdefault(r.name, []).append((seed, r))
    rows = []
    for name, items in by_name.items():
        gaps = [gap_pct(r.value, optimum_of.get(s), direction) for s, r in items]
        rows.append({"configuration": f"{name} (reference)", "runs": f"{len(items)}",
                     "best": format_summary(summarize([r.value for _, r in items]), "{:.4g}"),
                     "gap %": format_summary(summarize(gaps), "{:.2f}"),
                     "wall s": format_summary(summarize([r.seconds for _, r in items]), "{:.2g}")})
    return rows


def tables(collected: Collected, options: TableOptions = TableOptions()) -> dict[str, NotedTable]:
    """One table per problem label: configurations, then references."""
    out: dict[str, NotedTable] = {}
    grid = collected.grid
    for plabel in grid.problems:
        outcomes = [o for o in collected.outcomes if o.cell.problem == plabel]
        if not outcomes:
            continue
        configs = {c: [o for o in outcomes if o.cell.config == c] for c in grid.configs}
        configs = {c: outs for c, outs in configs.items() if outs}
        out[plabel] = comparison_table(plabel, configs, len(grid.seeds), collected.references.get(plabel, {}), options)
    return out


def _drop_empty_columns(rows: Table) -> Table:
    keep = [i for i in range(len(rows[0])) if i == 0 or any(r[i] not in ("-", "") for r in rows[1:])]
    return [[r[i] for i in keep] for r in rows]


def _dollars(outcomes: list[Outcome]) -> str:
    usages = [o.result.usage for o in outcomes if o.result]
    total = sum(u.cost_usd for u in usages)
    unpriced = sum(u.unpriced_calls for u in usages)
    return f">=${total:.4f}" if unpriced else f"${total:.4f}"
