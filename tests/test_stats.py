"""The statistics of `llmopt compare`: checked against scipy on known data, aRT on hand-made runs,
budgets read from recorded calls, and a whole grid whose verdicts are known in advance."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from llmopt import RunStore
from llmopt.cli import main
from llmopt.experiments.grid import GridError
from llmopt.experiments.plot import collect_runs, ecdf_points
from llmopt.experiments.stats import (
    average_runtime,
    compare_to_control,
    holm,
    median_band,
    median_ci,
    summarize,
    wilson,
)
from llmopt.experiments.tables import TableOptions, comparison_table, format_summary, parse_budget, parse_gap
from llmopt.history import Trial, TrialState
from llmopt.llm.usage import Completion
from llmopt.problem import Direction

# --- against scipy, on known data ----------------------------------------------------------

LOW = [1.0, 2.0, 1.5, 2.5, 1.2, 1.8, 2.2, 1.1, 1.9, 1.4]
HIGH = [x + 10.0 for x in LOW]


def test_a_clear_difference_is_flagged_in_the_direction_of_the_problem() -> None:
    better = compare_to_control(LOW, HIGH, Direction.MINIMIZE)
    assert better.test == "Mann-Whitney U"
    assert better.pvalue == pytest.approx(scipy_stats.mannwhitneyu(LOW, HIGH, alternative="two-sided").pvalue)
    assert better.pvalue < 1e-3 and better.verdict() == "better"
    assert compare_to_control(LOW, HIGH, Direction.MAXIMIZE).verdict() == "worse"  # lower is worse there
    assert compare_to_control(HIGH, LOW, Direction.MINIMIZE).verdict() == "worse"


def test_identical_samples_are_not_flagged() -> None:
    for paired in (False, True):
        same = compare_to_control(LOW, list(LOW), Direction.MINIMIZE, paired=paired)
        assert same.pvalue == 1.0 and same.verdict() == "no significant difference"
    shuffled = compare_to_control(LOW, LOW[::-1], Direction.MINIMIZE)  # same values, another order
    assert shuffled.pvalue == pytest.approx(1.0) and shuffled.verdict() == "no significant difference"


def test_paired_runs_use_wilcoxon_on_the_differences() -> None:
    control = [5.0, 7.0, 6.0, 9.0, 4.0, 8.0, 6.5, 7.5, 5.5, 6.2]
    mine = [c - d for c, d in zip(control, [0.4, 0.1, 0.3, 0.2, 0.5, 0.35, 0.15, 0.25, 0.45, 0.05])]
    paired = compare_to_control(mine, control, Direction.MINIMIZE, paired=True)
    assert paired.test == "Wilcoxon signed-rank"
    assert paired.pvalue == pytest.approx(scipy_stats.wilcoxon(np.subtract(mine, control)).pvalue)
    assert paired.verdict() == "better"  # every seed improved: exact p = 2 / 2**10
    unpaired = compare_to_control(mine, control, Direction.MINIMIZE)
    assert unpaired.verdict() == "no significant difference"  # the seeds' spread hides it unpaired


def test_holm_matches_the_step_down_by_hand() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, then 0.04*1 = 0.04 raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_summaries_and_intervals_are_scipys() -> None:
    s = summarize([*LOW, None, math.nan])
    assert s.n == 10 and s.median == pytest.approx(np.median(LOW))
    assert (s.q1, s.q3) == pytest.approx(tuple(np.percentile(LOW, [25, 75])))
    # the median's interval from order statistics, by hand: with n = 10 the 2nd and 9th smallest cover
    # the median with probability P(2 <= Bin(10, 1/2) <= 8) = 1 - 22/1024 = 97.9% (the 3rd and 8th: 89.1%)
    ordered = sorted(LOW)
    assert (s.ci_low, s.ci_high) == (ordered[1], ordered[8])
    assert median_ci([3.0, 3.0, 3.0, 3.0, 3.0, 3.0]) == (3.0, 3.0) and median_ci([1.0]) is None
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 5 runs: even min..max covers it with 93.75% only
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == (1.0, 6.0)  # 6 runs: 1 - 2/64 = 96.9%
    ci = scipy_stats.binomtest(3, 10).proportion_ci(method="wilson")
    assert wilson(3, 10) == pytest.approx((ci.low, ci.high))
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 0) is None
    curves = np.array([[5.0, 4.0, 1.0], [6.0, 3.0, 1.0], [7.0, 2.0, 1.0]])
    median, low, high = median_band(curves)
    assert median.tolist() == [6.0, 3.0, 1.0] and low[2] == high[2] == 1.0 and low[0] <= 6.0 <= high[0]
    runs = np.column_stack([LOW, HIGH])  # 10 runs of 2 points: enough that the resamples matter
    band = scipy_stats.bootstrap((runs,), np.median, axis=0, n_resamples=999, method="percentile",
                                 rng=np.random.default_rng(20230907)).confidence_interval
    _, low, high = median_band(runs)
    assert low.tolist() == band.low.tolist() and high.tolist() == band.high.tolist()


def test_a_skewed_columns_interval_contains_the_median_it_annotates() -> None:
    # a column like the demo grid's "best at evals <= 40" of random search: most runs near 50, a few
    # far away; the mean's bootstrap interval (111 to 14970 there) did not contain the median (59.3)
    skewed = [50.0, 50.0, 51.0, 52.5, 55.0, 63.6, 200.5, 5000.0, 30000.0, 60000.0]
    s = summarize(skewed)
    assert s.ci_low <= s.median <= s.ci_high and s.ci_low == 50.0 and s.ci_high == 30000.0
    assert format_summary(s, "{:.4g}") == "59.3 [51.38, 3800] (50 to 3e+04)"  # quartiles by numpy's interpolation


def test_a_value_that_rounds_to_zero_prints_unsigned() -> None:
    # an exact solver's gap to the optimum: 0 up to float noise, both signs (printed "-0.00" before)
    s = summarize([-1.4e-14, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2e-14])
    assert format_summary(s, "{:.2f}") == "0.00"
    assert format_summary(summarize([-1e-14, -1e-14, 0.5, 1.0, 2.0]), "{:.2f}") == "0.50 [0.00, 1.00]"
    assert format_summary(summarize([-0.5, -0.3, -0.1]), "{:.1f}") == "-0.3 [-0.4, -0.2]"  # real negatives keep their sign


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=40))
def test_every_interval_contains_its_median(values: list[float]) -> None:
    s = summarize(values)
    if len(values) < 6:
        assert s.ci_low is None and s.ci_high is None
    else:
        assert s.ci_low <= s.median <= s.ci_high


def test_the_average_runtime_is_cocos() -> None:
    # two successes (after 3 and 2 evaluations) and a failure that spent 4: (3 + 4 + 2) / 2
    assert average_runtime([(3, 5), (None, 4), (2, 6)]) == 4.5
    assert average_runtime([(None, 5), (None, 4)]) == math.inf
    assert average_runtime([]) is None


def test_flag_values_are_checked_before_anything_runs() -> None:
    assert parse_budget("evals=200") == ("evals", 200.0) and parse_budget("usd=0.5") == ("usd", 0.5)
    assert parse_gap("1%") == 1.0 and parse_gap("2.5") == 2.5
    for bad in ("evals", "calls=3", "tokens=many", "evals=-1"):
        with pytest.raises(GridError, match="--budget"):
            parse_budget(bad)
    with pytest.raises(GridError, match="--target-gap"):
        parse_gap("one percent")


# --- hand-made runs in a store -------------------------------------------------------------

def _run(store: RunStore, name: str, seed: int, values: list[float], tokens: list[int] | None = None,
         optimum: float = 10.0) -> None:
    """A finished minimizing run of one step per value (two states mixed in), with an optimizer call
    of ``tokens[i]`` tokens before each proposal."""
    config = {"seed": seed, "direction": "minimize", "problem": {"name": "toy", "optimum": optimum},
              "proposer": {"kind": "llm", "llm": {"model": "m"}}}
    run = store.create_run(name, "toy", config, {})
    number = 0
    for step, value in enumerate(values):
        store.begin_step(run.id, step, number, "prompt")
        if tokens is not None:
            store.add_call(run.id, number, step, "m", Completion(seed=seed, text="x", prompt_tokens=tokens[step],
                                                                  cost_usd=0.0))
        store.add_trial(run.id, Trial(number=number, step=step, state=TrialState.INVALID, source="llm:m", raw="?"))
        number += 1
        store.add_trial(run.id, Trial(number=number, step=step, state=TrialState.COMPLETE, source="llm:m",
                                      text=str(value), key=(step, value), value=value))
        number += 1
        store.finish_step(run.id, step)
    store.set_status(run.id, "finished", "max_steps", "done")


def test_art_success_and_budgets_on_hand_made_runs(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.db") as store:
        _run(store, "a-seed0", 0, [30, 20, 10, 10, 10], tokens=[100, 100, 100, 100, 100])  # optimum at eval 3
        _run(store, "a-seed1", 1, [40, 30, 20, 15], tokens=[10, 10, 10, 10])  # never: 4 evaluations
        _run(store, "a-seed2", 2, [10, 50, 50, 50, 50, 50], tokens=[500, 0, 0, 0, 0, 0])  # at eval 1
        collected = collect_runs(store)
    outcomes = collected.outcomes
    assert [o.evals_to_optimum() for o in outcomes] == [3, None, 1]
    assert [o.solved() for o in outcomes] == [True, False, True]
    table = comparison_table("toy", {"a": outcomes}, 3, {}, TableOptions(budget=("tokens", 250), target=20.0))
    header, row = table[0], dict(zip(table[0], table[1]))
    assert row["aRT to optimum"] == "4 (2/3)"  # (3 + 4 + 1) / 2 successes
    assert row["aRT to 20"] == "2 (3/3)"  # evaluations 2, 3 and 1
    assert row["solved"].startswith("2/3 (")
    # within 250 tokens: seed 0 has paid 100, 200 (300 is too many) -> best 20; seed 1 everything -> 15;
    # seed 2's first call costs 500: nothing scored within the budget
    assert [o.best_within("tokens", 250) for o in outcomes] == [20.0, 15.0, None]
    assert row["best at tokens <= 250"].startswith("17.5 [16.25, 18.75]")
    assert [o.best_within("evals", 2) for o in outcomes] == [20.0, 30.0, 10.0]
    assert "vs random" not in " ".join(header)  # no control in this table
    assert any("n = 3 runs is small" in note for note in table.notes)
    hits, pairs = ecdf_points(outcomes, {})  # the default ladder: gaps 50, 20, 10, 5, 2, 1, 0 % to the optimum 10
    assert pairs == 21 and hits.tolist() == [1.0] * 7 + [3.0] * 7 + [4.0]  # seed 1 reaches only 15 (50%), at eval 4


def test_rows_are_tested_at_equal_evaluations_and_the_notes_say_how(tmp_path: Path) -> None:
    """A row whose runs stopped early is compared with the control's runs cut at its evaluations,
    seed by seed: the control's later, better values do not count (the fix for equal-steps headlines)."""
    with RunStore(tmp_path / "s.db") as store:
        for seed in range(6):  # the LLM-like row: two evaluations, then out of calls
            _run(store, f"g/toy/llm/seed{seed}", seed, [30.0 - seed, 20.0 - seed])
            _run(store, f"g/toy/random/seed{seed}", seed, [40.0, 35.0, 1.0, 1.0])  # worse at 2 evals, far better at 4
        collected = collect_runs(store)
    by_config: dict[str, list] = {}
    for o in collected.outcomes:
        by_config.setdefault(o.cell.config, []).append(o)
    assert set(by_config) == {"llm", "random"}
    table = comparison_table("toy", by_config, 6, {}, TableOptions(control="random"))
    rows = {r[0]: dict(zip(table[0], r)) for r in table[1:]}
    assert rows["llm"]["evals"] == "2" and rows["random"]["evals"] == "4"
    assert rows["llm"]["best"].startswith("17.5") and rows["random"]["best"] == "1"  # final values: random wins
    assert rows["llm"]["vs random at equal evals (Holm p)"] == "better (p=0.031)"  # at 2 evaluations: llm wins
    notes = " ".join(table.notes)
    assert "runs of llm or of the control were cut there" in notes
    assert "one test here: Holm's correction leaves its p as it is" in notes
    assert rows["llm"]["ran"] == "opro m" == rows["random"]["ran"]  # what the stored runs say they ran


def test_beat_starts_counts_runs_whose_proposals_beat_every_starting_solution(tmp_path: Path) -> None:
    """A run that ended at a starting solution ties every other such run: the column says how many did not."""
    config = {"seed": 0, "direction": "minimize", "problem": {"name": "toy"}, "proposer": {"kind": "random"}}
    with RunStore(tmp_path / "s.db") as store:
        for seed, proposed in enumerate([[45.0, 41.0], [30.0], [40.0]]):  # 40 ties the best start: not beaten
            run = store.create_run(f"g/toy/r/seed{seed}", "toy", {**config, "seed": seed}, {})
            store.begin_step(run.id, 0, 0, None)
            for n, value in enumerate([50.0, 40.0]):
                store.add_trial(run.id, Trial(number=n, step=0, state=TrialState.COMPLETE, source="start",
                                              text=f"s{n}", key=f"s{n}", value=value))
            store.finish_step(run.id, 0)
            store.begin_step(run.id, 1, 2, "prompt")
            for n, value in enumerate(proposed, 2):
                store.add_trial(run.id, Trial(number=n, step=1, state=TrialState.COMPLETE, source="random",
                                              text=f"p{n}", key=f"p{n}", value=value))
            store.finish_step(run.id, 1)
            store.set_status(run.id, "finished", "max_steps", "done")
        outcomes = collect_runs(store).outcomes
    assert [o.beat_starts() for o in outcomes] == [False, True, False]
    table = comparison_table("toy", {"r": outcomes}, 3, {})
    assert dict(zip(table[0], table[1]))["beat starts"] == "1/3"
    assert any("beat starts: runs in which a proposal scored better than every starting solution" in n
               for n in table.notes)


@pytest.mark.slow
def test_a_grid_with_known_verdicts(tmp_path: Path, capsys) -> None:
    """Ten seeds of random search: a box around the true pair beats the wide control, the control's
    twin is not different from it, and the markdown, CSV and budget views agree."""
    grid = tmp_path / "g.toml"
    grid.write_text('[defaults]\nproposer = "random"\nsteps = 3\nproposals = 4\nrandom-range = [-50, 50]\n'
                    '[problems.linreg]\n[configs.random]\n[configs.twin]\n'
                    '[configs.narrow]\nrandom-range = [13, 17]\n')
    store = str(tmp_path / "g.db")
    assert main(["compare", str(grid), "--store", store, "--quiet", "--markdown", "--budget", "evals=10"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert rows["random"].count("| control |") == 2 and "| 10/10 |" in rows["random"]
    assert "no significant difference (p=1)" in rows["twin"]  # identical runs: the same seeds, the same draws
    assert "| better (p=" in rows["narrow"]
    assert "Wilcoxon signed-rank" in out and "Holm" in out and "n = " not in out  # ten runs: not small
    assert "p Holm-corrected over the rows (2 tests)" in out
    assert main(["compare", str(grid), "--store", store, "--no-run", "--csv", "--control", "narrow"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_config = {r["configuration"]: r for r in table}
    assert by_config["narrow"]["vs narrow at equal evals (Holm p)"] == "control"
    assert by_config["random"]["vs narrow at equal evals (Holm p)"].startswith("worse (p=")
    assert {r["problem"] for r in table} == {"linreg"}
    assert main(["compare", "--problems", "linreg", "tsp", "--proposers", "random", "--seeds", "2", "--set", "steps=1",
                 "--store", str(tmp_path / "two.db"), "--quiet", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    tsp = next(r for r in rows if r["problem"] == "tsp" and r["configuration"] == "random")
    lin = next(r for r in rows if r["problem"] == "linreg" and r["configuration"] == "random")
    assert float(tsp["gap %"].split()[0]) > 0 and lin["gap %"] == "-"  # columns aligned across the two tables
    other = tmp_path / "other.toml"  # the control under another label: the one random-proposer row
    other.write_text('seeds = 3\n[defaults]\nsteps = 2\nproposals = 4\n[problems.linreg]\n'
                     '[configs.control]\nproposer = "random"\n[configs.cma]\nproposer = "optuna:cmaes"\n')
    assert main(["compare", str(other), "--store", str(tmp_path / "other.db"), "--quiet", "--no-references"]) == 0
    assert "vs control at equal evals (Holm p)" in capsys.readouterr().out
    assert main(["compare", str(grid), "--store", store, "--no-run", "--control", "nope"]) == 2
    assert "--control 'nope': no configuration of that name" in capsys.readouterr().err
    figures = tmp_path / "figs"
    assert main(["plot", str(grid), "--store", store, "--out", str(figures), "--x", "evals", "tokens", "seconds"]) == 0
    assert sorted(p.stem for p in figures.glob("*.png")) == ["linreg-best-vs-evals", "linreg-best-vs-seconds",
                                                              "linreg-best-vs-tokens", "linreg-ecdf", "linreg-proposals"]
    ecdf = (figures / "linreg-ecdf.svg").read_text()
    assert "the true pair" in ecdf and "narrow (n=10)" in ecdf  # linear regression's own ladder, every row
    assert "95% bootstrap CI of the median" in (figures / "linreg-best-vs-evals.svg").read_text()
    assert "none spent" in (figures / "linreg-best-vs-tokens.svg").read_text()  # random search costs no tokens
