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
  needs the problem itself, which a grid rebuilds from its options);
* ``<problem>-archive-<configuration>`` and ``<problem>-islands-<configuration>``: a MAP-Elites
  run's archive as a heatmap, an island run's islands' best by step (the database replayed as the
  proposer saw it, resets marked)
  (:mod:`llmopt.experiments.plot_populations`).

Titles name the seeds actually plotted, not those a grid plans.

matplotlib is imported here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llmopt.experiments.compare import Collected
from llmopt.experiments.curves import best_known_by_seed, spend_curve, step_curve, targets_of, x_points
from llmopt.experiments.curves import ecdf_points as ecdf_points
from llmopt.experiments.curves import overfitting_curves as overfitting_curves
from llmopt.experiments.curves import seeds_plotted as seeds_plotted
from llmopt.experiments.grouping import _grid_label as _grid_label  # where tests and callers found them before
from llmopt.experiments.grouping import collect_runs as collect_runs
from llmopt.experiments.plot_populations import population_figures
from llmopt.experiments.stats import median_band
from llmopt.history import TrialState
from llmopt.problem import Direction
from llmopt.validation import chosen_number

FORMATS = ("png", "svg")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def _curves(ax: Any, collected: "Collected", label: str, x_of: str) -> list[float]:
    """One line per configuration: the median over runs of best-so-far, and a 95% bootstrap band of
    that median (not the lowest to the highest run)."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    seen: list[float] = []
    for config in collected.grid.configs:
        mine = [o for o in outcomes if o.cell.config == config]
        if not mine:
            continue
        xs = x_points(mine, x_of)
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


def ecdf_figure(collected: "Collected", label: str) -> Any | None:
    """The fraction of (run, target) pairs reached against evaluations, one line per configuration;
    None when the problem has no ladder of targets and no run scored anything."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    best_known = best_known_by_seed(outcomes)
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
    """Each configuration's best solution (first seed) beside the best reference's, if drawable: the
    one figure that needs the problem itself, rebuilt for that seed from the grid (None: no grid)."""
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    if not outcomes or not outcomes[0].problem.drawable or collected.instance is None:
        return None
    seed = min(o.cell.seed for o in outcomes)
    firsts = [o for o in outcomes if o.cell.seed == seed]
    problem, refs = collected.instance(firsts[0].cell)
    if not hasattr(problem, "draw"):
        return None
    panels = [(o.cell.config, o.result.best) for o in firsts if o.result.best]
    refs = [r for r in refs if r.solution is not None]
    plt = _pyplot()
    count = len(panels) + (1 if refs else 0)
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (config, best) in zip(axes.flat, panels):
        solution = best.solution if best.solution is not None else problem.from_text(best.text)
        problem.draw(solution, ax, title=f"{config}: {best.value:.6g} (step {best.step})")
    if refs:
        pick = min if problem.direction is Direction.MINIMIZE else max
        ref = pick(refs, key=lambda r: r.value)
        problem.draw(ref.solution, axes.flat[len(panels)], title=f"{ref.name}: {ref.value:.6g}")
    fig.suptitle(f"{label}, seed {seed}: best solutions", fontsize=10)
    return fig


OVERFITTING_PANELS = 12  # runs drawn in one overfitting figure (the first ones, in the store's order)


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


def _save(fig: Any, base: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    plt = _pyplot()
    paths = []
    for fmt in formats:
        path = base.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def write_figures(collected: "Collected", out_dir: str | Path, x_axes: Sequence[str] = ("step", "evals"),
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every figure of every problem that has at least one run; returns the files written.
    ``formats``: the files each figure is written as (the HTML report embeds PNGs only: drawing an
    SVG it would throw away took half of its time)."""
    save = functools.partial(_save, formats=formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for label in collected.grid.problems:
        if not any(o.cell.problem == label and o.result is not None for o in collected.outcomes):
            continue
        stem = re.sub(r"[^\w.=+-]+", "_", label)
        for x_of in x_axes:
            written += save(best_so_far_figure(collected, label, x_of), out / f"{stem}-best-vs-{x_of}")
        figure = ecdf_figure(collected, label)
        if figure is not None:
            written += save(figure, out / f"{stem}-ecdf")
        written += save(proposals_figure(collected, label), out / f"{stem}-proposals")
        figure = overfitting_figure(collected, label)
        if figure is not None:
            written += save(figure, out / f"{stem}-overfitting")
        figure = solutions_figure(collected, label)
        if figure is not None:
            written += save(figure, out / f"{stem}-solutions")
        for suffix, figure in population_figures(collected, label):  # MAP-Elites archives, islands
            written += save(figure, out / f"{stem}-{suffix}")
    return written
