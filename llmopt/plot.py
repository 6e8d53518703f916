"""``llmopt plot``: figures of a grid's runs, with matplotlib (PNG and SVG).

Per problem of the grid:

* ``<problem>-best-vs-step``: best-so-far against step, one line per configuration (mean over
  seeds, band from the lowest to the highest seed), the optimum and the baselines as lines;
* ``<problem>-best-vs-evals``: the same against the number of scored solutions, the x-axis on
  which the random control and an LLM are compared fairly;
* ``<problem>-proposals``: for each configuration, a histogram per step of the score of every
  proposal (how the proposal distribution shifts as the history grows);
* ``<problem>-solutions``: for problems that can draw a solution (TSP tours on the plane), each
  configuration's best solution of the first seed beside the best baseline's.

matplotlib is imported here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .history import TrialState
from .problem import Direction

if TYPE_CHECKING:
    from .compare import Collected, Outcome

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


def evals_curve(outcome: "Outcome", last: int, direction: Direction) -> np.ndarray:
    """Best-so-far after each scored solution 1..last."""
    out = np.full(last, np.nan)
    best: float | None = None
    scored = [t for t in outcome.result.history if t.state is TrialState.COMPLETE]
    for i, t in enumerate(scored[:last]):
        if best is None or direction.better(float(t.value), best):
            best = float(t.value)
        out[i] = best
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
        ax.axhline(float(np.mean(values)), color="black" if optimum else "grey",
                   linestyle="--" if optimum else next(styles), linewidth=1.2 if optimum else 0.9,
                   label=f"{name} (mean over seeds)" if len(values) > 1 else name)


def _curves(ax: Any, collected: "Collected", label: str, x_of: str) -> list[float]:
    outcomes = [o for o in collected.outcomes if o.cell.problem == label and o.result is not None]
    direction = outcomes[0].problem.direction
    seen: list[float] = []
    for config in collected.grid.configs:
        mine = [o for o in outcomes if o.cell.config == config]
        if not mine:
            continue
        if x_of == "step":
            last = max(o.result.steps for o in mine)
            ys = np.array([step_curve(o, last) for o in mine])
            xs = np.arange(last + 1)
        else:
            last = max(o.result.evaluations for o in mine)
            ys = np.array([evals_curve(o, last, direction) for o in mine])
            xs = np.arange(1, last + 1)
        mean = np.nanmean(ys, axis=0) if len(ys) else ys
        line, = ax.plot(xs, mean, label=f"{config} (n={len(mine)})", linewidth=1.6)
        if len(mine) > 1:
            ax.fill_between(xs, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=line.get_color(), alpha=0.18)
        seen += [float(v) for v in ys[np.isfinite(ys)]]
    return seen


def best_so_far_figure(collected: "Collected", label: str, x_of: str) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    seen = _curves(ax, collected, label, x_of)
    _reference_lines(ax, collected, label)
    if _log_scale(seen):
        ax.set_yscale("log")
    ax.set_xlabel("step" if x_of == "step" else "scored solutions (starting points included)")
    ax.set_ylabel("best value so far")
    seeds = ", ".join(map(str, collected.grid.seeds))
    ax.set_title(f"{label}: best so far (line: mean, band: min to max over seeds {seeds})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
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
        ax.set_title(f"{config}: score of every proposal, by step (all seeds)", fontsize=9)
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


def _save(fig: Any, base: Path) -> list[Path]:
    plt = _pyplot()
    paths = []
    for fmt in FORMATS:
        path = base.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def write_figures(collected: "Collected", out_dir: str | Path) -> list[Path]:
    """Every figure of every problem that has at least one run; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for label in collected.grid.problems:
        if not any(o.cell.problem == label and o.result is not None for o in collected.outcomes):
            continue
        stem = label.replace(" ", "_")
        written += _save(best_so_far_figure(collected, label, "step"), out / f"{stem}-best-vs-step")
        written += _save(best_so_far_figure(collected, label, "evals"), out / f"{stem}-best-vs-evals")
        written += _save(proposals_figure(collected, label), out / f"{stem}-proposals")
        figure = solutions_figure(collected, label)
        if figure is not None:
            written += _save(figure, out / f"{stem}-solutions")
    return written


class PlotCommand:
    """Figures of a grid's runs (read from the store; nothing is run): best so far against step
and against scored solutions with a band over seeds and the baselines as lines, a histogram of
proposal scores per step, and the best solutions drawn (TSP tours).

  llmopt plot experiments/quick.toml --out figures/
"""

    HELP = "figures (PNG and SVG) of a grid's runs"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from .compare import CompareCommand

        CompareCommand.add_arguments(p, figures=False)
        p.add_argument("--out", default="figures", help="directory for the figures (default: figures)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from .compare import DEFAULT_STORE, collect, grid_from_args

        grid = grid_from_args(args)
        store = args.store or grid.store or DEFAULT_STORE
        if not Path(store).exists():
            raise ValueError(f"no store at {store}: run `llmopt compare` first")
        collected = collect(grid, store, run=False, with_references=not args.no_references)
        if not any(o.result is not None for o in collected.outcomes):
            raise ValueError(f"no run of grid {grid.name!r} in {store}: run `llmopt compare` first")
        for path in write_figures(collected, args.out):
            print(f"wrote {path}")
        return 0
