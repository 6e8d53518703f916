"""Diversity made visible: the MAP-Elites archive's coverage and QD-score, the islands' curves, the
compare table's diversity columns and the population figures, on hand-made stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmopt import RunStore
from llmopt.experiments.diversity import (
    ArchiveSpec,
    archive,
    archive_grid,
    coverage,
    island_curves,
    qd_offset,
    qd_score,
)
from llmopt.experiments.plot import collect_runs, write_figures
from llmopt.experiments.plot_populations import archive_figure, islands_figure, population_figures
from llmopt.experiments.tables import TableOptions, comparison_table
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction

ME = {"kind": "map-elites", "features": ["length", "depth"], "ranges": [[0, 10], [0, 5]], "bins": [2, 3]}


def _t(number: int, value: float | None, origin: dict[str, Any] | None = None, source: str = "me",
       state: TrialState = TrialState.COMPLETE, step: int = 1, **metrics: Any) -> Trial:
    return Trial(number=number, step=0 if source == "start" else step, state=state, source=source,
                 text=f"s{number}", key=f"s{number}", value=value,
                 metrics={**metrics, **({"origin": origin} if origin else {})})


def _cell(child: list[int]) -> dict[str, Any]:
    return {"cell": [0, 0], "child_cell": child, "features": [1.0, 2.0]}


#: Starts 10 and 8 (offset: the worst, 10); elites (0, 0): 5, (1, 2): 9, (1, 1): 12 (worse than the offset).
TRIALS = [_t(0, 10.0, source="start"), _t(1, 8.0, source="start"),
          _t(2, 7.0, _cell([0, 0])), _t(3, 5.0, _cell([0, 0])), _t(4, 9.0, _cell([1, 2])),
          _t(5, 12.0, _cell([1, 1])), _t(6, None, _cell([0, 1]), state=TrialState.FAILED),
          _t(7, 6.0, _cell([0, 0]), state=TrialState.DUPLICATE)]


def test_the_archive_keeps_the_best_per_cell() -> None:
    elites = archive(TRIALS, Direction.MINIMIZE)
    assert {cell: t.number for cell, t in elites.items()} == {(0, 0): 3, (1, 2): 4, (1, 1): 5}


def test_coverage_and_qd_score_by_hand() -> None:
    spec = ArchiveSpec.of_config(ME)
    assert spec is not None and spec.cells == 6 and spec.features == ("length", "depth")
    assert coverage(TRIALS, spec) == pytest.approx(3 / 6)
    assert qd_offset(TRIALS, Direction.MINIMIZE) == 10.0
    assert qd_score(TRIALS, Direction.MINIMIZE) == pytest.approx((10 - 5) + (10 - 9) + 0)
    assert qd_score(TRIALS, Direction.MINIMIZE, offset=20.0) == pytest.approx(15 + 11 + 8)


def test_qd_score_when_maximizing_and_without_starts() -> None:
    trials = [_t(0, 2.0, source="start"), _t(1, 4.0, source="start"), _t(2, 5.0, _cell([0])), _t(3, 3.0, _cell([1])),
              _t(4, 1.0, _cell([2]))]
    assert qd_offset(trials, "maximize") == 2.0
    assert qd_score(trials, "maximize") == pytest.approx((5 - 2) + (3 - 2) + 0)
    assert qd_offset(trials[2:], "maximize") == 1.0  # no starts: the worst of every scored solution
    assert qd_score([], "minimize") is None


def test_an_archive_spec_from_a_recorded_config() -> None:
    assert ArchiveSpec.of_config({"kind": "llm"}) is None
    assert ArchiveSpec.of_config({"bins": 4, "features": ["a", "b"]}).cells == 16  # one count for every feature
    spec = ArchiveSpec.of_config({"bins": [3]})
    assert spec is not None and spec.features == ("feature 1",) and spec.cells == 3
    assert ArchiveSpec.of_config({"bins": [2, 2], "features": ["a"]}) is None  # they disagree
    outside = [_t(1, 1.0, _cell([5, 5]))]
    assert coverage(outside, ArchiveSpec.of_config(ME)) == 0.0  # a cell outside the grid is not counted


def test_archive_grid() -> None:
    grid = archive_grid(TRIALS, Direction.MINIMIZE, bins=(2, 3))
    assert grid.shape == (2, 3) and grid[0, 0] == 5.0 and grid[1, 2] == 9.0 and grid[1, 1] == 12.0
    assert int(np.isnan(grid).sum()) == 3


def _history(trials: list[Trial], direction: str = "minimize") -> SolutionHistory:
    return SolutionHistory(Direction(direction), sorted(trials, key=lambda t: t.number))


def test_island_curves_replay_the_database() -> None:
    """Every island starts with the starting solutions (step 0) and gains what was proposed from it;
    the island count comes from the recorded config, so an island that found nothing still has its line."""
    trials = [_t(0, 10.0, source="start"), _t(1, 9.0, {"island": 0}, step=1), _t(2, 7.0, {"island": 1}, step=1),
              _t(3, 8.0, {"island": 0}, step=1), _t(4, 9.5, {"island": 0}, step=2), _t(5, 3.0, {"island": 1}, step=3)]
    curves = island_curves(_history(trials), {"islands": 3, "reset_every": 0}, seed=0)
    assert curves.resets == ()
    assert curves.curves == {0: [(0, 10.0), (1, 8.0), (2, 8.0), (3, 8.0)],
                             1: [(0, 10.0), (1, 7.0), (2, 7.0), (3, 3.0)],
                             2: [(0, 10.0), (1, 10.0), (2, 10.0), (3, 10.0)]}
    # no recorded count: the islands the trials name
    assert set(island_curves(_history(trials), {}, seed=0).curves) == {0, 1}


def test_island_curves_show_a_reset_as_the_proposer_made_it() -> None:
    """Two islands, reset after every step from step 1 on: the worse island is emptied and seeded with
    the better one's best, so its line jumps there, exactly as the proposer's own rebuild has it."""
    from llmopt.proposers.islands import best_member, build_islands

    trials = [_t(0, 10.0, source="start"), _t(1, 4.0, {"island": 0}, step=1), _t(2, 9.0, {"island": 1}, step=1),
              _t(3, 6.0, {"island": 1}, step=2)]
    history = _history(trials)
    curves = island_curves(history, {"islands": 2, "reset_every": 1}, seed=7)
    assert curves.resets == (1, 2)
    # after step 1: island 1 (best 9) was the worse and restarts from island 0's best, 4
    assert curves.curves[1][1] == (1, 4.0) and curves.curves[0][1] == (1, 4.0)
    islands, _ = build_islands(history, 3, 2, 1, 7)
    by_number = {t.number: t for t in trials}
    assert [c[-1][1] for c in curves.curves.values()] == [best_member(i, by_number, Direction.MINIMIZE).value
                                                         for i in islands]


def _store_run(store: RunStore, name: str, seed: int, proposer: dict[str, Any], trials: list[Trial],
               **config: Any) -> None:
    run = store.create_run(name, "toy", {"seed": seed, "direction": "minimize", "problem": {"name": "toy"},
                                         "proposer": proposer, **config}, {})
    for step in sorted({t.step for t in trials}):
        store.begin_step(run.id, step, min(t.number for t in trials if t.step == step), None)
        for t in trials:
            if t.step == step:
                store.add_trial(run.id, t)
        store.finish_step(run.id, step)
    store.set_status(run.id, "finished", "max_steps", "done")


def _collected(tmp_path: Path) -> Any:
    shifted = [t if t.value is None else Trial(**{**t.__dict__, "value": t.value + (1 if t.source != "start" else 0)})
               for t in TRIALS[:5]]  # seed 1: elites (0, 0): 6, (1, 2): 10 -> coverage 2/6, QD-score 4 + 0
    islands = [_t(0, 10.0, source="start"), _t(1, 9.0, {"island": 0}), _t(2, 7.0, {"island": 1}),
               _t(3, 6.0, {"island": 0}, step=2)]
    novelty = [_t(0, 10.0, source="start"), _t(1, 9.0),
               Trial(number=2, step=1, state=TrialState.DUPLICATE, source="random", text="s1!", key="s1!",
                     duplicate_of=1, error="too similar to #1 (similarity 0.95 >= novelty threshold 0.9)",
                     metrics={"similarity": 0.95})]
    with RunStore(tmp_path / "s.db") as store:
        _store_run(store, "g/toy/me/seed0", 0, ME, TRIALS)
        _store_run(store, "g/toy/me/seed1", 1, ME, shifted)
        _store_run(store, "g/toy/islands/seed0", 0, {"kind": "islands", "islands": 2}, islands)
        _store_run(store, "g/toy/random/seed0", 0, {"kind": "random"}, novelty, novelty_threshold=0.9)
        return collect_runs(store)


def test_the_compare_table_shows_coverage_qd_score_and_similar(tmp_path: Path) -> None:
    collected = _collected(tmp_path)
    by_config: dict[str, list] = {}
    for o in collected.outcomes:
        by_config.setdefault(o.cell.config, []).append(o)
    table = comparison_table("toy", by_config, 2, {}, TableOptions(control="random"))
    rows = {r[0]: dict(zip(table[0], r)) for r in table[1:]}
    assert {"unique proposed", "similar", "coverage %", "QD-score"} <= set(table[0])
    me, rnd, isl = rows["me"], rows["random"], rows["islands"]
    assert me["coverage %"] == "41.7 [37.5, 45.8]"  # 50% and 33.3% over the two seeds
    assert me["QD-score"] == "5 [4.5, 5.5]"  # 6 (seed 0) and 4 (seed 1)
    assert me["unique proposed"] == "4.0 [3.5, 4.5]" and me["similar"] == "-"
    assert rnd["similar"] == "1.0" and rnd["coverage %"] == "-" and rnd["QD-score"] == "-"
    assert isl["similar"] == "-" and isl["coverage %"] == "-"
    notes = " ".join(table.notes)
    assert "coverage %: occupied cells of the MAP-Elites archive" in notes and "similar: proposals novelty" in notes


def test_a_table_without_population_runs_has_no_new_columns(tmp_path: Path) -> None:
    collected = _collected(tmp_path)
    islands = [o for o in collected.outcomes if o.cell.config == "islands"]
    table = comparison_table("toy", {"islands": islands}, 1, {})
    assert not {"similar", "coverage %", "QD-score"} & set(table[0])
    assert "unique proposed" in table[0]


def test_the_population_figures_are_written(tmp_path: Path) -> None:
    collected = _collected(tmp_path)
    figures = dict(population_figures(collected, "toy"))
    assert set(figures) == {"archive-me", "islands-islands"}  # the random run has neither
    assert "seed 0" in figures["archive-me"].axes[0].get_title()  # the first seed's archive
    for suffix, fig in figures.items():
        path = tmp_path / f"toy-{suffix}.png"
        fig.savefig(path, dpi=60)
        assert _pixels(path).std() > 0.01  # not blank


def test_llmopt_plot_writes_them_with_the_other_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wiring only (the standard figures stubbed: they are another test's, and slow to draw)."""
    import matplotlib.pyplot as plt

    from llmopt.experiments import plot

    monkeypatch.setattr(plot, "best_so_far_figure", lambda *a, **k: plt.figure(figsize=(1, 1)))
    monkeypatch.setattr(plot, "proposals_figure", lambda *a, **k: plt.figure(figsize=(1, 1)))
    monkeypatch.setattr(plot, "ecdf_figure", lambda *a, **k: None)
    written = write_figures(_collected(tmp_path), tmp_path / "figures", x_axes=("step",), formats=("png",))
    names = {p.name for p in written}
    assert {"toy-archive-me.png", "toy-islands-islands.png"} <= names
    assert not any("archive-random" in n or "islands-me" in n for n in names)


def _pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(path))


def test_the_figures_from_trials_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = archive_figure(TRIALS, "minimize", ArchiveSpec.of_config(ME), "an archive")
    assert "3/6 cells occupied" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() == "depth" and fig.axes[0].get_ylabel() == "length"
    plt.close(fig)
    fig = archive_figure(TRIALS, "minimize")  # no recorded grid: the cells the trials reach
    assert "3 cells occupied" in fig.axes[0].get_title()
    plt.close(fig)
    fig = islands_figure(_history([_t(0, 3.0, source="start"), _t(1, 2.0, {"island": 0}), _t(2, 1.0, {"island": 3})]),
                         {"islands": 4, "reset_every": 1}, 0)
    assert len(fig.axes[0].get_lines()) == 4 + 1 and "4 islands; resets after step 1" in fig.axes[0].get_title()
    plt.close(fig)


def test_real_population_runs_give_the_columns_and_figures(tmp_path: Path) -> None:
    """A MAP-Elites run and an islands run of the real proposers (a scripted model), read back from the
    store with nothing rebuilt: the archive's coverage and QD-score from what MAP-Elites recorded, and
    each figure drawn."""
    from fakes import scripted_llm

    from llmopt import Budget, Optimizer
    from llmopt.proposers import Islands, MapElites
    from problems.linear_regression.problem import LinearRegression

    with RunStore(tmp_path / "r.db") as store:
        for name, proposer in (("g/lin/me/seed0", MapElites(scripted_llm()[0], bins=4)),
                               ("g/lin/isl/seed0", Islands(scripted_llm()[0], islands=2))):
            Optimizer(LinearRegression(seed=0), proposer, seed=0, store=store, name=name, proposals_per_step=4,
                      budget=Budget(max_steps=3, stop_when_solved=False)).run()
        collected = collect_runs(store)
        me = next(o for o in collected.outcomes if o.cell.config == "me")
        cells = {tuple(t.origin["child_cell"]) for t in me.result.history if t.ok and t.origin}
    assert cells  # the proposer recorded where each child landed
    by_config = {o.cell.config: [o] for o in collected.outcomes}
    table = comparison_table("lin", by_config, 1, {})
    rows = {r[0]: dict(zip(table[0], r)) for r in table[1:]}
    assert float(rows["me"]["coverage %"]) == pytest.approx(100 * len(cells) / 16, abs=0.051)  # printed to 0.1
    assert rows["isl"]["coverage %"] == "-" and float(rows["me"]["QD-score"]) >= 0
    assert set(dict(population_figures(collected, "lin"))) == {"archive-me", "islands-isl"}
