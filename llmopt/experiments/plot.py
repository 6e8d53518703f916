"""``llmopt plot``: figures of a grid's runs, or of any runs of a store, with matplotlib (PNG and SVG).

A store's runs that no grid describes (``llmopt run``, the Python API) are grouped the way a
grid's are: by problem (the problem's name and recorded settings, seed aside) and by
configuration (proposer, model, meta-prompt, proposals per step; seed and budget aside), read
from the stored trials alone. Per problem:

* ``<problem>-best-vs-<x>``: best-so-far against ``x`` = step and evals (scored solutions, the
  axis on which the random control and an LLM are compared fairly) by default, or tokens, usd,
  seconds (read from the recorded calls and trials), one line per configuration: the median over
  seeds with a 95% bootstrap band of the median (scipy), the optimum and the baselines as lines;
* ``<problem>-ecdf``: the fixed-target ECDF as COCO draws it: over the problem's ladder of
  targets (:meth:`Problem.targets`: gaps of 50, 20, 10, 5, 2, 1, 0 % to the optimum, linear regression's
  loss levels down to the true pair's), the fraction of (run, target) pairs reached against
  scored solutions, on a log axis;
* ``<problem>-proposals``: for each configuration, a histogram per step of the score of every
  proposal (how the proposal distribution shifts as the history grows);
* ``<problem>-overfitting``: for runs that ran validations (``--eval-every``), the paper's Figure 11,
  one panel per run: at each validation step, the training and the validation score of the top
  solution by training score, and the best validation score of the solutions validated there,
  the run's chosen solution (best on validation) marked;
* ``<problem>-solutions``: for problems that can draw a solution (TSP tours on the plane), each
  configuration's best solution of the first seed beside the best baseline's (grids only: drawing
  needs the problem itself, which a grid rebuilds from its options).

Titles name the seeds actually plotted, not those a grid plans.

matplotlib is imported here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llmopt.experiments.compare import Collected, Outcome, Reference, budget_text, reaches, run_spend
from llmopt.experiments.grid import Cell, Grid
from llmopt.experiments.report import proposer_name, stored_history
from llmopt.experiments.stats import median_band
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction, gap_ladder, gap_pct
from llmopt.store import RunRecord, RunStore
from llmopt.store.sqlite import Usage, ValidationRecord
from llmopt.validation import chosen_number

FORMATS = ("png", "svg")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def step_curve(outcome: "Outcome", last_step: int) -> np.ndarray:
    """Best-so-far after each step 0..last_step (carried forward past the run's own end)."""
    out = np.full(last_step + 1, np.nan)
    for step, value in outcome.result.history.best_so_far():
        if value is not None and step <= last_step:
            out[step] = value
    return _carry_forward(out)


def _carry_forward(values: np.ndarray) -> np.ndarray:
    last = np.nan
    for i, v in enumerate(values):
        if math.isnan(v):
            values[i] = last
        else:
            last = v
    return values


def _log_scale(values: Sequence[float]) -> bool:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 100


def _reference_lines(ax: Any, collected: "Collected", label: str) -> None:
    by_name: dict[str, list[float]] = {}
    for refs in collected.references.get(label, {}).values():
        for r in refs:
            by_name.setdefault(r.name, []).append(r.value)
    styles = iter([":", "-.", (0, (1, 3)), (0, (5, 2)), (0, (3, 1, 1, 1)), (0, (1, 1))] * 4)
    for name, values in by_name.items():
        optimum = name.startswith("optimum")
        ax.axhline(float(np.median(values)), color="black" if optimum else "grey",
                   linestyle="--" if optimum else next(styles), linewidth=1.2 if optimum else 0.9,
                   label=f"{name} (median over seeds)" if len(values) > 1 else name)


X_AXES = ("step", "evals", "tokens", "usd", "seconds")
_X_LABELS = {"step": "step", "evals": "scored solutions (starting points included)", "tokens": "tokens (all calls)",
             "usd": "dollars (priced calls)", "seconds": "seconds since the run began"}
_GRID_POINTS = 200


def spend_curve(outcome: "Outcome", axis: str, xs: np.ndarray) -> np.ndarray:
    """Best-so-far at each amount ``xs`` of ``axis`` spent (NaN before the first scored solution; a
    run that ended sooner keeps its final value)."""
    spend = outcome.spend
    if spend is None or not len(spend.values):
        return np.full(len(xs), np.nan)
    best = np.minimum.accumulate(spend.values) if outcome.problem.direction is Direction.MINIMIZE \
        else np.maximum.accumulate(spend.values)
    index = np.searchsorted(spend.axis(axis), xs, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)], np.nan)


def _xs(outcomes: list["Outcome"], x_of: str) -> np.ndarray:
    if x_of == "step":
        return np.arange(max(o.result.steps for o in outcomes) + 1, dtype=float)
    if x_of == "evals":
        return np.arange(1, max(o.evaluations() for o in outcomes) + 1, dtype=float)
    top = max((o.spend.total[x_of] for o in outcomes if o.spend is not None), default=0.0)
    return np.linspace(0.0, top, _GRID_POINTS) if top > 0 else np.zeros(1)


def _curves(ax: Any, collected: "Collected", label: str, x_of: str) -> list[float]:
    """One line per configuration: the median over runs of best-so-far, and a 95% bootstrap band of
    that median (not the lowest to the highest run)."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    seen: list[float] = []
    for config in collected.grid.configs:
        mine = [o for o in outcomes if o.cell.config == config]
        if not mine:
            continue
        xs = _xs(mine, x_of)
        if x_of == "step":
            ys = np.array([step_curve(o, int(xs[-1])) for o in mine])
        else:
            ys = np.array([spend_curve(o, x_of, xs) for o in mine])
        started = np.all(np.isfinite(ys), axis=0)  # where every run has a value
        if not started.any():
            continue
        xs, ys = xs[started], ys[:, started]
        median, low, high = median_band(ys)
        if len(xs) == 1:  # nothing spent on this axis (random search costs no tokens): a point
            line, = ax.plot(xs, median, marker="o", linestyle="none", label=f"{config} (n={len(mine)}, none spent)")
        else:
            line, = ax.plot(xs, median, label=f"{config} (n={len(mine)})", linewidth=1.6)
        if len(mine) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
        seen += [float(v) for v in ys[np.isfinite(ys)]]
    return seen


def seeds_plotted(collected: "Collected", label: str) -> list[int]:
    """The seeds of a problem's runs that are in the store (a grid may plan more than were run)."""
    return sorted({o.cell.seed for o in collected.outcomes if o.cell.problem == label and o.result is not None})


def _seeds_text(seeds: Sequence[int]) -> str:
    if len(seeds) > 4 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}"


def best_so_far_title(collected: "Collected", label: str) -> str:
    return (f"{label}: best so far (line: median, band: 95% bootstrap CI of the median; "
            f"{_seeds_text(seeds_plotted(collected, label))})")


def _value_noun(collected: "Collected", label: str) -> str:
    """What the problem's values are ("length", "score"; "value" for runs read from a store alone)."""
    problem = next((o.problem for o in collected.outcomes if o.cell.problem == label), None)
    direction = "lower is better" if problem is None or problem.direction is Direction.MINIMIZE else "higher is better"
    return f"{getattr(problem, 'value_noun', None) or 'value'} ({direction})"


def _legend_outside(ax: Any) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def best_so_far_figure(collected: "Collected", label: str, x_of: str) -> Any:
    if x_of not in X_AXES:
        raise ValueError(f"unknown x axis {x_of!r} (expected one of {', '.join(X_AXES)})")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5), layout="constrained")
    seen = _curves(ax, collected, label, x_of)
    _reference_lines(ax, collected, label)
    if _log_scale(seen):
        ax.set_yscale("log")
    ax.set_xlabel(_X_LABELS[x_of])
    if x_of in ("step", "evals"):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"best {_value_noun(collected, label)} so far")
    ax.set_title(best_so_far_title(collected, label), fontsize=10)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    return fig


def targets_of(outcome: "Outcome", best_known: float | None) -> list[tuple[str, float]]:
    """The run's ladder of targets: its problem's (:meth:`Problem.targets`), else gaps to the best
    value any run of the same instance found."""
    ladder = list(outcome.problem.targets())
    if not ladder and best_known is not None:
        ladder = [(f"{name} (to the best found)", value) for name, value in gap_ladder(best_known,
                                                                                       outcome.problem.direction)]
    return ladder


def ecdf_points(outcomes: list["Outcome"], best_known: dict[int, float | None]) -> tuple[np.ndarray, int]:
    """Evaluations at which each (run, target) pair was first reached (sorted; unreached pairs left
    out), and the number of pairs: COCO's fixed-target runtime ECDF."""
    hits: list[float] = []
    pairs = 0
    for o in outcomes:
        for _, target in targets_of(o, best_known.get(o.cell.seed)):
            pairs += 1
            hit = o.evals_to_target(target)
            if hit is not None:
                hits.append(float(hit))
    return np.sort(np.array(hits)), pairs


def ecdf_figure(collected: "Collected", label: str) -> Any | None:
    """The fraction of (run, target) pairs reached against evaluations, one line per configuration;
    None when the problem has no ladder of targets and no run scored anything."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    best_known: dict[int, float | None] = {}
    for o in outcomes:
        best = o.best()
        if best is None:
            continue
        old = best_known.get(o.cell.seed)
        better = old is None or (best < old if o.problem.direction is Direction.MINIMIZE else best > old)
        best_known[o.cell.seed] = best if better else old
    if not outcomes or not targets_of(outcomes[0], best_known.get(outcomes[0].cell.seed)):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5), layout="constrained")
    for config in collected.grid.configs:
        mine = [o for o in outcomes if o.cell.config == config]
        if not mine:
            continue
        hits, pairs = ecdf_points(mine, best_known)
        xs = np.concatenate([[1.0], hits, [float(max(o.evaluations() for o in mine))]])
        ys = np.concatenate([[0.0], np.arange(1, len(hits) + 1) / pairs, [len(hits) / pairs]])
        ax.step(xs, ys, where="post", linewidth=1.6, label=f"{config} (n={len(mine)})")
    names = [name for name, _ in targets_of(outcomes[0], best_known.get(outcomes[0].cell.seed))]
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("scored solutions (starting points included; log scale)")
    ax.set_ylabel("fraction of (run, target) pairs reached")
    ax.set_title(f"{label}: fixed-target ECDF over targets {', '.join(names)} "
                 f"({_seeds_text(seeds_plotted(collected, label))})", fontsize=9, wrap=True)
    ax.grid(True, alpha=0.3, which="both")
    _legend_outside(ax)
    return fig


def proposals_figure(collected: "Collected", label: str) -> Any:
    """Per configuration, a 2-D histogram: step on x, proposal score on y, count as colour."""
    plt = _pyplot()
    configs = [c for c in collected.grid.configs
               if any(o.cell.problem == label and o.cell.config == c and o.result for o in collected.outcomes)]
    fig, axes = plt.subplots(len(configs), 1, figsize=(7.5, 2.4 * len(configs) + 0.6), layout="constrained",
                             squeeze=False, sharex=True)
    for ax, config in zip(axes[:, 0], configs):
        points = [(t.step, float(t.value)) for o in collected.outcomes
                  if o.cell.problem == label and o.cell.config == config and o.result
                  for t in o.result.history if t.state is TrialState.COMPLETE and t.source != "start"]
        seeds = sorted({o.cell.seed for o in collected.outcomes
                        if o.cell.problem == label and o.cell.config == config and o.result})
        ax.set_title(f"{config}: score of every proposal, by step ({_seeds_text(seeds)})", fontsize=9)
        ax.set_ylabel("score")
        if not points:
            ax.text(0.5, 0.5, "no scored proposals", ha="center", va="center", transform=ax.transAxes)
            continue
        steps = np.array([p[0] for p in points])
        values = np.array([p[1] for p in points])
        log = _log_scale(values.tolist())
        ybins = (np.geomspace(values.min(), values.max() * 1.0001, 30) if log
                 else np.linspace(values.min(), values.max() + 1e-9, 30))
        xbins = np.arange(steps.min() - 0.5, steps.max() + 1.5)
        counts, _, _, image = ax.hist2d(steps, values, bins=[xbins, ybins], cmap="viridis", cmin=1)
        if log:
            ax.set_yscale("log")
        fig.colorbar(image, ax=ax, label="proposals")
    axes[-1, 0].set_xlabel("step")
    return fig


def solutions_figure(collected: "Collected", label: str) -> Any | None:
    """Each configuration's best solution (first seed) beside the best reference's, if drawable."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    if not outcomes or not hasattr(outcomes[0].problem, "draw"):
        return None
    seed = min(o.cell.seed for o in outcomes)
    panels = [(o.cell.config, o.problem, o.result.best) for o in outcomes if o.cell.seed == seed and o.result.best]
    refs = [r for r in collected.references.get(label, {}).get(seed, []) if r.solution is not None]
    plt = _pyplot()
    count = len(panels) + (1 if refs else 0)
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (config, problem, best) in zip(axes.flat, panels):
        problem.draw(best.solution, ax, title=f"{config}: {best.value:.6g} (step {best.step})")
    if refs:
        direction = outcomes[0].problem.direction
        ref = min(refs, key=lambda r: r.value) if direction is Direction.MINIMIZE else max(refs, key=lambda r: r.value)
        outcomes[0].problem.draw(ref.solution, axes.flat[len(panels)], title=f"{ref.name}: {ref.value:.6g}")
    fig.suptitle(f"{label}, seed {seed}: best solutions", fontsize=10)
    return fig


OVERFITTING_PANELS = 12  # runs drawn in one overfitting figure (the first ones, in the store's order)


def overfitting_curves(history: SolutionHistory, rows: Sequence[Any]) -> dict[str, list[float]]:
    """Per validation step (ascending): ``step``; ``training`` and ``validation``, the two scores of the
    top solution by training score among those validated there (ties: the earlier trial); and
    ``best_validation``, the best validation score of that step's solutions (NaN: none scored)."""
    direction = history.direction
    sign = 1.0 if direction is Direction.MINIMIZE else -1.0
    by_step: dict[int, list[Any]] = {}
    for row in rows:
        by_step.setdefault(int(row.step), []).append(row)
    out: dict[str, list[float]] = {"step": [], "training": [], "validation": [], "best_validation": []}
    for step in sorted(by_step):
        scored = [(r, history.get(r.number)) for r in by_step[step]]
        scored = [(r, t) for r, t in scored if t is not None and t.value is not None]
        if not scored:
            continue
        top, trial = min(scored, key=lambda rt: (sign * float(rt[1].value), rt[1].number))  # type: ignore[arg-type]
        values = [float(r.value) for r in by_step[step] if r.value is not None]
        out["step"].append(float(step))
        out["training"].append(float(trial.value))  # type: ignore[arg-type]
        out["validation"].append(math.nan if top.value is None else float(top.value))
        out["best_validation"].append((min(values) if sign > 0 else max(values)) if values else math.nan)
    return out


def overfitting_figure(collected: "Collected", label: str) -> Any | None:
    """Training against validation score by step, one panel per run that ran validations (None: no run did)."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None
                and getattr(o.result, "validations", ())][:OVERFITTING_PANELS]
    if not outcomes:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(outcomes), 1, figsize=(8.5, 2.8 * len(outcomes) + 0.6), layout="constrained",
                             squeeze=False)
    for ax, o in zip(axes[:, 0], outcomes):
        history, rows = o.result.history, o.result.validations
        curves = overfitting_curves(history, rows)
        ax.plot(curves["step"], curves["training"], marker="o", linewidth=1.6, label="training (top by training)")
        ax.plot(curves["step"], curves["validation"], marker="s", linewidth=1.6, label="validation (same solution)")
        ax.plot(curves["step"], curves["best_validation"], linestyle="--", linewidth=1.0, color="grey",
                label="validation (best of those validated)")
        pick = chosen_number(rows, {t.number: t.value for t in history if t.ok}, history.direction)
        if pick is not None:
            first = min(r.step for r in rows if r.number == pick)
            value = next(float(r.value) for r in rows if r.number == pick and r.value is not None)
            ax.plot([first], [value], marker="*", markersize=13, color="black", linestyle="none",
                    label=f"chosen: trial #{pick} (best on validation)")
        ax.set_title(f"{o.cell.config}, seed {o.cell.seed}: training vs validation", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("score on each split")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        _legend_outside(ax)
    return fig


def _save(fig: Any, base: Path) -> list[Path]:
    plt = _pyplot()
    paths = []
    for fmt in FORMATS:
        path = base.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def write_figures(collected: "Collected", out_dir: str | Path, x_axes: Sequence[str] = ("step", "evals")) -> list[Path]:
    """Every figure of every problem that has at least one run; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for label in collected.grid.problems:
        if not any(o.cell.problem == label and o.result is not None for o in collected.outcomes):
            continue
        stem = re.sub(r"[^\w.=+-]+", "_", label)
        for x_of in x_axes:
            written += _save(best_so_far_figure(collected, label, x_of), out / f"{stem}-best-vs-{x_of}")
        figure = ecdf_figure(collected, label)
        if figure is not None:
            written += _save(figure, out / f"{stem}-ecdf")
        written += _save(proposals_figure(collected, label), out / f"{stem}-proposals")
        figure = overfitting_figure(collected, label)
        if figure is not None:
            written += _save(figure, out / f"{stem}-overfitting")
        figure = solutions_figure(collected, label)
        if figure is not None:
            written += _save(figure, out / f"{stem}-solutions")
    return written


# --- any runs of a store ---------------------------------------------------------------------

_GRID_RUN = re.compile(r"^(?P<grid>[^/]+)/(?P<problem>[^/]+)/(?P<config>[^/]+)/seed\d+$")


@dataclass
class StoredResult:
    """What the figures and tables read of a run, rebuilt from its stored trials and calls alone (no
    Problem object: a run is solved when it reached the optimum recorded with it)."""

    history: SolutionHistory
    steps: int
    usage: Usage
    elapsed_s: float
    solved_step: int | None = None
    validations: tuple[ValidationRecord, ...] = ()  # the run's validation scores (--eval-every), if any

    @property
    def evaluations(self) -> int:
        return sum(1 for t in self.history if t.ok)

    @property
    def best(self) -> Trial | None:
        return self.history.best()


@dataclass(frozen=True)
class StoredProblem:
    """A stored run's problem as far as the figures and tables need it: its direction, recorded
    settings and the optimum recorded with the run."""

    name: str
    direction: Direction
    recorded: dict[str, Any]
    optimum: float | None = None

    def config(self) -> dict[str, Any]:
        return self.recorded

    def gap_pct(self, value: float) -> float | None:
        return gap_pct(value, self.optimum, self.direction)

    def targets(self) -> list[tuple[str, float]]:
        """The default ladder (gaps to the recorded optimum): a stored run has no problem to ask."""
        return gap_ladder(self.optimum, self.direction)


def stored_result(store: "RunStore", run: "RunRecord") -> StoredResult:
    history = stored_history(store, run)
    solved = None
    if run.optimum is not None:
        solved = next((t.step for t in history if t.ok and reaches(float(t.value), run.optimum, run.direction)), None)
    return StoredResult(history, max((t.step for t in history), default=0), store.usage(run.id), run.elapsed_s, solved,
                        tuple(store.validations(run.id)))


def _experiment(run: "RunRecord") -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's (problem, configuration) settings, without what differs from seed to seed: the seed,
    the problem's seed and optimum, the seed in a generated instance's name, the meta-prompt's
    shuffle seed (the run's seed); the budget is left out too (a longer run is the same experiment)."""
    recorded = json.loads(json.dumps(run.config))
    seed_tag = re.compile(rf"(?<![0-9])seed{recorded.get('seed')}(?![0-9])")
    problem = {k: seed_tag.sub("seedS", v) if isinstance(v, str) else v
               for k, v in recorded.get("problem", {}).items() if k != "seed" and not k.startswith("optimum")}
    problem["direction"] = recorded.get("direction")
    config = {k: v for k, v in recorded.items() if k not in ("seed", "budget", "problem", "direction")}
    (config.get("proposer", {}).get("metaprompt") or {}).pop("shuffle_seed", None)
    (config.get("proposer", {}).get("sampling") or {}).pop("context_seed", None)  # the run's seed too
    return problem, config


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v)
    return out


def _labels(items: Sequence[tuple[str, dict[str, Any]]], slash: str = ":") -> list[str]:
    """A label per (base label, settings): the base, and where one base covers different settings,
    the settings that differ (``random proposals_per_step=4``); a ``/`` becomes ``slash`` (a problem's
    label names files; a configuration's keeps its model's ``/``)."""
    keys = [json.dumps(settings, sort_keys=True) for _, settings in items]
    variants: dict[str, dict[str, dict[str, str]]] = {}
    for (base, settings), key in zip(items, keys):
        variants.setdefault(base, {})[key] = _flat(settings)
    named: dict[tuple[str, str], str] = {}
    for base, flats in variants.items():
        if len(flats) == 1:
            named[(base, next(iter(flats)))] = base
            continue
        differing = sorted((f for f in {f for flat in flats.values() for f in flat}
                            if len({flat.get(f) for flat in flats.values()}) > 1),
                           key=lambda f: (max(len(flat.get(f, "")) for flat in flats.values()) > 12, f))
        fields: list[str] = []  # the fewest that tell the variants apart, short values first
        for f in differing:
            if len({tuple(flat.get(g) for g in fields) for flat in flats.values()}) == len(flats):
                break
            before = len({tuple(flat.get(g) for g in fields) for flat in flats.values()})
            if len({tuple(flat.get(g) for g in (*fields, f)) for flat in flats.values()}) > before:
                fields.append(f)
        short = {f: f.rsplit(".", 1)[-1] for f in fields}
        if len(set(short.values())) < len(fields):
            short = {f: f for f in fields}
        for key, flat in flats.items():
            named[(base, key)] = base + " " + ", ".join(f"{short[f]}={flat.get(f, '-')}" for f in fields)
    return [named[(base, key)].replace("/", slash) for (base, _), key in zip(items, keys)]


def _config_base(config: dict[str, Any]) -> str:
    """What a stored run ran, in words: its proposer and model (a table's "ran" column, and the label
    of a run that no grid named), as ``llmopt show`` names it (:func:`proposer_name`)."""
    return proposer_name(config)


def _grid_label(label: str, config: dict[str, Any]) -> str:
    """A configuration label read back from a grid run's name, with its model as written: a run name
    cannot hold a ``/``, so ``opro local/smollm2`` was stored as ``opro local:smollm2``."""
    base = _config_base(config)
    stored = base.replace("/", ":")
    return base + label[len(stored):] if stored != base and label.startswith(stored) else label


def collect_runs(store: "RunStore", names: Sequence[str] = (), seeds: Sequence[int] | None = None, *,
                 with_references: bool = True) -> "Collected":
    """Every run of a store (or the named ones), grouped into problems and configurations as a
    grid's runs are; runs named as a grid names them (``<grid>/<problem>/<config>/seed<S>``) keep
    the grid's labels. Nothing is rebuilt or run; the references are the recorded optima."""
    runs = [store.get_run(name) for name in names] if names else store.runs()
    if seeds is not None:
        runs = [r for r in runs if r.config.get("seed") in seeds]
    if not runs:
        raise ValueError(f"no runs to plot in {store.path}" + (f" with seeds {list(seeds)}" if seeds is not None else ""))
    settings = [_experiment(r) for r in runs]
    matches = [_GRID_RUN.match(r.name) for r in runs]
    several_grids = len({m["grid"] for m in matches if m}) > 1
    problems = _labels([((f"{m['grid']} {m['problem']}" if several_grids else m["problem"]) if m else r.problem, s[0])
                        for r, m, s in zip(runs, matches, settings)])
    configs = [""] * len(runs)
    for label in dict.fromkeys(problems):  # configurations are told apart within each problem
        mine = [i for i, p in enumerate(problems) if p == label]
        bases = [_grid_label(matches[i]["config"], settings[i][1]) if matches[i] else _config_base(settings[i][1])
                 for i in mine]
        for i, config in zip(mine, _labels([(base, settings[i][1]) for i, base in zip(mine, bases)], slash="/")):
            configs[i] = config
    grid = Grid(name=re.sub(r"[/\s]+", "_", store.path.stem) or "store",
                seeds=tuple(sorted({int(r.config.get("seed", 0)) for r in runs})),
                problems={p: {} for p in problems}, configs={c: {} for c in configs}, source=str(store.path))
    out = Collected(grid, [], {})
    for run, plabel, clabel in zip(runs, problems, configs):
        seed = int(run.config.get("seed", 0))
        problem = StoredProblem(run.problem, run.direction, run.config.get("problem", {}), run.optimum)
        result = stored_result(store, run)
        out.outcomes.append(Outcome(Cell(grid.name, plabel, clabel, seed, run.problem, {}), problem,  # type: ignore[arg-type]
                                    result, finished=run.status == "finished",  # type: ignore[arg-type]
                                    spend=run_spend(store, run, result.history), ran=_config_base(run.config),
                                    budget=budget_text(run.config.get("budget") or {})))
        refs = out.references.setdefault(plabel, {}).setdefault(seed, [])
        if with_references and run.optimum is not None and not refs:
            refs.append(Reference("optimum", run.optimum))
    return out
