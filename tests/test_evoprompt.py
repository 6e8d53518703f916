"""EvoPrompt's GA and DE as proposers: operators, populations, provenance, resume, CLI and Python API.

The operator model is scripted (``fakes.evo_script``: the child mixes the parents it is shown);
what is tested is the method's bookkeeping on the loop: who the parents are, what survives, what
each call asked, and that a killed run resumes to the same trials.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import pytest
from datadir import data_dir
from fakes import evo_script, scripted_llm
from harness import run_script
from openai_server import OpenAIServer
from toys import TASK, scorer_script

import llmopt
from llmopt import Budget, Optimizer, RunStore
from llmopt.cli import main
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.problem import Direction
from llmopt.proposers import EvoPromptDE, EvoPromptGA
from llmopt.proposers.evoprompt import SELECTIONS, fitness
from llmopt.proposers.evoprompt_templates import child_text, de_prompt, ga_prompt, paraphrase_prompt, words
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression
from problems.prompt_optimization.data import load_bbh
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer
from problems.tsp.instances import random_instance
from problems.tsp.problem import TravellingSalesman

FIELDS = ("number", "step", "state", "source", "text", "value", "raw", "error", "duplicate_of", "parents")


def run_linreg(proposer_class, tmp_path: Path, steps: int = 5, **options):
    llm, backend = scripted_llm(evo_script)
    store = RunStore(tmp_path / "runs.db")
    opt = Optimizer(LinearRegression(seed=0), proposer_class(llm, population=6, **options), seed=0, store=store,
                    name="run", budget=Budget(max_steps=steps, stop_when_solved=False))
    return opt.run(), store, backend


def by_step(history: SolutionHistory) -> dict[int, list]:
    out: dict[int, list] = {}
    for t in sorted(history, key=lambda t: t.number):  # recorded out of order: invalid ones before scored ones
        out.setdefault(t.step, []).append(t)
    return out


def test_ga_initial_population_is_the_best_half_of_the_starts_and_their_paraphrases(tmp_path: Path) -> None:
    result, store, backend = run_linreg(EvoPromptGA, tmp_path, steps=1)
    steps = by_step(result.history)
    starts = sorted((t for t in steps[0] if t.ok), key=lambda t: t.value)
    kept = [t.number for t in starts[:3]]  # population 6: the best half of it
    paraphrases = steps[1]
    assert len(paraphrases) == 6 - 3
    assert [t.parents for t in paraphrases] == [(n,) for n in kept]  # each kept start in turn, best first
    assert all("Generate a variation of the following (w, b) pair" in call.prompt for call in backend.calls)
    for t, call in zip(paraphrases, backend.calls):
        parent = result.history.get(t.parents[0])
        assert f"(w, b) pair: {parent.text}" in call.prompt


def test_ga_children_have_two_parents_from_the_mu_plus_lambda_population(tmp_path: Path) -> None:
    result, store, _ = run_linreg(EvoPromptGA, tmp_path, steps=5)
    history, direction = result.history, Direction.MINIMIZE
    steps = by_step(history)
    kept = sorted((t for t in steps[0] if t.ok), key=lambda t: t.value)[:3]
    for step in range(2, 6):
        assert len(steps[step]) == 6  # one generation: population-many children, no redraws
        pool = kept + [t for t in history if 1 <= t.step < step and t.ok]
        population = {t.number for t in SolutionHistory(direction, pool).top_k(6)}
        for child in steps[step]:
            assert len(child.parents) == 2 and set(child.parents) <= population, (step, child.parents, population)
    stored = store.trials(store.get_run("run").id)
    assert {t.number: t.parents for t in stored} == {t.number: t.parents for t in history}  # provenance is stored


def parent_frequencies(problem, selection: str, values: list[float], generations: int = 1000) -> list[float]:
    """How often each member (scored ``values``) is drawn as a parent by the GA's ``selection``,
    over many generations of 2 children from one fixed generator (a new wheel each generation)."""
    ga = EvoPromptGA(scripted_llm(evo_script)[0], population=len(values), selection=selection)
    ga._members = [Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", text=f"w={i}, b={i}", value=v)
                   for i, v in enumerate(values)]
    rng, counts = np.random.default_rng(7), np.zeros(len(values))
    w = words(LinearRegression())
    for _ in range(generations):
        for child in ga.plan(problem, w, rng, 2):
            assert len(child.parents) == 2
            for parent in child.parents:  # the same member may be drawn twice
                counts[parent] += 1
    return (counts / counts.sum()).tolist()


def test_ga_roulette_wheel_prefers_better_members() -> None:
    """Fitness-proportional selection: the parents drawn follow the fitness weights."""
    probabilities = fitness(np.array([10.0, 20.0, 70.0]), Direction.MAXIMIZE)
    assert probabilities.tolist() == pytest.approx([0.1, 0.2, 0.7])  # EvoPrompt's: accuracy / total
    loss = fitness(np.array([1.0, 2.0, 5.0]), Direction.MINIMIZE)
    # a loss: |value - worst| + spread / size, normalised: (4 + 4/3, 3 + 4/3, 0 + 4/3) / 11
    assert loss.tolist() == pytest.approx([16 / 33, 13 / 33, 4 / 33])  # the lower, the likelier; the worst possible
    assert fitness(np.array([3.0, 3.0]), Direction.MINIMIZE).tolist() == [0.5, 0.5]
    accuracy = PromptOptimization(TASK, Scorer(scripted_llm(scorer_script, temperature=0.0)[0]))
    assert parent_frequencies(accuracy, "wheel", [10.0, 20.0, 70.0]) == pytest.approx([0.1, 0.2, 0.7], abs=0.03)
    assert parent_frequencies(LinearRegression(), "wheel", [1.0, 2.0, 5.0]) == pytest.approx(
        [16 / 33, 13 / 33, 4 / 33], abs=0.03)


def test_ga_tournament_and_random_selections_draw_as_their_rules_say() -> None:
    """Tournament: the better of two distinct random members, so of three the best wins 2/3, the
    middle 1/3, the worst never; random: each member alike."""
    loss = LinearRegression()
    drawn = parent_frequencies(loss, "tournament", [1.0, 2.0, 5.0])
    assert drawn == pytest.approx([2 / 3, 1 / 3, 0.0], abs=0.03) and drawn[2] == 0.0
    accuracy = PromptOptimization(TASK, Scorer(scripted_llm(scorer_script, temperature=0.0)[0]))
    drawn = parent_frequencies(accuracy, "tournament", [10.0, 20.0, 70.0])
    assert drawn == pytest.approx([0.0, 1 / 3, 2 / 3], abs=0.03) and drawn[0] == 0.0
    assert parent_frequencies(loss, "random", [1.0, 2.0, 5.0]) == pytest.approx([1 / 3] * 3, abs=0.03)


def test_ga_selections_run_and_are_recorded(tmp_path: Path) -> None:
    """Each selection runs on the loop, is recorded with the run, and draws its own parents."""
    drawn = {}
    for selection in SELECTIONS:
        (tmp_path / selection).mkdir()
        result, store, _ = run_linreg(EvoPromptGA, tmp_path / selection, steps=3, selection=selection)
        assert store.get_run("run").config["proposer"]["selection"] == selection
        children = [t for t in result.history if t.step >= 2]
        assert len(children) == 2 * 6 and all(len(t.parents) == 2 for t in children)  # generations 2 and 3
        assert {t.number: t.parents for t in store.trials(store.get_run("run").id)} == \
            {t.number: t.parents for t in result.history}
        drawn[selection] = sorted((t.number, t.parents) for t in children)
    assert len({tuple(parents) for parents in drawn.values()}) == len(SELECTIONS)  # not one rule under three names


def test_de_children_replace_their_member_only_when_better(tmp_path: Path) -> None:
    result, store, backend = run_linreg(EvoPromptDE, tmp_path, steps=6)
    history = result.history
    steps = by_step(history)
    kept = sorted((t for t in steps[0] if t.ok), key=lambda t: t.value)[:3]
    population = kept + [t for t in steps[1] if t.ok]
    prompts = {c.number: c.prompt for c in store.calls(store.get_run("run").id)}
    for step in range(2, 7):
        numbers = [t.number for t in population]
        best = min(population, key=lambda t: (t.value, t.number))
        children = steps[step]
        assert [t.parents[0] for t in children] == numbers  # one child per member, in order
        for child in children:
            member, a, b, c = (history.get(n) for n in child.parents)
            assert c.number == best.number  # the third donor is the best (EvoPrompt's default)
            assert a.number != member.number and b.number != member.number and a.number != b.number
            prompt = prompts[child.number]
            assert f"Basic (w, b) pair: {member.text}\n" in prompt and f"(w, b) pair 3: {c.text}\n" in prompt
            assert f"(w, b) pair 1: {a.text}\n" in prompt and f"(w, b) pair 2: {b.text}\n" in prompt
        population = [child if child.ok and child.value < member.value else member
                      for member, child in zip(population, children)]
    final = EvoPromptDE(scripted_llm(evo_script)[0], population=6)
    final.begin_step(LinearRegression(seed=0), history, 7)
    assert [t.number for t in final._members] == [t.number for t in population]


def test_de_random_donor_keeps_the_third_draw(tmp_path: Path) -> None:
    """With ``donor="random"`` the third donor is a drawn member, not the generation's best: a
    generation's thirds differ (with the best donor they are one member), and each child's four
    parents are distinct (three donors drawn without replacement from the other members)."""
    result, _, _ = run_linreg(EvoPromptDE, tmp_path, steps=4, donor="random")
    generations = by_step(result.history)
    for step in range(2, 5):
        children = generations[step]
        assert len(children) == 6 and all(len(set(t.parents)) == 4 for t in children), step
        assert len({t.parents[3] for t in children}) > 1, step  # not one best member for all


def test_de_needs_four_members_and_bad_settings_are_one_line() -> None:
    llm, _ = scripted_llm(evo_script)
    with pytest.raises(ValueError, match="population must be in 4..1000"):
        EvoPromptDE(llm, population=3)
    with pytest.raises(ValueError, match="selection must be one of wheel, tournament, random"):
        EvoPromptGA(llm, selection="best")
    with pytest.raises(ValueError, match="init must be one of"):
        EvoPromptGA(llm, init="zero")
    with pytest.raises(ValueError, match="temperature must be in"):
        EvoPromptDE(llm, temperature=5.0)


def test_operators_sample_at_evoprompts_temperature(tmp_path: Path) -> None:
    _, store, backend = run_linreg(EvoPromptGA, tmp_path, steps=2)
    assert {r["temperature"] for r in backend.requests} == {0.5}
    assert store.get_run("run").config["proposer"]["temperature"] == 0.5


def test_init_starts_evolves_from_the_starting_solutions_at_once(tmp_path: Path) -> None:
    result, _, _ = run_linreg(EvoPromptGA, tmp_path, steps=2, init="starts")
    starts = {t.number for t in result.history if t.step == 0 and t.ok}
    children = [t for t in result.history if t.step == 1]
    assert len(children) == 6 and all(len(t.parents) == 2 and set(t.parents) <= starts for t in children)


def test_without_starting_solutions_the_first_step_draws_random_ones(tmp_path: Path) -> None:
    llm, _ = scripted_llm(evo_script)
    opt = Optimizer(LinearRegression(seed=0), EvoPromptGA(llm, population=4), seed=0, starts=False,
                    budget=Budget(max_steps=3, stop_when_solved=False))
    result = opt.run()
    first = [t for t in result.history if t.step == 1]
    assert len(first) == 4 and {t.source for t in first} == {"random"}
    evolved = [t for t in result.history if t.step >= 2]
    assert len(evolved) == 2 * 4 and all(len(t.parents) == 2 for t in evolved)  # generations 2 and 3


def test_tsp_children_are_tours_bred_from_their_parents(tmp_path: Path) -> None:
    llm, backend = scripted_llm(evo_script)
    problem = TravellingSalesman(random_instance(8, seed=1))
    opt = Optimizer(problem, EvoPromptDE(llm, population=4), seed=0,
                    budget=Budget(max_steps=3, stop_when_solved=False))
    result = opt.run()
    assert result.history.counts()["COMPLETE"] > 5
    ga_calls = [c.prompt for c in backend.calls if "Identify the different parts between Trace 1" in c.prompt]
    assert ga_calls and all("<trace>" in p and "You are given a list of points" in p for p in ga_calls)
    assert all("previous traces" not in p and "A better trace has a lower length." in p for p in ga_calls)
    for t in result.history:
        if t.ok:
            assert sorted(t.solution) == list(range(8))


def prompt_problem() -> PromptOptimization:
    scorer, _ = scripted_llm(scorer_script, model="fake/scorer", temperature=0.0)
    return PromptOptimization(TASK, Scorer(scorer), initial=["Answer.", "Check parity.", "Be careful."])


def prompt_operator(prompt: str, seed: int) -> str:
    """Writes the child EvoPrompt's way: steps, then the final prompt in <prompt> tags."""
    parents = re.findall(r"^(?:Prompt \d|Basic Prompt|Input): (.+)$", prompt.split("\n\n")[-1], re.MULTILINE)
    words_ = sorted({w.strip(".,").lower() for p in parents for w in p.split()})
    pick = [words_[(seed + 3 * i) % len(words_)] for i in range(3)] if words_ else ["think"]
    return f"1. Crossover Prompt: {' '.join(parents)}\n2. <prompt>{' '.join(pick).capitalize()}.</prompt>"


@pytest.mark.parametrize("kind", [EvoPromptGA, EvoPromptDE])
def test_prompt_optimization_speaks_of_prompts_with_a_worked_example(tmp_path: Path, kind) -> None:
    llm, backend = scripted_llm(prompt_operator, model="fake/operator")
    opt = Optimizer(prompt_problem(), kind(llm, population=4), seed=0, store=RunStore(tmp_path / "r.db"),
                    name="p", budget=Budget(max_steps=3))
    result = opt.run()
    paraphrase, evolve = backend.calls[0].prompt, backend.calls[-1].prompt
    assert paraphrase.startswith("Generate a variation of the following instruction while keeping the semantic")
    marker = "1. Identify the different parts between Prompt 1 and Prompt 2" if kind is EvoPromptDE \
        else "1. Cross over the following prompts and generate a new prompt"
    assert evolve.count(marker) == 2 and evolve.endswith("\n1. ")  # the worked example, then the request
    evolved = [t for t in result.history if t.step >= 2]
    assert evolved and all(t.ok or t.state is TrialState.DUPLICATE for t in evolved)
    assert all("<prompt>" not in (t.text or "") for t in evolved)  # the tags are read off
    assert {t.source for t in evolved} == {"llm:fake/operator"}


def test_templates_and_child_extraction() -> None:
    problem = LinearRegression(seed=0)
    w = words(problem)
    ga = ga_prompt(w, "w=1, b=2", "w=3, b=4")
    assert ga.startswith(f"{problem.operator_context()}\nA better (w, b) pair has a lower function value.\n\n")
    assert "(w, b) pair 1: w=1, b=2\n(w, b) pair 2: w=3, b=4" in ga and "values at those points" not in ga
    assert "bracketed with <answer> and </answer>" in ga and problem.answer_format() in ga
    de = de_prompt(w, "M", "A", "B", "C")
    assert de.index("pair 1: A") < de.index("pair 2: B") < de.index("pair 3: C") < de.index("Basic (w, b) pair: M")
    assert "Generate a variation" in paraphrase_prompt(w, "w=1, b=2")
    assert child_text(w, "1. <answer>w=1, b=1</answer>\n2. <answer>w=5, b=6</answer>") == "w=5, b=6"  # the last
    assert child_text(w, "Final: <answer> w=5, b=6") == "w=5, b=6"  # unclosed: what follows the tag
    assert child_text(w, "no tags: [5, 6]") == "no tags: [5, 6]"


def test_a_bad_reply_is_an_invalid_trial_and_a_failed_call_a_failed_one(tmp_path: Path) -> None:
    llm = ScriptedLLM(["I cannot do that", "<answer>w=3, b=4</answer>", RuntimeError("boom")], cycle=True)
    opt = Optimizer(LinearRegression(seed=0), EvoPromptGA(llm, population=4), seed=0,
                    budget=Budget(max_steps=2, stop_when_solved=False))
    result = opt.run()
    states = {t.state for t in result.history if t.step >= 1}
    assert {TrialState.INVALID, TrialState.FAILED} <= states and result.stop_reason.value == "max_steps"


@pytest.mark.parametrize("proposer", ["evoprompt-ga", "evoprompt-de"])
@pytest.mark.parametrize("kill_at", [7, 23, 48])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, reference_run, proposer: str,
                                                         kill_at: int) -> None:
    reference, _ = reference_run("--proposer", proposer)  # one uninterrupted run per proposer
    store = tmp_path / "runs.db"
    killed = run_script(store, "--proposer", proposer, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_script(store, "--proposer", proposer, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    def snapshot(path: Path):
        with RunStore(path) as s:
            run = s.get_run("run")
            trials = [tuple(getattr(t, f) for f in FIELDS) for t in s.trials(run.id)]
            calls = [(c.number, c.seed, c.prompt) for c in s.calls(run.id)]
            return trials, calls

    trials, calls = snapshot(store)
    assert (trials, calls) == snapshot(reference)
    assert any(t[-1] for t in trials) and all(c[2] for c in calls)  # parents and per-call prompts recorded


@pytest.mark.slow
def test_cli_runs_ga_and_de_on_linreg_tsp_and_shows_each_prompt(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("EVO_KEY", "sk-test-0000000000")
    store = str(tmp_path / "runs.db")
    with OpenAIServer(evo_script) as server:
        base = ["--model", "openai/evo", "--api-base", server.api_base, "--api-key-env", "EVO_KEY", "--store", store,
                "--quiet", "--population", "4", "--steps", "3", "--no-stop-when-solved"]
        assert main(["run", "linreg", "--proposer", "evoprompt-ga", "--selection", "tournament", *base]) == 0
        assert main(["run", "tsp", "--n", "7", "--proposer", "evoprompt-de", "--donor", "random", *base]) == 0
        grid = tmp_path / "grid.toml"
        grid.write_text(f"""
name = "evo"
seeds = 2
[defaults]
steps = 3
no-stop-when-solved = true
model = "openai/evo"
api-base = "{server.api_base}"
api-key-env = "EVO_KEY"
[problems.linreg]
[configs.ga]
proposer = "evoprompt-ga"
population = 4
[configs.de]
proposer = "evoprompt-de"
population = 4
[configs.random]
proposer = "random"
""")
        assert main(["compare", str(grid), "--store", store]) == 0
    capsys.readouterr()
    with RunStore(store) as s:
        ga, de = s.get_run("linreg-evoprompt-ga-seed0"), s.get_run("tsp-evoprompt-de-seed0")
        assert ga.config["proposer"]["selection"] == "tournament" and de.config["proposer"]["donor"] == "random"
        assert ga.config["proposer"]["population"] == 4
        kinds = sorted(r.config["proposer"]["kind"] for r in s.runs())
        assert kinds.count("evoprompt-ga") == 3 and kinds.count("evoprompt-de") == 3 and kinds.count("random") == 2
    assert main(["show", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert "evoprompt-ga" in listing and "evoprompt-de" in listing
    assert main(["show", "--store", store, "tsp-evoprompt-de-seed0", "--step", "2"]) == 0
    detail = capsys.readouterr().out
    assert detail.count("prompt:\n") == 4 and "Basic Trace: <trace>" in detail and "parents #" in detail
    page = tmp_path / "runs.html"
    assert main(["report", "--store", store, "--out", str(page)]) == 0
    html = page.read_text()
    assert '<th scope="col">parents</th>' in html and "<summary>its prompt</summary>" in html
    assert "Identify the different parts between Trace 1 and Trace 2" in html


def test_python_api_takes_the_evolutionary_proposers() -> None:
    llm, _ = scripted_llm(lambda prompt, seed: f'<answer>{{"w": {seed % 11 - 5}, "b": {seed % 7 - 3}}}</answer>')
    schema = {"type": "object", "properties": {"w": {"type": "integer", "minimum": -50, "maximum": 50},
                                               "b": {"type": "integer", "minimum": -50, "maximum": 50}},
              "required": ["w", "b"]}

    def loss(s):
        return (s["w"] - 3) ** 2 + (s["b"] + 2) ** 2

    result = llmopt.minimize(loss, schema, model=llm, proposer="evoprompt-ga", steps=3, seed=1,
                             proposer_options={"population": 4, "selection": "random"})
    assert result.steps == 3 and result.best is not None
    assert any(t.parents for t in result.history)
    with pytest.raises(ValueError, match="evoprompt-de"):
        llmopt.minimize(loss, schema, model=llm, proposer="evoprompt", steps=1)


def test_ask_beyond_a_generation_still_gives_every_number_a_trial() -> None:
    llm, _ = scripted_llm(evo_script)
    opt = Optimizer(LinearRegression(seed=0), EvoPromptDE(llm, population=4), seed=0,
                    budget=Budget(max_steps=5, stop_when_solved=False))
    for _ in range(2):  # the paraphrase step, then a generation asked for more than its 4 members
        for c in opt.ask(9 if opt.step >= 1 else None):
            opt.tell(c, opt.problem.score(c.solution))
    numbers = [t.number for t in opt.history]
    assert sorted(numbers) == list(range(len(numbers)))  # no number taken without a trial
    assert sum(1 for t in opt.history if t.step == 2) == 9


def test_cli_runs_prompt_optimization_with_ga_and_de_over_http(tmp_path: Path, capsys, monkeypatch) -> None:
    """`llmopt run prompt --proposer evoprompt-*`: operator requests and scorer calls over a loopback
    server; the cost estimate, the scorer accounting and the tags read off the child all hold."""
    answers = {ex.question: ex.answer for ex in load_bbh(Path(data_dir()) / "bbh" / "sports_understanding.json")}

    def serve(prompt: str, seed: int) -> str:
        if "Generate a variation of the following instruction" in prompt:
            return f"<prompt>Think it over, take {seed % 1000}.</prompt>"
        if "Please follow the instruction step-by-step" in prompt:
            return f"1. Crossover Prompt: ...\n2. <prompt>Check the sport, take {seed % 1000}.</prompt>"
        question = next((q for q in answers if q in prompt), None)
        if question is not None and "sport" in prompt.lower():
            return f"The answer is {answers[question]}."
        return "Maybe."

    monkeypatch.setenv("EVO_KEY", "sk-test-0000000000")
    store = str(tmp_path / "p.db")
    with OpenAIServer(serve) as server:
        http = ["--model", "openai/opt", "--api-base", server.api_base, "--api-key-env", "EVO_KEY",
                "--scorer", "openai/scorer", "--scorer-api-base", server.api_base, "--scorer-api-key-env", "EVO_KEY"]
        for proposer in ("evoprompt-ga", "evoprompt-de"):
            code = main(["run", "prompt", "--task", "bbh/sports_understanding", "--data-dir", str(data_dir()),
                         "--max-train", "5", "--initial", "Answer.", "--initial", "Say yes or no.", "--proposer",
                         proposer, "--population", "4", "--max-evals", "12", "--store", store, "--quiet", *http])
            out = capsys.readouterr().out
            assert code == 0, out
            assert "stopped by                max_evals" in out
    with RunStore(store) as s:
        for name in ("prompt-evoprompt-ga-seed0", "prompt-evoprompt-de-seed0"):
            run = s.get_run(name)
            scored = s.trials(run.id, states=[TrialState.COMPLETE])
            assert len(scored) == 12 and len(s.calls(run.id, role="scorer")) == 5 * 12  # equal scorer calls
            assert all("<prompt>" not in t.text and "Crossover" not in t.text for t in scored)
            assert max(t.value for t in scored) == 100.0  # a "sport" instruction: the scorer answers right
