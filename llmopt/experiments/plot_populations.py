"""The figures of population proposers' runs (``llmopt plot``; the HTML report embeds them):

* ``<problem>-archive-<configuration>``: a MAP-Elites run's archive as a heatmap over its first two
  features, the best value per cell (with more features, the best over the others), empty cells
  blank; one figure per configuration, of its **first seed's** run (an archive is one run's: the
  seeds' instances differ, so a union over seeds would mix values of different instances).
* ``<problem>-islands-<configuration>``: an island run's islands, each one's best so far by step;
  one figure per configuration, of its first seed's run too.

The figures are pure functions of stored trials (:mod:`llmopt.experiments.diversity`) and of the
recorded proposer config; nothing is rebuilt. matplotlib is imported where a figure is drawn.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from llmopt.experiments.compare import Collected, Outcome
from llmopt.experiments.diversity import ArchiveSpec, archive, archive_grid, has_cells, has_islands, island_curves
from llmopt.history import SolutionHistory, Trial
from llmopt.problem import Direction


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _better_words(direction: Direction) -> str:
    return "lower is better" if direction is Direction.MINIMIZE else "higher is better"


def archive_figure(trials: Sequence[Trial], direction: Direction | str, spec: ArchiveSpec | None = None,
                   title: str = "MAP-Elites archive") -> Any:
    """The archive over its first two features: the best value per cell, empty cells blank. ``spec``:
    the recorded grid (names, bins, ranges); None: the cells the trials reach, unnamed."""
    direction = Direction(direction)
    grid = archive_grid(trials, direction, spec.bins if spec else None)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 5.2), layout="constrained")
    cmap = plt.get_cmap("viridis_r" if direction is Direction.MINIMIZE else "viridis")
    cmap = cmap.with_extremes(bad="#eeeeee")
    extent = None
    if spec is not None and len(spec.ranges) >= 2:
        (x0, x1), (y0, y1) = spec.ranges[1], spec.ranges[0]
        extent = (x0, x1, y0, y1)
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, extent=extent,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"best value in the cell ({_better_words(direction)})")
    names = spec.features if spec is not None else ()
    ax.set_ylabel(names[0] if len(names) > 0 else "feature 1 (cell index)")
    ax.set_xlabel(names[1] if len(names) > 1 else "feature 2 (cell index)" if grid.shape[1] > 1 else "")
    occupied = len(archive(trials, direction))
    cells = f"{occupied}/{spec.cells} cells occupied" if spec is not None else f"{occupied} cells occupied"
    more = "; best over the other features" if spec is not None and len(spec.bins) > 2 else ""
    ax.set_title(f"{title}\n({cells}{more})", fontsize=9)
    return fig


def islands_figure(history: SolutionHistory, proposer: Mapping[str, Any], seed: int, title: str = "islands") -> Any:
    """Each island's best value against step, one line per island, the database replayed as the
    proposer saw it (:func:`island_curves`): islands that share the starting solutions share a line
    until one of them finds better; a dotted vertical line marks each reset of the worse half."""
    curves = island_curves(history, proposer, seed)
    direction = history.direction
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for island, points in curves.curves.items():
        xs = [s for s, _ in points]
        ys = [v for _, v in points]
        ax.step(xs, ys, where="post", marker="o", markersize=3, linewidth=1.3, label=f"island {island}")
    for step in curves.resets:
        ax.axvline(step + 0.5, color="0.5", linestyle=":", linewidth=1.0)
    values = [v for points in curves.curves.values() for _, v in points]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"island's best value ({_better_words(direction)})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    resets = f"; resets after step {', '.join(map(str, curves.resets))}" if curves.resets else ""
    ax.set_title(f"{title} ({len(curves.curves)} islands{resets})", fontsize=9)
    ax.grid(True, alpha=0.3)
    if curves.curves:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  ncol=1 if len(curves.curves) <= 16 else 2)
    return fig


def _first_seed(outcomes: list[Outcome], has: Any) -> Outcome | None:
    """The configuration's run of the lowest seed among those whose trials ``has`` accepts."""
    mine = [o for o in outcomes if o.result is not None and has(o.result.history)]
    return min(mine, key=lambda o: o.cell.seed) if mine else None


def _spec(o: Outcome) -> ArchiveSpec | None:
    return ArchiveSpec.of_config(o.record.config.get("proposer")) if o.record is not None else None


def population_figures(collected: Collected, label: str) -> list[tuple[str, Any]]:
    """(file stem suffix, figure) for each configuration of problem ``label`` with an archive or islands."""
    out: list[tuple[str, Any]] = []
    for config in collected.grid.configs:
        mine = [o for o in collected.outcomes if o.cell.problem == label and o.cell.config == config]
        name = re.sub(r"[^\w.=+-]+", "_", config)
        run = _first_seed(mine, has_cells)
        if run is not None:
            title = f"{label}, {config}, seed {run.cell.seed}: MAP-Elites archive, best value per cell"
            out.append((f"archive-{name}", archive_figure(run.result.history.trials, run.problem.direction,
                                                          _spec(run), title)))
        run = _first_seed(mine, has_islands)
        if run is not None:
            title = f"{label}, {config}, seed {run.cell.seed}: each island's best"
            recorded = run.record.config if run.record is not None else {}
            out.append((f"islands-{name}", islands_figure(run.result.history, recorded.get("proposer") or {},
                                                          recorded.get("seed", run.cell.seed), title)))
    return out
