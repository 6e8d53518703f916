"""The LLM controls beside OPRO (arXiv 2602.16805): independent samples (``llm-iid``) and the latest
solutions without scores (``llm-scs``), on the loop, the command line, grids and the Python API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fakes import linreg_script
from openai_server import OpenAIServer

import llmopt
from llmopt import Budget, Optimizer, RunStore, SamplingProposer, TrialState
from llmopt.cli import main
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression
from problems.prompt_optimization.data import load_task
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer


def few_pairs(prompt: str, seed: int) -> str:
    """One of three pairs, by seed: independent samples that repeat themselves (redrawn)."""
    return f"[{10 + seed % 3}, {20 + seed % 3}]"


def run(proposer: SamplingProposer, steps: int = 3, **kw) -> tuple[Optimizer, ScriptedLLM]:
    opt = Optimizer(LinearRegression(seed=4), proposer, seed=4, budget=Budget(max_steps=steps, stop_when_solved=False),
                    **kw)
    opt.run()
    return opt, proposer.llm  # type: ignore[return-value]


def test_independent_samples_see_one_prompt_with_no_solution_and_no_score() -> None:
    llm = ScriptedLLM(few_pairs, model="local/x")
    opt, _ = run(SamplingProposer(llm, structured="off"), proposals_per_step=4)
    prompts = {c.prompt for c in opt.proposer.llm.calls}
    (prompt,) = prompts
    assert prompts == {"Now you will help me minimize a function with two input variables w, b.\n\n"
                       "Give me one (w, b) pair whose function value is as low as possible. Do not write code. "
                       "The output must end with a pair [w, b], where w and b are numerical values."}
    starts = [t for t in opt.history if t.source == "start"]
    assert starts and not any(t.text in prompt for t in starts)  # the history never reaches the model
    seeds = [c.seed for c in opt.proposer.llm.calls]
    assert len(seeds) == len(set(seeds))  # a fresh sample per proposal
    mine = [t for t in opt.history if t.source == "llm-iid:local/x"]
    assert {t.state for t in mine} == {TrialState.COMPLETE, TrialState.DUPLICATE}  # repeats recorded, then redrawn
    assert len({t.key for t in mine if t.state is TrialState.COMPLETE}) == 3  # the script's three pairs, no more
    assert opt.proposer.describe(opt.problem) == "llm-iid local/x" and opt.proposer.label == "llm-iid"
    assert opt.config()["proposer"]["sampling"] == {"shown": 0}  # its context's seed is the run's, recorded once
    assert opt.proposer.seed == 4 and opt.config()["seed"] == 4


def test_sequential_conditioned_sampling_shows_the_latest_solutions_without_scores() -> None:
    llm = ScriptedLLM(linreg_script, model="local/x")
    opt, _ = run(SamplingProposer(llm, shown=3, structured="off"), steps=2)
    last = opt.proposer.llm.calls[-1].prompt
    scored = sorted((t for t in opt.history if t.state is TrialState.COMPLETE and t.step < 2), key=lambda t: t.number)
    shown = re.findall(r"input:\n(w=-?\d+, b=-?\d+)", last)
    assert shown == [t.text for t in scored[-3:]]  # the three latest, oldest first
    listed = last.split("without their function values.")[1].split("Give me")[0]
    assert "value" not in listed and not re.search(r"\d\.\d|\n\d+\n", listed)  # no score anywhere
    assert "Give me one new (w, b) pair, different from all pairs above," in last
    assert opt.proposer.label == "llm-scs" and opt.history.get(scored[-1].number) is not None


def test_a_prompt_problems_control_opens_without_talk_of_previous_instructions() -> None:
    task = load_task("bbh/sports_understanding", max_train=10)
    problem = PromptOptimization(task, Scorer(ScriptedLLM(lambda p: "yes", model="local/s", temperature=0.0)))
    llm = ScriptedLLM(lambda p, s: f"<INS>Think {s % 5}.</INS>", model="local/x")
    opt = Optimizer(problem, SamplingProposer(llm, structured="off"), seed=1,
                    budget=Budget(max_steps=1), proposals_per_step=2)
    opt.run()
    prompt = llm.calls[0].prompt
    assert prompt.startswith("Your task is to generate the instruction <INS>.") and "previous" not in prompt
    assert "Below are some problems." in prompt and "Generate an instruction" not in prompt
    assert {c.prompt for c in llm.calls} == {prompt}


def test_python_api_and_bad_input(tmp_path: Path) -> None:
    space = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -5, "maximum": 5}}, "required": ["x"]}
    llm = ScriptedLLM(lambda p, s: f'{{"x": {s % 7 - 3}}}', model="local/x")
    result = llmopt.minimize(lambda v: (v["x"] - 2) ** 2, space, model=llm, proposer="llm-iid", steps=2, seed=1,
                             store=tmp_path / "r.db")
    assert result.name == "function-llm-iid-seed1" and result.best is not None
    assert {t.source for t in result.history} <= {"start", "llm-iid:local/x"}
    with pytest.raises(ValueError, match="llm-iid shows no solutions"):
        llmopt.minimize(lambda v: 0.0, space, model=llm, proposer="llm-iid", proposer_options={"shown": 3})
    with pytest.raises(ValueError, match="shown must be an integer >= 0"):
        SamplingProposer(llm, shown=-1)


def test_command_line_and_grid_rows(tmp_path: Path, capsys, monkeypatch) -> None:
    assert main(["run", "linreg", "--proposer", "llm-iid", "--show", "5", "--store", str(tmp_path / "x.db")]) == 2
    assert "--show 5: llm-iid shows no solutions" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # refused before anything was created
    monkeypatch.setenv("GRID_KEY", "sk-test")
    grid, store = tmp_path / "g.toml", tmp_path / "g.db"
    with OpenAIServer(linreg_script) as server:
        model = f'model = "openai/fake"\napi-base = "{server.api_base}"\napi-key-env = "GRID_KEY"\nstructured = "off"\n'
        grid.write_text(f'seeds = 2\n[defaults]\nsteps = 2\nproposals = 4\nmax-evals = 9\n[problems.linreg]\n'
                        f'[configs.opro]\n{model}[configs.iid]\nproposer = "llm-iid"\n{model}'
                        f'[configs.random]\nproposer = "random"\n')
        assert main(["compare", str(grid), "--store", str(store), "--quiet", "--markdown", "--no-references"]) == 0
        iid_prompts = {r["messages"][-1]["content"] for r in server.requests if "w=" not in r["messages"][-1]["content"]}
    out = capsys.readouterr().out
    assert "| iid | llm-iid fake | 2/2 | 9 |" in out.replace("openai/fake", "fake")
    assert "| opro | opro openai/fake | 2/2 | 9 |" in out and "| random | random in [10, 20]² (integers) | 2/2 | 9 |" in out
    assert len(iid_prompts) == 1  # every independent sample, both seeds: one prompt
    with RunStore(store) as s:
        assert s.get_run("g/linreg/iid/seed0").config["proposer"]["kind"] == "llm-iid"
