"""The functions behind published numbers, on tiny runs whose answers are worked out by hand.

Every number in README.md and docs/results/ comes from a function of a benchmark script (or of
``llmopt.experiments``); each is tested here on a store written trial by trial (or a result built
by hand), so a published figure and the arithmetic behind it cannot drift apart. Where a results
file's own data allow, the test recomputes its published row from them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.budget import StopReason
from llmopt.experiments.measures import (
    BudgetMismatch,
    check_equal,
    check_proposals_per_step,
    evals_until,
    proposal_counts,
    proposals_per_step,
)
from llmopt.experiments.report import run_summary
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm.usage import Completion, Usage
from llmopt.optimizer import RunResult
from llmopt.problem import Direction
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cost_linreg  # noqa: E402
import evoprompt_grid  # noqa: E402
import linreg_blackbox  # noqa: E402
import linreg_local  # noqa: E402
import linreg_random  # noqa: E402
import race_bbh  # noqa: E402

C, D, INV, F = TrialState.COMPLETE, TrialState.DUPLICATE, TrialState.INVALID, TrialState.FAILED


def trial(number: int, step: int, state: TrialState, text: str | None = None, value: float | None = None,
          source: str = "llm:m", **kw: Any) -> Trial:
    return Trial(number=number, step=step, state=state, source=source, text=text, key=text, value=value, **kw)


def start(number: int, text: str, value: float) -> Trial:
    return trial(number, 0, C, text, value, source="start")


def stored(store: RunStore, name: str, trials: list[Trial], calls: list[tuple[int, int, int, int]] = (),
           stop: str = "max_evals", elapsed: float = 10.0) -> None:
    """A finished run written directly: ``calls`` as (trial number, step, prompt tokens, completion tokens)."""
    run = store.create_run(name, "linreg", {"direction": "minimize"}, {})
    for t in trials:
        store.add_trial(run.id, t)
    for number, step, prompt, completion in calls:
        store.add_call(run.id, number, step, "m", Completion(seed=number, text="r", prompt_tokens=prompt,
                                                             completion_tokens=completion))
    store.set_status(run.id, "finished", stop, "", elapsed)


# --- llmopt.experiments.measures -------------------------------------------------------------------

def test_proposals_and_evaluations_are_counted_one_way() -> None:
    trials = [start(0, "a", 9.0), start(1, "b", 8.0), trial(2, 1, D, "a"), trial(3, 1, C, "c", 5.0),
              trial(4, 1, INV), trial(5, 2, F), trial(6, 2, C, "d", 1.0)]
    counts = proposal_counts(trials)
    assert (counts.proposed, counts.complete, counts.duplicate, counts.invalid, counts.failed) == (5, 2, 1, 1, 1)
    assert counts.share_pct(counts.duplicate) == 20.0 and proposal_counts([]).share_pct(0) is None
    assert evals_until(reversed(trials), lambda t: t.text == "d") == 4  # starts count; trial order, not list order
    assert evals_until(trials, lambda t: t.text == "b") == 2 and evals_until(trials, lambda t: False) is None
    assert proposals_per_step(trials) == {1: 3, 2: 2}


def test_budget_checks_name_the_run_that_differs() -> None:
    check_equal("calls", {"a": 3, "b": 3})
    with pytest.raises(BudgetMismatch, match=r"unequal calls: 3 expected, but c: 2"):
        check_equal("calls", {"a": 3, "b": 3, "c": 2})
    with pytest.raises(BudgetMismatch, match=r"4 expected, but a: 3, b: 3"):
        check_equal("calls", {"a": 3, "b": 3}, 4)
    steps = [trial(n, 1 + n // 2, C, str(n), 1.0) for n in range(4)]  # two steps of two
    check_proposals_per_step("r", steps, 2, steps=2)
    check_proposals_per_step("r", steps, 2, steps=5, solved=True)  # stopped early by solving it
    with pytest.raises(BudgetMismatch, match=r"r: 2 steps, not the 5"):
        check_proposals_per_step("r", steps, 2, steps=5)
    with pytest.raises(BudgetMismatch, match=r"r: steps \{2: 1\} drew"):
        check_proposals_per_step("r", steps[:3], 2)


# --- benchmarks/cost_linreg.py: tokens and calls per new valid pair ------------------------------

def cost_store(path: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Two paper-protocol runs. Seed 0: 4 proposals (2 new, a repeat, an invalid reply), 4 calls of
    100 + 10 tokens. Seed 1: one reply that was the true pair, 200 + 40 tokens, stopped solved."""
    with RunStore(path) as store:
        stored(store, "cost-paper-seed0",
               [start(0, "w=15, b=13", 100.0), start(1, "w=14, b=15", 400.0), trial(2, 1, C, "w=16, b=14", 50.0),
                trial(3, 1, D, "w=15, b=13"), trial(4, 1, INV), trial(5, 1, C, "w=17, b=14", 80.0)],
               [(n, 1, 100, 10) for n in (2, 3, 4, 5)])
        stored(store, "cost-paper-seed1",
               [start(0, "w=10, b=10", 900.0), start(1, "w=11, b=11", 800.0), trial(2, 1, C, "w=15, b=14", 60.0)],
               [(2, 1, 200, 40)], stop="solved", elapsed=20.0)
    return cost_linreg.read_runs(str(path), ["paper"], seeds=2)


def test_cost_per_new_valid_pair_from_a_store(tmp_path: Path) -> None:
    runs = cost_store(tmp_path / "cost.db")
    first, second = runs["paper"][0], runs["paper"][1]
    assert {k: first[k] for k in ("new", "proposed", "duplicate", "invalid", "evals", "calls", "tokens",
                                  "prompt_tokens", "best", "start_best", "solved_step", "stop")} == {
        "new": 2, "proposed": 4, "duplicate": 1, "invalid": 1, "evals": 4, "calls": 4, "tokens": 440,
        "prompt_tokens": 400, "best": 50.0, "start_best": 100.0, "solved_step": None, "stop": "max_evals"}
    assert (second["solved_step"], second["evals"], second["tokens"]) == (1, 3, 240)
    n = cost_linreg.row_numbers([first, second])
    assert n["tokens_per_new"] == pytest.approx(680 / 3) and n["calls_per_new"] == pytest.approx(5 / 3)
    assert (n["new_per_run"], n["duplicate_pct"], n["invalid_pct"], n["best_median"], n["solved"]) == (
        1.5, 20.0, 20.0, 55.0, 1)
    assert n["prompt_pct"] == pytest.approx(100 * 600 / 680) and n["seconds_median"] == 15.0
    row = cost_linreg.table(runs)[1]
    # gpt-4o-mini's rates: $0.15 / M prompt, $0.60 / M completion tokens: 600 and 80 of them, over 3 new pairs
    assert row == ["paper", 2, "227", "1.67", "1.5", "20", "20", "88", "0.046", "55", "1/2", "1", "15"]


def test_cost_benchmark_refuses_unequal_evaluations(tmp_path: Path) -> None:
    runs = cost_store(tmp_path / "cost.db")
    cost_linreg.check_budget(runs, 4)  # seed 1 scored 3 pairs, but it stopped on the true pair
    with pytest.raises(BudgetMismatch, match=r"5 expected, but cost-paper-seed0: 4"):
        cost_linreg.check_budget(runs, 5)
    with pytest.raises(BudgetMismatch, match=r"2 expected, but cost-paper-seed0: 4, cost-paper-seed1: 3"):
        cost_linreg.check_budget(runs, 2)


def published(bests: tuple[float, ...]) -> dict[int, dict[str, Any]]:
    """docs/results/cost-linreg.md's best loss per seed, with each seed's best starting pair (computed
    from the seed: LinearRegression(seed=s) started from its 5 pairs)."""
    starts = (100.0, 47557.6, 48773.3, 1231.3, 217.9)
    return {s: {"best": b, "start_best": starts[s]} for s, b in enumerate(bests)}


def test_no_seed_worse_says_which_ties_are_trivial() -> None:
    paper = published((100.0, 47557.6, 46059.0, 1231.3, 217.9))
    hot = published((100.0, 47557.6, 470.1, 792.9, 137.4))
    verdict = cost_linreg.compare_seeds("per-call-8-hot", "paper", hot, paper)
    assert (verdict.lower, verdict.equal, verdict.higher, verdict.trivial) == ((2, 3, 4), (0, 1), (), (0, 1))
    assert verdict.describe() == (
        "per-call-8-hot against paper, best loss per seed: lower on 3 (2, 3, 4), equal on 2 (0, 1), higher on 0; "
        "the ties on seeds 0, 1 are trivial: neither run left its best starting pair there")
    assert cost_linreg.per_seed_line("paper", paper) == (
        "paper: best loss per seed (0, 1, 2, 3, 4) 100.0, 47558, 46059, 1231, 217.9; best starting pair "
        "100.0, 47558, 48773, 1231, 217.9; below its starts on 1 of 5 seeds (2)")
    stuck = published((100.0, 47557.6, 48773.3, 1231.3, 217.9))
    assert cost_linreg.compare_seeds("a", "b", stuck, stuck).describe().endswith(
        "equal on 5 (0, 1, 2, 3, 4), higher on 0; trivially: on every seed neither run left its best starting pair")
    worse = cost_linreg.compare_seeds("b", "paper", stuck, paper)
    assert worse.higher == (2,) and worse.trivial == (0, 1, 3, 4)


def test_the_starting_pairs_the_doc_names_are_the_seeds() -> None:
    from llmopt.seeding import stream

    bests = [min(p.score(s) for s in p.initial_solutions(stream(seed, "start")))
             for seed, p in enumerate(LinearRegression(seed=s) for s in range(5))]
    assert [round(b, 1) for b in bests] == [100.0, 47557.6, 48773.3, 1231.3, 217.9]


# --- benchmarks/race_bbh.py: scorer calls saved by racing ----------------------------------------

def raced(value: float, calls: int, cut: bool) -> SimpleNamespace:
    return SimpleNamespace(value=value, calls=[None] * calls, metrics={"race": {"scored": calls}} if cut else {})


def test_a_raced_step_counts_calls_and_keeps_or_loses_the_best() -> None:
    a, b, c = (trial(n, 1, C, t, v) for n, t, v in ((1, "A", 60.0), (2, "B", 50.0), (3, "C", 40.0)))
    kept = race_bbh.race_step(1, [(a, raced(60.0, 48, False)), (b, raced(37.5, 8, True)),
                                  (c, raced(31.25, 16, True))], n_train=48)
    assert kept == {"step": 1, "full_calls": 144, "raced_calls": 72, "agree": True, "cut": 2, "instructions": 3,
                    "trivial": False}
    lost = race_bbh.race_step(1, [(a, raced(25.0, 8, True)), (b, raced(50.0, 48, False))], n_train=48)
    assert not lost["agree"] and lost["raced_calls"] == 56
    nothing_cut = race_bbh.race_step(1, [(a, raced(60.0, 48, False))], n_train=48)
    assert nothing_cut["agree"] and nothing_cut["trivial"]


def test_the_bar_is_the_kth_best_of_earlier_steps() -> None:
    trials = [trial(0, 0, C, "s", 40.0, source="start"), trial(1, 1, C, "x", 70.0), trial(2, 1, C, "y", 55.0),
              trial(3, 2, C, "z", 65.0)]
    bars: list[tuple[str, float]] = []

    def evaluate(text: str, bar: float) -> SimpleNamespace:
        bars.append((text, bar))
        return raced(50.0, 4, False)

    steps = race_bbh.race_steps(trials, 1, evaluate, n_train=4)
    assert bars == [("x", 40.0), ("y", 40.0), ("z", 70.0)] and [s["step"] for s in steps] == [1, 2]
    bars.clear()
    assert [s["step"] for s in race_bbh.race_steps(trials, 2, evaluate, n_train=4)] == [2]  # step 1: one earlier
    assert bars == [("z", 55.0)]


def test_the_published_replay_row_from_its_steps() -> None:
    """docs/results/race-bbh.md, K = 1: per step 336 -> 320, 384 -> 208, 384 -> 272, 336 -> 232 calls
    (48 examples: 7, 8, 8, 7 instructions), 1, 5, 3, 3 cut short, the best kept in each."""
    steps = [{"full_calls": f, "raced_calls": r, "cut": c, "instructions": f // 48, "agree": True, "trivial": c == 0}
             for f, r, c in ((336, 320, 1), (384, 208, 5), (384, 272, 3), (336, 232, 3))]
    assert race_bbh.replay_row(1, 1, steps) == [1, 1, 4, "360", "258", "1.40x", "40",
                                                "100 (4 of 4; 0 trivially: nothing cut)"]


def test_the_race_ceiling_and_the_real_runs_ratio() -> None:
    assert race_bbh.race_ceiling(48, 8) == pytest.approx(384 / 104) and f"{384 / 104:.1f}" == "3.7"
    assert f"{race_bbh.race_ceiling(261, 8):.1f}" == "6.6"  # the paper's GSM8K training set
    assert race_bbh.race_ceiling(6, 8) == 1.0  # fewer examples than the first look: nothing to save
    full = [{"calls_per_step": 360.0, "cut": 0, "best": 66.7, "seconds": 1016.0}]
    mine = [{"calls_per_step": 294.0, "cut": 9, "best": 66.7, "seconds": 551.0}]
    assert race_bbh.real_row("--race 1", mine, full) == ["--race 1", 1, "294", "1.22x", 9, "66.7", "551"]
    assert race_bbh.real_row("full", full, None)[3] == "-"


def test_a_real_run_counts_scorer_calls_per_step_and_must_match_the_full_runs_budget() -> None:
    calls = [SimpleNamespace(step=s) for s in [0] * 4 + [1] * 10 + [2] * 6]
    trials = [trial(0, 0, C, "s", 40.0, source="start"), trial(1, 1, C, "x", 70.0),
              trial(2, 2, C, "y", 30.0, metrics={"race": {"scored": 8}}), trial(3, 2, D, "x")]
    got = race_bbh.real_numbers(calls, trials, 12.0)
    assert got == {"calls_per_step": 8.0, "best": 70.0, "seconds": 12.0, "cut": 1, "steps": 2, "trials": 4}
    race_bbh.check_same_budget({"full": got, "raced": dict(got)})
    with pytest.raises(BudgetMismatch, match="steps per run"):
        race_bbh.check_same_budget({"full": got, "raced": {**got, "steps": 1}, "again": got})


# --- benchmarks/evoprompt_grid.py: the EvoPrompt table --------------------------------------------

def prompt_result(values: list[float], scorer_calls: int, lost: int = 0) -> RunResult:
    """A prompt run: two starts (50 and 25% on training), then ``values`` found, then ``lost`` repeats."""
    trials = [start(0, "s1", 50.0), start(1, "s2", 25.0)]
    trials += [trial(2 + i, 1, C, f"n{i}", v) for i, v in enumerate(values)]
    trials += [trial(2 + len(values) + i, 1, D, "s1") for i in range(lost)]
    history = SolutionHistory(Direction.MAXIMIZE, trials)
    return RunResult(name="r", stop_reason=StopReason.MAX_STEPS, stop_detail="", best=history.best(), steps=1,
                     solved_step=None, counts=history.counts(), usage=Usage(), elapsed_s=1.0, metrics={},
                     history=history, usage_by_role={"scorer": Usage(calls=scorer_calls), "optimizer": Usage(calls=3)})


def test_the_evoprompt_rows_and_their_equal_scorer_budget() -> None:
    numbers = evoprompt_grid.run_numbers(0, prompt_result([75.0, 25.0], 16, lost=1), test=60.0)
    assert numbers == evoprompt_grid.RunNumbers(seed=0, best_train=75.0, test=60.0, scored=4, scorer_calls=16,
                                                optimizer_calls=3, lost=1, new_mean=50.0)
    by_row = {("sports", "opro"): [evoprompt_grid.run_numbers(1, prompt_result([0.0, 0.0], 16), 40.0), numbers],
              ("sports", "ga"): [evoprompt_grid.run_numbers(0, prompt_result([50.0, 50.0], 16, lost=3), 50.0)]}
    evoprompt_grid.check_budgets(by_row)
    rows = evoprompt_grid.table_rows(by_row, {"sports": [("s1", 63.3)]})
    assert rows[1] == ["sports", "opro", 2, "4", "16", "3", "0", "25.0", "62.5", "50.0", "60.0 40.0"]
    assert rows[2][:8] == ["sports", "ga", 1, "4", "16", "3", "3", "50.0"]
    assert rows[3] == ["sports", "start: 's1'", "-", "-", "-", "-", "-", "-", "-", "63.3", ""]
    by_row[("sports", "de")] = [evoprompt_grid.run_numbers(1, prompt_result([10.0, 20.0], 12), 0.0)]
    with pytest.raises(BudgetMismatch, match=r"scorer calls on sports: 16 expected, but sports/de/seed1: 12"):
        evoprompt_grid.check_budgets(by_row)


# --- benchmarks/linreg_blackbox.py, linreg_local.py, linreg_random.py: evaluations to the pair ----

def test_evaluations_to_the_exact_pair_and_the_equal_proposals(tmp_path: Path) -> None:
    """Five starts; step 1: 6 new pairs and 2 repeats; step 2: two new, then (15, 14) third: 5 + 6 + 3 = 14."""
    starts = [start(n, f"w={n}, b=0", 1e4 + n) for n in range(5)]
    step1 = [trial(5 + i, 1, D if i in (2, 5) else C, f"w={i}, b=1", 500.0 + i) for i in range(8)]
    step2 = [trial(13 + i, 2, C, "w=15, b=14" if i == 2 else f"w={i}, b=2", 50.0 + i) for i in range(8)]
    with RunStore(tmp_path / "bb.db") as store:
        stored(store, "solved", starts + step1 + step2, stop="solved")
        stored(store, "short", starts + step1 + step2[:7])
        got = linreg_blackbox.outcome(store, "solved", 15, 14, steps=50)
        assert {k: got[k] for k in ("solved_step", "solved_eval", "unique", "steps", "evals")} == {
            "solved_step": 2, "solved_eval": 14, "unique": 5 + 6 + 8, "steps": 2, "evals": 19}
        assert linreg_blackbox.outcome(store, "solved", 3, 5)["solved_eval"] is None
        with pytest.raises(BudgetMismatch, match=r"short: steps \{2: 7\}"):
            linreg_blackbox.outcome(store, "short", 15, 14, steps=50)


def test_the_embedded_benchmarks_summary_and_the_random_boxes() -> None:
    runs = [{"config": "random", "solved_step": s, "solved_eval": None if s is None else 5 + 8 * s, "valid": None,
             "unique": u, "tokens": 0, "s_per_step": 0.5, "framework_share": None}
            for s, u in ((7, 40), (None, 300), (16, 100))]
    row = linreg_local.summary(runs)[1]
    assert row[:5] == ["random", "2/3", "7, -, 16", "61, -, 133", "-"] and row[5] == "147"
    assert linreg_random.box_summary([6, 2, 10, 3, 2]) == "median 3; solved 5/5"
    assert linreg_random.box_summary([None, None, None, 37, 12]) == "median -; solved 2/5"  # no median of the solved
    assert linreg_random.box_summary([2, 3]) == "median 2.5; solved 2/2"


# --- the main command's summary (llmopt run linreg) ------------------------------------------------

def test_the_main_commands_summary_counts_steps_calls_trials_and_repeats(tmp_path: Path) -> None:
    """Seed 0's starts include (15, 13). Two proposals a step, up to two rounds: round 1 repeats a start
    twice (2 repeats, redrawn); round 2 gives the true pair and a reply with no pair. By hand: 1 step,
    4 calls, 5 + 4 trials: 6 complete, 1 invalid, 2 duplicate; the exact pair at step 1."""
    llm = ScriptedLLM(["[15, 13]", "[15, 13]", "[15, 14]", "no idea"])
    problem = LinearRegression(seed=0)
    with RunStore(tmp_path / "runs.db") as store:
        result = Optimizer(problem, LLMProposer(llm, structured="off"), seed=0, store=store, name="main",
                           proposals_per_step=2, max_rounds=2, budget=Budget(max_steps=50)).run()
    rows = dict((str(k), str(v)) for k, v in run_summary(result, problem))
    assert rows["stopped by"] == "solved: the optimum was proposed at step 1"
    assert (rows["steps"], rows["exact_pair_step"]) == ("1", "1")
    assert rows["trials"] == "9: 6 complete, 1 invalid, 2 duplicate, 0 failed"
    assert rows["LLM calls"] == "4 (0 cached, 0 failed)"
    assert rows["best"].startswith("w=15, b=14  (value ") and rows["best"].endswith(", step 1)")
    assert rows["wall time"] == f"{result.elapsed_s:.1f} s"
