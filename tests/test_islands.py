"""FunSearch's islands as a proposer: score-cluster sampling, best-shot prompts as versions, islands
recorded with their trials, resets of the worse half, resume after a kill, CLI, grids and Python.

The model is scripted (replies are a function of (prompt, seed)); what is tested is the programs
database's bookkeeping on the loop: what each prompt shows, where each solution goes, what a reset
does, and that a killed run resumes to the same calls and trials.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from fakes import evo_script, linreg_script

import llmopt
from llmopt import Budget, Optimizer, RunStore
from llmopt.cli import main
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction
from llmopt.programs.problem import ProgramProblem
from llmopt.proposers import Islands
from llmopt.proposers.islands import Island, build_islands, sample_cluster, sample_shown, temperature_at
from llmopt.seeding import stream
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression

KEY_ENV = "LLMOPT_TEST_FAKE_KEY"  # the openai_server fixture sets it
FIELDS = ("number", "step", "state", "source", "text", "value", "raw", "error", "duplicate_of", "parents", "origin")


def trial(number: int, value: float | None, *, step: int = 1, island: int | None = None, text: str | None = None,
          state: TrialState = TrialState.COMPLETE, duplicate_of: int | None = None) -> Trial:
    return Trial(number=number, step=step, state=state, source="start" if step == 0 else "llm:x",
                 text=text if text is not None else f"w={number}, b={number}", value=value,
                 key=number, duplicate_of=duplicate_of, metrics={} if island is None else {"origin": {"island": island}})


# --- sampling --------------------------------------------------------------------------------------
def test_a_better_cluster_is_drawn_more_often_at_low_temperature_and_shorter_solutions_within_one() -> None:
    trials = {n: trial(n, v) for n, v in enumerate([1.0, 2.0, 2.0, 3.0])}  # three clusters: 1, 2 (two), 3
    island = Island(list(trials))

    def shares(direction: Direction, temperature: float) -> dict[float, float]:
        drawn = [sample_shown(island, trials, direction, 1, temperature, 30_000, "raw", stream(0, "t", i))[0].value
                 for i in range(300)]
        return {v: drawn.count(v) / len(drawn) for v in (1.0, 2.0, 3.0)}

    cold = shares(Direction.MAXIMIZE, 0.5)
    assert cold[3.0] > cold[2.0] > cold[1.0] and cold[3.0] > 0.75
    assert shares(Direction.MINIMIZE, 0.5)[1.0] > 0.75  # a loss: the lowest cluster is the best
    hot = shares(Direction.MAXIMIZE, 1000.0)
    assert all(0.2 < share < 0.47 for share in hot.values())  # clusters, not solutions, are drawn: uniform
    # FunSearch's schedule: linear from the initial temperature to 0 over a period of solutions, then again
    assert temperature_at(0.1, 30_000, 0) == 0.1 and temperature_at(0.1, 30_000, 15_000) == pytest.approx(0.05)
    assert temperature_at(0.1, 30_000, 30_000) == 0.1
    short, long = trial(0, 1.0, text="w=1, b=1"), trial(1, 1.0, text="w=1, b=1" + " " * 400)
    picks = [sample_cluster([long, short], stream(0, "c", i)).number for i in range(600)]
    assert picks.count(0) > 390  # shorter favoured (softmax of minus the normalised lengths: about 0.73)


# --- the prompt ---------------------------------------------------------------------------------------
def starts_history(values: list[float], direction: Direction = Direction.MINIMIZE) -> SolutionHistory:
    return SolutionHistory(direction, [trial(n, v, step=0) for n, v in enumerate(values)])


def test_the_prompt_shows_the_sampled_solutions_as_versions_worst_to_best_with_their_scores() -> None:
    problem = LinearRegression(seed=0)
    history = starts_history([50.0, 10.0, 30.0, 20.0])
    proposer = Islands(ScriptedLLM(linreg_script), islands=3, shown=3, temperature=1000.0)
    proposer.bind(problem, 0)
    proposer.begin_step(problem, history, 1)
    sizes = set()
    for first in range(20):
        made = proposer.prompt_for(problem, first, 0)
        values = [t.value for t in made.shown]
        assert values == sorted(values, reverse=True)  # a loss: worst (highest) first, the best last
        sizes.add(len(made.shown))
        for i, t in enumerate(made.shown):
            assert f"version {i}:\ninput:\n{t.text}\nvalue:\n{int(t.value)}" in made.text
        assert f"version {len(made.shown)}:" not in made.text.split("Write version")[0]
        assert f"Write version {len(made.shown)}, an improved version of version {len(made.shown) - 1}" in made.text
        assert made.text.startswith(problem.operator_context()) and made.text.endswith(problem.answer_format())
    assert max(sizes) >= 2  # several versions shown (a solution drawn twice is shown once)


def test_a_program_is_shown_as_code_in_versions(tmp_path: Path) -> None:
    evaluator = tmp_path / "ev.py"
    evaluator.write_text("def evaluate(candidate):\n    return 1.0\n")
    initial = "# EVOLVE-BLOCK-START\ndef value():\n    return 1\n# EVOLVE-BLOCK-END\n"
    problem = ProgramProblem(f"{evaluator}:evaluate", initial, description="Make value() large.")
    blocks = ["def value():\n    return 1\n", "def value():\n    return 7\n"]
    history = SolutionHistory(Direction.MAXIMIZE, [trial(n, float(n * 6 + 1), step=0, text=b)
                                                   for n, b in enumerate(blocks)])
    proposer = Islands(ScriptedLLM(lambda p, s: "```python\ndef value():\n    return 9\n```"), islands=1,
                       temperature=1000.0)
    proposer.bind(problem, 0)
    proposer.begin_step(problem, history, 1)
    made = next(m for m in (proposer.prompt_for(problem, n, 0) for n in range(30)) if len(m.shown) == 2)
    assert (f"version 0:\nprogram:\n```python\n{blocks[0]}```\nscore:\n1.00\n\nversion 1:\nprogram:\n```python\n"
            f"{blocks[1]}```\nscore:\n7.00") in made.text
    assert "Write version 2, an improved version of version 1" in made.text


# --- islands recorded, parents from the island ---------------------------------------------------------
def run_linreg(store: RunStore | None = None, steps: int = 6, resume: bool = False, **options: Any):
    defaults = dict(islands=3, reset_every=2, samples_per_prompt=2, score_scale="normalized")
    proposer = Islands(ScriptedLLM(linreg_script), **{**defaults, **options})
    opt = Optimizer(LinearRegression(seed=0), proposer, seed=0, store=store, name="run" if store else None,
                    resume=resume, proposals_per_step=4, budget=Budget(max_steps=steps, stop_when_solved=False))
    return opt.run()


def test_each_proposal_records_its_island_and_its_parents_come_from_that_island() -> None:
    result = run_linreg()
    history = result.history
    proposed = [t for t in history if t.step >= 1]
    assert {t.origin["island"] for t in proposed} == {0, 1, 2}  # type: ignore[index]
    for t in proposed:
        islands, _ = build_islands(history, t.step, 3, 2, 0)
        members = set(islands[t.origin["island"]].members)  # type: ignore[index]
        assert t.parents and set(t.parents) <= members, (t.number, t.parents, members)
    for s in range(1, result.steps + 1):  # a step's first round: 4 numbers, two prompts of two replies
        first = [history.get(n) for n in sorted(t.number for t in history if t.step == s)[:4]]
        assert first[0].origin == first[1].origin and first[2].origin == first[3].origin  # type: ignore[union-attr]
    after = build_islands(history, 6, 3, 2, 0)[0]  # step 5's solutions joined their islands (no reset after 5)
    last = [t for t in history if t.step == 5 and t.ok]
    assert all(t.number in after[t.origin["island"]].members for t in last)  # type: ignore[index]


# --- resets ----------------------------------------------------------------------------------------------
def test_every_R_steps_the_worse_half_is_reset_from_the_best_of_the_others() -> None:
    start = trial(0, 100.0, step=0)  # on every island
    made = [trial(1, 10.0, island=0), trial(2, 20.0, island=1), trial(3, 50.0, island=2), trial(4, 40.0, island=3),
            trial(5, None, island=2, state=TrialState.INVALID)]
    history = SolutionHistory(Direction.MINIMIZE, [start, *made])
    islands, resets = build_islands(history, 2, 4, 1, seed=0)  # reset after step 1
    assert [i.members for i in islands[:2]] == [[0, 1], [0, 2]]  # the better half keeps everything
    assert [r for r, _ in resets[0].seeded] == [2, 3]  # worst first: 50, then 40
    for reset_island, founder in resets[0].seeded:
        assert founder in (0, 1) and islands[reset_island].members == [founder + 1]  # the founder island's best
        assert islands[reset_island].joined == 1  # its temperature starts over
    assert build_islands(history, 2, 4, 2, seed=0)[1] == [] and build_islands(history, 2, 4, 0, seed=0)[1] == []
    # ties (every island holds only the start) are broken at random, by the run's seed
    tied = SolutionHistory(Direction.MINIMIZE, [start, trial(1, None, island=0, state=TrialState.INVALID)])
    drawn = {seed: tuple(r for r, _ in build_islands(tied, 2, 4, 1, seed)[1][0].seeded) for seed in range(12)}
    assert drawn == {seed: tuple(r for r, _ in build_islands(tied, 2, 4, 1, seed)[1][0].seeded) for seed in range(12)}
    assert len(set(drawn.values())) > 2


def test_a_duplicate_brings_its_first_copy_to_its_island() -> None:
    history = SolutionHistory(Direction.MINIMIZE, [
        trial(0, 5.0, island=0), trial(1, None, island=1, state=TrialState.DUPLICATE, duplicate_of=0)])
    islands, _ = build_islands(history, 2, 2, 0, seed=0)
    assert islands[0].members == [0] and islands[1].members == [0]


def test_a_reset_shows_in_the_step_record_and_in_the_run() -> None:
    result = run_linreg(steps=5, islands=4)
    proposer = Islands(ScriptedLLM(linreg_script), islands=4, reset_every=2, samples_per_prompt=2,
                       score_scale="normalized")
    problem = LinearRegression(seed=0)
    proposer.bind(problem, 0)
    record = proposer.begin_step(problem, result.history, 5)
    assert record is not None and record.startswith("islands step 5: 4 islands") and "reset after step 4: island" in record


# --- resume after a kill -------------------------------------------------------------------------------
class Killed(BaseException):
    """What the process would not survive: raised at the chosen write, and at every write after it."""


class KillingStore(RunStore):
    """A store whose process 'dies' right after its N-th write (trial, call, step boundary): nothing
    is written after it, as after a SIGKILL (tests/test_evoprompt.py kills a child process for real)."""

    WRITES = ("add_trial", "add_call", "begin_step", "finish_step")
    BLOCKED = WRITES + ("set_status", "set_elapsed", "set_facts", "add_validation", "put", "insert_rows")

    def __init__(self, path: Path, at: int) -> None:
        super().__init__(path)
        self.at, self.writes, self.dead = at, 0, False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name not in KillingStore.BLOCKED:
            return attr
        if super().__getattribute__("dead"):
            raise Killed(name)

        def write(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            if name in KillingStore.WRITES:
                self.writes += 1
                if self.writes == self.at:
                    self.dead = True
                    raise Killed(name)
            return out

        return write


def snapshot(path: Path) -> tuple[list, list]:
    with RunStore(path) as s:
        run = s.get_run("run")
        trials = [tuple(getattr(t, f) for f in FIELDS) for t in s.trials(run.id)]
        calls = [(c.number, c.seed, c.prompt) for c in s.calls(run.id)]
    return sorted(trials, key=lambda t: t[0]), sorted(calls)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    path = tmp_path_factory.mktemp("islands") / "whole.db"
    with RunStore(path) as store:
        run_linreg(store, steps=5)
    return snapshot(path)


@pytest.mark.parametrize("kill_at", [2, 9, 26, 47, 63])
def test_a_run_killed_at_a_store_write_resumes_to_the_calls_and_trials_of_an_uninterrupted_run(
        tmp_path: Path, uninterrupted: tuple[list, list], kill_at: int) -> None:
    path = tmp_path / "runs.db"
    store = KillingStore(path, kill_at)
    with pytest.raises(Killed):
        run_linreg(store, steps=5)
    store.close()
    with RunStore(path) as again:
        run_linreg(again, steps=5, resume=True)
    trials, calls = snapshot(path)
    assert (trials, calls) == uninterrupted
    assert all(t[-1] and t[-2] for t in trials if t[1] >= 1) and all(c[2] for c in calls)  # origins, parents, prompts


# --- settings, the command line, grids, Python -----------------------------------------------------------
def test_bad_settings_are_refused_in_one_line() -> None:
    llm = ScriptedLLM(linreg_script)
    for options, words in [({"islands": 0}, "islands must be in 1..1000"), ({"shown": 0}, "shown must be"),
                           ({"temperature": -1}, "temperature must be"), ({"score_scale": "log"}, "score_scale")]:
        with pytest.raises(ValueError, match=words) as caught:
            Islands(llm, **options)
        assert "\n" not in str(caught.value)


def test_python_minimize_takes_islands_and_refuses_an_option_it_does_not_have() -> None:
    llm = ScriptedLLM(lambda prompt, seed: f'{{"x": {seed % 9 - 4}}}')
    schema = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -4, "maximum": 4}},
              "required": ["x"]}
    result = llmopt.minimize(lambda s: (s["x"] - 2) ** 2, schema, model=llm, proposer="islands", steps=3, seed=1,
                             proposer_options={"islands": 3, "functions_per_prompt": 3, "reset-every": 1})
    assert result.steps == 3 and all(t.origin and t.origin["island"] in range(3) for t in result.history if t.step)
    with pytest.raises(ValueError, match="--population 4: not an option of --proposer islands"):
        llmopt.minimize(lambda s: s["x"] ** 2, schema, model=llm, proposer="islands", steps=1,
                        proposer_options={"population": 4})
    with pytest.raises(ValueError, match="--show 3: islands shows --shown N solutions per prompt"):  # OPRO's word
        llmopt.minimize(lambda s: s["x"] ** 2, schema, model=llm, proposer="islands", steps=1,
                        proposer_options={"show": 3})


def test_cli_runs_islands_on_linreg_tsp_and_a_grid_and_show_prints_the_island(tmp_path: Path, capsys,
                                                                              openai_server) -> None:
    server = openai_server(evo_script)
    store = str(tmp_path / "runs.db")
    base = ["--model", "openai/scripted", "--api-base", server.api_base, "--api-key-env", KEY_ENV, "--store", store,
            "--quiet", "--steps", "3", "--proposals", "4", "--no-stop-when-solved", "--islands", "4",
            "--reset-every", "2", "--samples-per-prompt", "2"]
    assert main(["run", "linreg", "--proposer", "islands", "--cluster-scores", "normalized", *base]) == 0
    assert main(["run", "tsp", "--n", "7", "--proposer", "islands", "--shown", "3", *base]) == 0
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(f"""
        name = "isl"
        seeds = 1
        [defaults]
        steps = 2
        no-stop-when-solved = true
        model = "openai/scripted"
        api-base = "{server.api_base}"
        api-key-env = "{KEY_ENV}"
        [problems.linreg]
        [configs.islands]
        proposer = "islands"
        islands = 3
        cluster-temperature = 0.5
        """))
    assert main(["compare", str(grid), "--store", store]) == 0
    capsys.readouterr()
    with RunStore(store) as s:
        linreg, tsp = s.get_run("linreg-islands-seed0"), s.get_run("tsp-islands-seed0")
        assert linreg.config["proposer"]["score_scale"] == "normalized" and tsp.config["proposer"]["shown"] == 3
        assert {r.config["proposer"]["islands"] for r in s.runs()} == {4, 3}
        assert any(r.config["proposer"]["temperature"] == 0.5 for r in s.runs())
    assert main(["show", "--store", store, "tsp-islands-seed0", "--step", "2"]) == 0
    detail = capsys.readouterr().out
    assert "from island " in detail and "version 0:\n<trace>" in detail and "islands step 2: 4 islands" in detail
    code = main(["run", "linreg", "--proposer", "islands", "--population", "4", *base])
    err = capsys.readouterr().err
    assert code != 0 and "--population 4: not an option of --proposer islands" in err
    assert len(err.strip().splitlines()) == 1


def test_describe_names_the_settings_that_differ_from_funsearchs_and_the_estimate_counts_every_request() -> None:
    llm, problem = ScriptedLLM(linreg_script), LinearRegression(seed=0)
    assert Islands(llm).describe(problem) == "islands scripted/model"
    assert Islands(llm, islands=4, reset_every=0).describe(problem) == "islands scripted/model (4 islands, no resets)"
    proposer = Islands(llm, shown=3)
    proposer.bind(problem, 0)
    cost = proposer.step_cost(problem, 8, 3)
    assert cost is not None and cost.calls == 24 and cost.prompt_tokens > 24 * 3 * len(problem.typical_text().split())


def test_a_child_sigkilled_inside_a_step_resumes_to_the_uninterrupted_run(tmp_path: Path, reference_run) -> None:
    """The same as above with a real SIGKILL of a child process (tests/scripts/fake_run.py), at the
    80th store write: inside step 3, after the reset that follows step 2."""
    import signal

    from harness import run_script

    reference, _ = reference_run("--proposer", "islands")
    store = tmp_path / "runs.db"
    killed = run_script(store, "--proposer", "islands", "--kill-at", "80")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_script(store, "--proposer", "islands", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(store) == snapshot(reference)
