"""The README's "Bring your own problem" section, run as written: a user's problem written only from
the README passes check_problem, runs on the embedded model (the snippet itself), with random search
and both optuna samplers, and from the command line the README shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

import llmopt
from llmopt.cli import main
from llmopt.testing import check_problem

README = Path(__file__).resolve().parent.parent / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Bring your own problem", 1)[1].split("\n## ", 1)[0]


def snippet() -> str:
    return re.search(r"```python\n(.*?)```", section(), re.S).group(1)


def test_the_snippet_is_under_ten_lines() -> None:
    assert len(snippet().strip().splitlines()) < 10


@pytest.mark.slow
def test_the_readme_snippet_runs_as_written_on_the_embedded_model(capsys, embedded_model) -> None:
    namespace: dict = {"__name__": "readme_byop"}
    exec(compile(snippet(), "README.md (bring your own problem)", "exec"), namespace)  # the model runs: ~15 s
    printed = capsys.readouterr().out.strip()
    result = namespace["result"]
    assert result.steps == 1 and result.usage.calls > 0  # OPRO really asked the embedded model
    proposed = [t for t in result.history if t.step >= 1 and t.source.startswith("llm:")]
    assert any(t.state is llmopt.TrialState.COMPLETE for t in proposed)  # and scored what it proposed
    scored = [t.value for t in result.history if t.value is not None]
    assert result.best.value == min(scored) == namespace["f"](result.best.solution)  # the best is f's lowest
    assert printed == f"{result.best.text} {result.best.value}"
    assert json.loads(result.best.text) == result.best.solution


def user_problem() -> tuple:
    """``f`` and ``space`` as the README's snippet defines them (without running its model)."""
    head = snippet().split("check_problem(", 1)[0]
    namespace: dict = {}
    exec(compile(head, "README.md (bring your own problem)", "exec"), namespace)
    return namespace["f"], namespace["space"]


@pytest.mark.parametrize("proposer", ["random", "optuna:tpe", "optuna:cmaes"])
def test_the_readme_problem_runs_with_random_search_and_optuna(proposer: str, tmp_path) -> None:
    f, space = user_problem()
    check_problem(llmopt.FunctionProblem(f, space, description="Minimize f(x, y)."), max_examples=50)
    store = tmp_path / "runs.db"
    result = llmopt.minimize(f, space, proposer=proposer, steps=15, seed=3, store=str(store))
    again = llmopt.minimize(f, space, proposer=proposer, steps=15, seed=3)
    assert [t.key for t in result.history] == [t.key for t in again.history]  # same seed, same run
    assert result.best.value < 5.0  # the optimum is f(7, 1.5) = 0; starts are random in the box
    assert all(t.source in ("start", proposer) for t in result.history)
    with llmopt.RunStore(str(store), readonly=True) as s:
        assert [r.name for r in s.runs()] == [f"function-{proposer.replace(':', '-')}-seed3"]


def test_the_readme_command_line_runs(tmp_path, monkeypatch, capsys) -> None:
    command = re.search(r"`(llmopt run function [^`]*)`", section().replace("\n", " ")).group(1)
    f, space = user_problem()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodule.py").write_text("def f(s): return (s['x'] - 7) ** 2 + abs(s['y'] - 1.5)\n")
    (tmp_path / "space.json").write_text(json.dumps(space))
    argv = shlex.split(command)[1:] + ["--steps", "4", "--store", "runs.db", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "function-optuna-tpe-seed0" in out and "steps       4" in out


def test_the_section_shows_the_score_format_as_the_meta_prompt_writes_it() -> None:
    from llmopt import MetaPromptConfig, SolutionHistory, Trial, TrialState, build_meta_prompt

    text = section().replace("\n", " ")
    said = re.search(r"([\d.]+) and ([\d.]+) are `value: ([\d.]+)` and `value: ([\d.]+)`", text)
    assert said, "the section shows how scores are written"
    f, space = user_problem()
    problem = llmopt.FunctionProblem(f, space, description="Minimize f(x, y).")
    history = SolutionHistory(problem.direction)
    for i, value in enumerate((float(said.group(2)), float(said.group(1)))):  # worst first, as shown
        solution = {"x": i, "y": 0}
        history.append(Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", solution=solution,
                             text=problem.encode(solution), key=problem.key(solution), value=value))
    prompt = build_meta_prompt(problem, history, MetaPromptConfig())
    assert re.findall(r"^value:\n(.*)$", prompt, re.M) == [said.group(4), said.group(3)]
    for flag in ("--scores significant", "--score-digits", "--scores rounded --decimals", "MetaPromptConfig(scores="):
        assert flag in text


def test_the_section_links_the_measured_invalid_share_with_its_command() -> None:
    link = re.search(r"\((docs/results/byop-embedded\.md)\)", section())
    assert link
    measured = (README.parent / link.group(1)).read_text(encoding="utf-8")
    assert "python benchmarks/byop_embedded.py" in measured and "Machine" in measured and "Measured" in measured
