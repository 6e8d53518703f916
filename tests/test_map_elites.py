"""MAP-Elites (``--proposer map-elites``) and the problems' features: every built-in problem's
features are finite, deterministic and inside their ranges; the archive keeps the best per cell and
is a function of the trials (rebuilt identically from a store, and from what the trials recorded);
parents come from occupied cells; a SIGKILLed run resumes to the uninterrupted one; a user's
``features=`` works from ``llmopt.minimize``; bad settings are one line before anything is spent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import pytest
from fakes import linreg_script, scripted_llm
from harness import run_script, snapshot
from hypothesis import given, settings
from toys import make_problem

import llmopt
from llmopt import Budget, Optimizer, RunStore
from llmopt.cli import main
from llmopt.function_problem import FunctionProblem
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction, Problem
from llmopt.programs.problem import ProgramProblem
from llmopt.proposers import archive
from llmopt.proposers.map_elites import MapElites
from llmopt.testing import ContractViolation
from llmopt.testing import proposer_contract as contract
from llmopt.testing.scripted import ScriptedLLM
from llmopt.testing.strategies import solutions
from problems.cap_set.cli import CLI as CapSetCLI
from problems.circle_packing import DESCRIPTION, initial_program
from problems.linear_regression.problem import LinearRegression
from problems.tsp.instances import TSPInstance, euclidean, random_instance
from problems.tsp.problem import TravellingSalesman

SCHEMA = {"type": "object", "required": ["x", "y", "tag"], "additionalProperties": False,
          "properties": {"x": {"type": "integer", "minimum": -4, "maximum": 4}, "tag": {"enum": ["a", "b"]},
                         "y": {"type": "number", "minimum": 0, "maximum": 2}}}


def _objective(s: dict[str, Any]) -> float:
    return float((s["x"] - 1) ** 2 + s["y"])


def _explicit_tsp() -> TravellingSalesman:
    inst = random_instance(7, 3)
    return TravellingSalesman(TSPInstance("explicit", euclidean(inst.coords), None, "EXPLICIT"))


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "linreg": lambda: LinearRegression(seed=0),
    "tsp": lambda: TravellingSalesman(random_instance(9, 0)),
    "tsp-explicit": _explicit_tsp,
    "prompt": lambda: make_problem(initial=["", "Let's think step by step.", "Read it. Check parity! Answer."])[0],
    "circle-packing": lambda: ProgramProblem("problems.circle_packing.evaluator:evaluate", initial_program(),
                                             description=DESCRIPTION),
    "cap-set": lambda: ProgramProblem(CapSetCLI.EVALUATOR, CapSetCLI.initial(), description=CapSetCLI.DESCRIPTION),
    "function": lambda: FunctionProblem(_objective, SCHEMA, description="Minimize."),
    "function-strings": lambda: FunctionProblem(len, {"enum": ["a", "bb", "ccc"]}, description="Minimize."),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_built_in_problems_features_are_finite_deterministic_and_in_range(name: str) -> None:
    problem = PROBLEMS[name]()
    names, ranges = problem.feature_names(), problem.feature_ranges()
    assert len(names) == len(ranges) >= 1 and len(set(names)) == len(names)
    assert all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in ranges)

    @settings(max_examples=8, deadline=None)
    @given(solutions(problem))
    def check(solution: Any) -> None:
        values = problem.features(solution)
        assert len(values) == len(names) and values == problem.features(solution)
        assert all(math.isfinite(v) and lo <= v <= hi for v, (lo, hi) in zip(values, ranges)), (values, ranges)
        assert values == problem.features(problem.from_text(problem.encode(solution)))  # as a resumed run sees it

    check()


def test_the_default_features_say_something_about_each_solution() -> None:
    tsp = TravellingSalesman(random_instance(4, 1))  # the square's corners: (0, 2, 1, 3) crosses itself
    assert tsp.feature_names()[0] == "crossings" and tsp.features((0, 1, 2, 3))[0] == 0
    assert tsp.features((0, 2, 1, 3))[0] == 1
    assert LinearRegression().features((15, 14)) == (15.0, 14.0) and LinearRegression().features((99, -99)) == (30.0, 0.0)
    prompt = PROBLEMS["prompt"]()
    assert prompt.features("Read it. Check parity! Answer.") == (5.0, 3.0)
    program = PROBLEMS["cap-set"]()
    grown = program.template.block.replace("return 0.0", "return sum(x for x in el if x) if n else 0.0")
    lines, flow, calls = program.features(grown)
    assert (flow, calls) > program.features(program.template.block)[1:] and lines >= 1
    function = PROBLEMS["function"]()
    assert function.feature_names() == ("x", "y") and function.features({"x": 3, "y": 0.5, "tag": "a"}) == (3.0, 0.5)


# --- the archive ------------------------------------------------------------------------------------
def _trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE) -> Trial:
    return Trial(number=number, step=1, state=state, source="x", value=value, text=str(number), key=number)


@pytest.mark.parametrize("direction", [Direction.MINIMIZE, Direction.MAXIMIZE])
def test_the_archive_keeps_the_best_per_cell_and_the_earlier_of_a_tie(direction: Direction) -> None:
    cells = {0: (0, 0), 1: (0, 0), 2: (1, 0), 3: (0, 0), 4: (1, 0), 5: (0, 0)}
    values = {0: 5.0, 1: 3.0, 2: 4.0, 3: 3.0, 4: 9.0, 5: None}
    trials = [_trial(n, v, TrialState.COMPLETE if v is not None else TrialState.FAILED) for n, v in values.items()]
    built = archive.build(reversed(trials), lambda t: cells[t.number], direction)  # in number order, whatever given
    best = {(0, 0): 1, (1, 0): 4} if direction is Direction.MINIMIZE else {(0, 0): 0, (1, 0): 4}
    if direction is Direction.MINIMIZE:
        best[(1, 0)] = 2
    assert {c: t.number for c, t in built.items()} == best
    grid = archive.Grid(("a", "b"), ((0.0, 1.0), (-1.0, 1.0)), (2, 4))
    assert grid.cell((0.0, -1.0)) == (0, 0) and grid.cell((1.0, 1.0)) == (1, 3) and grid.cell((7.0, -9.0)) == (1, 0)
    assert archive.coverage(built, grid) == 2 / 8
    assert archive.Grid.from_config(grid.to_config()) == grid


def _me_run(store: RunStore | None = None, **options: Any) -> tuple[Optimizer, MapElites]:
    llm, _ = scripted_llm(linreg_script)
    proposer = MapElites(llm, bins=6, **options)
    opt = Optimizer(LinearRegression(seed=0), proposer, seed=3, budget=Budget(max_steps=5, stop_when_solved=False),
                    proposals_per_step=4, store=store, name="run" if store is not None else None)
    opt.run()
    return opt, proposer


def test_the_archive_is_rebuilt_from_a_store_and_from_what_the_trials_recorded(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        opt, proposer = _me_run(store)
        run = store.get_run("run")
        stored = store.trials(run.id)
    problem = LinearRegression(seed=0)
    fresh = MapElites(scripted_llm(linreg_script)[0], bins=6)
    fresh.bind(problem, 3)
    stored = [Trial(**{**t.__dict__, "solution": problem.from_text(t.text) if t.text else None}) for t in stored]
    fresh.begin_step(problem, SolutionHistory(problem.direction, stored), 6)  # a resumed run's view
    proposer.begin_step(problem, opt.history, 6)
    assert {c: t.number for c, t in fresh._archives[0].items()} == {c: t.number for c, t in proposer._archives[0].items()}
    grid = archive.Grid.from_config(run.config["proposer"])
    assert grid == proposer.grid and run.config["proposer"]["features"] == ["w", "b"]
    recorded = archive.stored_archive(stored, "minimize")  # no problem: the cells the trials recorded
    children = {c: t.number for c, t in proposer._archives[0].items() if t.step > 0}
    assert children and {c: t.number for c, t in recorded.items()}.items() >= children.items()
    assert archive.qd_score(recorded, "minimize", max(t.value for t in stored if t.ok)) > 0


def test_parents_come_from_occupied_cells_and_the_origin_is_recorded() -> None:
    opt, proposer = _me_run(islands=2, migrate_every=2, exploration=0.5)
    problem, grid = opt.problem, proposer.grid
    by_number = {t.number: t for t in opt.history}
    children = [t for t in opt.history if t.step > 0]
    assert children and all(t.origin and "cell" in t.origin and t.origin["island"] == t.number % 2 for t in children)
    for t in children:
        parent = by_number[t.parents[0]]
        assert parent.ok and parent.step < t.step  # an elite of the archive the step began with
        assert t.origin["cell"] == list(grid.cell(problem.features(parent.solution)))
        if t.solution is not None:
            assert t.origin["child_cell"] == list(grid.cell(problem.features(t.solution)))
            assert t.origin["features"] == [float(v) for v in problem.features(t.solution)]
    assert len({t.parents[0] for t in children}) > 1  # exploration: not always the best
    assert proposer.config()["islands"] == 2 and proposer.config()["migrate_every"] == 2


def test_islands_and_a_bin_count_per_feature_keep_the_contract(tmp_path: Path) -> None:
    case = contract.ProposerCase(_islands, steps=4)
    contract.check_resume(case, tmp_path)
    contract.check_same_seed(case)


def _islands(llm: Any) -> MapElites:
    return MapElites(llm, islands=3, migrate_every=1, bins=(3, 5))


@pytest.mark.parametrize("kill_at", [23])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, kill_at: int) -> None:
    reference = tmp_path / "whole.db"
    llm, _ = scripted_llm(linreg_script)
    with RunStore(reference) as store:
        Optimizer(LinearRegression(seed=0), MapElites(llm), seed=0, store=store, name="run",
                  budget=Budget(max_steps=6, stop_when_solved=False)).run()
    killed = tmp_path / "killed.db"
    assert run_script(killed, "--proposer", "map-elites", "--kill-at", str(kill_at)).returncode != 0
    assert run_script(killed, "--proposer", "map-elites", "--resume").returncode == 0
    assert snapshot(killed)[0] == snapshot(reference)[0]

    def origins(path: Path) -> list[Any]:
        with RunStore(path) as store:
            return [(t.parents, t.origin) for t in store.trials(store.get_run("run").id)]

    assert origins(killed) == origins(reference)


# --- from Python and the command line -------------------------------------------------------------
def test_a_users_features_work_from_minimize() -> None:
    llm, _ = scripted_llm(lambda prompt, seed: f'{{"x": {seed % 9 - 4}, "y": {seed % 5 / 2}, "tag": "a"}}')
    result = llmopt.minimize(_objective, SCHEMA, model=llm, proposer="map-elites", steps=3, seed=1, progress=False,
                             features=lambda s: (abs(s["x"]), s["y"] * 10), feature_names=["size", "ten_y"],
                             feature_ranges=[(0, 4), (0, 20)], proposer_options={"bins": "4,2"})
    children = [t for t in result.history if t.step > 0 and t.origin and "features" in t.origin]
    assert children and all(t.origin["features"] == [abs(t.solution["x"]), t.solution["y"] * 10] for t in children)
    assert all(0 <= t.origin["child_cell"][0] < 4 and 0 <= t.origin["child_cell"][1] < 2 for t in children)
    with pytest.raises(ValueError, match="feature_ranges"):
        llmopt.minimize(_objective, SCHEMA, model=llm, proposer="map-elites", features=lambda s: (1.0,), steps=1)
    with pytest.raises(ValueError, match=r"--features: z: not features of problem 'function' \(its features: x, y\)"):
        llmopt.minimize(_objective, SCHEMA, model=llm, proposer="map-elites", proposer_options={"features": "x,z"})


@pytest.mark.parametrize("flags, fragment", [
    (["--bins", "0"], "--bins: must be >= 1, got 0"),
    (["--features", "w,nope"], "--features: nope: not features of problem 'linreg' (its features: w, b)"),
    (["--exploration", "2"], "--exploration: must be in [0, 1], got 2"),
])
def test_bad_settings_are_one_line_before_anything_is_spent(tmp_path: Path, capsys, flags: list[str],
                                                            fragment: str) -> None:
    store = tmp_path / "runs.db"
    try:
        code = main(["run", "linreg", "--proposer", "map-elites", *flags, "--store", str(store), "--quiet"])
    except SystemExit as exc:  # argparse refuses a flag's value itself
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and "\n" not in err and not store.exists()


def test_a_programs_edits_apply_to_the_parent_shown() -> None:
    problem = ProgramProblem(CapSetCLI.EVALUATOR, CapSetCLI.initial(), description=CapSetCLI.DESCRIPTION,
                             replies="edits")
    edit = "<<<<<<< SEARCH\n    return 0.0\n=======\n    return float(sum(el))\n>>>>>>> REPLACE"
    seen: list[str] = []
    proposer = MapElites(ScriptedLLM(lambda prompt, seed: seen.append(prompt) or edit))
    proposer.bind(problem, 0)
    start = Trial(number=0, step=0, state=TrialState.COMPLETE, source="start", solution=problem.template.block,
                  text=problem.template.block, key=0, value=5.0)
    proposer.begin_step(problem, SolutionHistory(problem.direction, [start]), 1)
    (child,) = proposer.propose_round(problem, None, [1], [1], 0)
    assert child.error is None and "return float(sum(el))" in child.solution and child.parents == (0,)
    assert child.origin == {"cell": list(proposer.grid.cell(problem.features(start.solution))),
                            "child_cell": list(proposer.grid.cell(problem.features(child.solution))),
                            "features": [float(v) for v in problem.features(child.solution)[:2]]}
    assert "The program to improve:" in seen[0] and "apply to the program to improve" in seen[0]


class OutOfRange(LinearRegression):
    """w itself as a feature, with a range it can leave (a planted bug)."""

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        return ((0.0, 12.0), (0.0, 30.0))

    def features(self, solution: Any) -> tuple[float, ...]:
        return (float(solution[0]), 1.0)


def test_the_problem_contract_checks_features() -> None:
    from llmopt.testing.contract import FEATURES, check_features

    check_features(LinearRegression(), max_examples=10)
    with pytest.raises(ContractViolation) as caught:
        check_features(OutOfRange(), max_examples=10)
    assert caught.value.prop == FEATURES and "inside feature_ranges" in str(caught.value)


def test_cli_runs_map_elites_on_linreg_tsp_and_a_grid_with_novelty_and_show_prints_the_cell(
        tmp_path: Path, capsys, openai_server) -> None:
    """The command line, a grid file and `show --step` for map-elites, with novelty filtering beside it
    (the run option every proposer takes); the compare table gains the archive's coverage."""
    import textwrap

    from fakes import evo_script

    server = openai_server(evo_script)
    store = str(tmp_path / "runs.db")
    base = ["--model", "openai/scripted", "--api-base", server.api_base, "--api-key-env", "LLMOPT_TEST_FAKE_KEY",
            "--store", store, "--quiet", "--steps", "3", "--proposals", "4", "--no-stop-when-solved"]
    assert main(["run", "linreg", "--proposer", "map-elites", "--bins", "5", "--novelty-threshold", "0.95", *base]) == 0
    assert main(["run", "tsp", "--n", "7", "--proposer", "map-elites", "--exploration", "1", *base]) == 0
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(f"""
        name = "me"
        seeds = 1
        [defaults]
        steps = 2
        no-stop-when-solved = true
        model = "openai/scripted"
        api-base = "{server.api_base}"
        api-key-env = "LLMOPT_TEST_FAKE_KEY"
        [problems.linreg]
        [configs.me]
        proposer = "map-elites"
        bins = 4
        """))
    assert main(["compare", str(grid), "--store", store, "--no-references"]) == 0
    table = capsys.readouterr().out
    assert "coverage %" in table and "QD-score" in table
    with RunStore(store) as s:
        linreg, tsp = s.get_run("linreg-map-elites-seed0"), s.get_run("tsp-map-elites-seed0")
        assert linreg.config["proposer"]["bins"] == [5, 5] and linreg.config["novelty_threshold"] == 0.95
        assert tsp.config["proposer"]["exploration"] == 1.0 and s.get_run("me/linreg/me/seed0").config[
            "proposer"]["bins"] == [4, 4]
    assert main(["show", "--store", store, "tsp-map-elites-seed0", "--step", "2"]) == 0
    assert "from cell (" in capsys.readouterr().out
    code = main(["run", "linreg", "--proposer", "map-elites", "--population", "4", *base])
    err = capsys.readouterr().err
    assert code != 0 and "--population 4: not an option of --proposer map-elites" in err
