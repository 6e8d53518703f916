"""What a newcomer hit on a first afternoon, each pinned: plotting an ordinary store, zero counts,
dollars as a number, --help saying each default once, the empty instruction in a summary, and the
docs/problems.md Problem-class example run as written (the README's own snippet: tests/test_readme_byop.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from fakes import scripted_llm

from llmopt import Budget, LLMProposer, Optimizer, Problem, RandomProposer, RunStore, Usage
from llmopt.cli import build_parser, main
from llmopt.experiments.report import format_table, run_summary

README = Path(__file__).resolve().parent.parent / "README.md"


# --- 1. llmopt plot on any store --------------------------------------------------------------

@pytest.mark.slow
def test_plot_draws_the_runs_of_an_ordinary_store(tmp_path: Path, capsys) -> None:
    store, figures = str(tmp_path / "runs.db"), tmp_path / "figs"
    for seed in ("0", "1"):
        assert main(["run", "linreg", "--proposer", "random", "--store", store, "--seed", seed, "--steps", "3",
                     "--no-stop-when-solved", "--quiet"]) == 0
    assert main(["run", "linreg", "--proposer", "random", "--store", store, "--proposals", "4", "--steps", "2",
                 "--name", "narrow", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plot", "--store", store, "--out", str(figures)]) == 0
    names = sorted(p.name for p in figures.iterdir())
    assert names == sorted(f"linreg-{kind}.{fmt}" for kind in ("best-vs-step", "best-vs-evals", "ecdf", "proposals")
                           for fmt in ("png", "svg"))
    # a store alone has no problem to ask for its ladder, and linear regression records no optimum
    assert "(to the best found)" in (figures / "linreg-ecdf.svg").read_text()
    for path in figures.glob("*.png"):
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, path
    svg = (figures / "linreg-best-vs-step.svg").read_text()
    # one line per configuration: the two 8-proposal seeds together, the 4-proposal run apart
    assert "random proposals_per_step=8 (n=2)" in svg and "random proposals_per_step=4 (n=1)" in svg

    named = tmp_path / "named"
    assert main(["plot", "--store", store, "linreg-random-seed1", "--out", str(named), "--x", "step",
                 "--formats", "svg"]) == 0  # one run named: its figures alone (as SVG only: half the time)
    assert sorted(p.name for p in named.iterdir()) == [f"linreg-{k}.svg" for k in ("best-vs-step", "ecdf", "proposals")]
    assert "random (n=1)" in (named / "linreg-best-vs-step.svg").read_text()
    capsys.readouterr()
    assert main(["plot", "--store", store, "ghost", "--out", str(named)]) == 2
    assert "ghost" in capsys.readouterr().err


def test_a_plotted_title_names_the_seeds_that_were_run(tmp_path: Path, capsys) -> None:
    from llmopt.cli.run_options import parse_cell
    from llmopt.experiments.compare import collect
    from llmopt.experiments.grid import load_grid
    from llmopt.experiments.plot import best_so_far_figure, proposals_figure

    grid, store = tmp_path / "g.toml", str(tmp_path / "g.db")
    grid.write_text('seeds = 3\n[defaults]\nproposer = "random"\nsteps = 2\n[problems.linreg]\n[configs.random]\n')
    assert main(["compare", str(grid), "--seeds", "2", "--store", store]) == 0  # seeds 0 and 1 of 0, 1, 2
    capsys.readouterr()
    collected = collect(load_grid(grid), store, run=False, parse=parse_cell)
    title = best_so_far_figure(collected, "linreg", "step").axes[0].get_title()
    assert title.endswith("; seeds 0, 1)"), title
    assert "by step (seeds 0, 1)" in proposals_figure(collected, "linreg").axes[0].get_title()


def test_a_grids_store_plotted_without_its_grid_keeps_the_grids_labels(tmp_path: Path, capsys) -> None:
    from llmopt.experiments.plot import best_so_far_title, collect_runs

    store = str(tmp_path / "g.db")
    assert main(["compare", "--problems", "linreg", "--proposers", "random", "--seeds", "[0, 2]", "--set", "steps=2",
                 "--name", "g", "--store", store]) == 0
    capsys.readouterr()
    with RunStore(store) as opened:
        collected = collect_runs(opened)
    assert sorted((o.cell.problem, o.cell.config, o.cell.seed) for o in collected.outcomes) == [
        ("linreg", "random", 0), ("linreg", "random", 2)]
    assert best_so_far_title(collected, "linreg").endswith("; seeds 0, 2)")
    assert main(["plot", "--store", store, "--seeds", "[2]", "--out", str(tmp_path / "f")]) == 0
    assert "random (n=1)" in (tmp_path / "f" / "linreg-best-vs-step.svg").read_text()


# --- 2. zero counts -----------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--proposals", "--max-rounds", "--concurrency", "--buckets", "--patience"])
def test_a_zero_count_is_a_usage_error_before_anything_runs(tmp_path: Path, capsys, flag: str) -> None:
    store = tmp_path / "r.db"
    with pytest.raises(SystemExit) as exit_:
        proposer = "llm" if flag == "--buckets" else "random"  # --buckets: an option of the meta-prompt's proposer
        main(["run", "linreg", "--proposer", proposer, "--store", str(store), flag, "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag}: must be >= 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_zero_steps_scores_only_the_starting_solutions(tmp_path: Path, capsys) -> None:
    assert main(["run", "linreg", "--proposer", "random", "--store", str(tmp_path / "r.db"), "--steps", "0",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^trials +5: 5 complete", out, re.M) and "max_steps" in out


# --- 3. dollars ----------------------------------------------------------------------------------

def test_dollars_is_a_number_and_its_display_says_when_it_is_a_lower_bound(tmp_path: Path, capsys) -> None:
    partial = Usage(calls=50, cost_usd=0.0123, unpriced_calls=40)
    assert isinstance(partial.dollars(), float) and partial.dollars() == pytest.approx(0.0123)
    assert partial.unpriced_calls == 40
    assert partial.format_dollars() == ">=$0.0123 (40 unpriced)"
    assert Usage(calls=2, cost_usd=0.5).format_dollars() == "$0.5000"
    result = Optimizer(_Strings(), RandomProposer(), budget=Budget(max_steps=1)).run()
    assert result.usage.dollars() == 0.0
    assert ["cost", "$0.0000"] in run_summary(result, _Strings())


# --- 4. --help ------------------------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _rendered(default: object) -> set[str]:
    if isinstance(default, (list, tuple)):
        return {" ".join(map(str, default))}
    if isinstance(default, float):
        return {str(default), f"{default:g}"}
    return {str(default)}


def test_every_option_has_help_that_states_its_default_once_and_truly() -> None:
    seen = {path for path, _ in _parsers(build_parser())}
    for expected in [("run", "linreg"), ("run", "tsp"), ("run", "prompt"), ("compare",), ("plot",), ("show",),
                     ("export",), ("evaluate",), ("baselines", "tsp")]:
        assert expected in seen
    problems = []
    for path, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"llmopt {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                problems.append(f"{where}: no help")
                continue
            text = formatter._expand_help(action)
            if text.count("(default") > 1 or "(default: None)" in text:
                problems.append(f"{where}: {text!r}")
            default = action.default
            if default is None or default is False or default == [] or default == argparse.SUPPRESS:
                continue
            stated = re.search(r"\(default:? ([^)]*)\)", text)
            if stated is None:
                problems.append(f"{where}: default {default!r} not stated: {text!r}")
            elif not any(stated.group(1).startswith(r) for r in _rendered(default)):
                problems.append(f"{where}: says default {stated.group(1)!r}, is {default!r}")
    assert not problems, "\n".join(problems)


def test_run_help_says_each_default_once() -> None:
    parser = next(p for path, p in _parsers(build_parser()) if path == ("run", "linreg"))
    text = parser.format_help()
    assert "(default: None)" not in text and "(default 8) (default: 8)" not in text
    assert "--order" in text and "worst_to_best" in text.split("--order", 1)[1].split("--scores")[0]


# --- 5. the empty solution in a summary ---------------------------------------------------------

class _Strings(Problem[str]):
    """Strings scored by their length: the empty string is the optimum, as the empty instruction can be."""

    name = "strings"

    def describe(self) -> str:
        return "Short strings."

    def answer_format(self) -> str:
        return "Reply with a string."

    def encode(self, solution: str) -> str:
        return solution

    def decode(self, text: str) -> str:
        return text.strip()

    def score(self, solution: str) -> float:
        return float(len(solution))

    def initial_solutions(self, rng) -> list[str]:
        return ["abc", ""]

    def random_solution(self, rng) -> str:
        return "x" * int(rng.integers(1, 5))


def test_the_empty_solution_is_shown_as_a_quoted_empty_string() -> None:
    problem = _Strings()
    result = Optimizer(problem, RandomProposer(), budget=Budget(max_steps=0)).run()
    assert result.best.text == ""
    table = format_table(run_summary(result, problem), header=False)
    assert re.search(r'^best +""  \(value 0, step 0\)$', table, re.M), table


def test_the_prompt_summary_shows_the_empty_instruction(tmp_path: Path, capsys, monkeypatch) -> None:
    from datadir import data_dir
    from openai_server import OpenAIServer

    monkeypatch.setenv("NEWCOMER_KEY", "sk-newcomer-0000000000")
    with OpenAIServer(lambda prompt, seed: "Maybe.") as server:  # every answer wrong: the first start stays best
        code = main(["run", "prompt", "--task", "bbh/navigate", "--data-dir", str(data_dir()), "--max-train", "3",
                     "--steps", "0", "--store", str(tmp_path / "p.db"), "--quiet", "--proposer", "random",
                     "--scorer", "openai/scorer", "--scorer-api-base", server.api_base,
                     "--scorer-api-key-env", "NEWCOMER_KEY"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r'^best +""  \(value 0, step 0\)$', out, re.M), out


# --- 7. the Problem-class example of docs/problems.md (the README links to it) ------------------------

def readme_problem_example() -> str:
    text = (README.parent / "docs" / "problems.md").read_text(encoding="utf-8")
    section = text.split("## Writing a Problem class", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_new_problem_example_runs_as_written(capsys) -> None:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_problem_example(), "docs/problems.md (Problem class)", "exec"), namespace)  # runs it: random control
    assert capsys.readouterr().out.strip()  # it prints its stop reason and best solution
    classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, Problem) and v is not Problem]
    assert len(classes) == 1
    problem = classes[0]()
    assert problem.name != Problem.name and problem.answer_schema() is not None

    def script(prompt: str, seed: int) -> str:  # a model that answers in the schema's JSON, or babbles
        return "no idea" if seed % 5 == 0 else f'{{"x": {seed % 41 - 20}}}'

    llm, backend = scripted_llm(script)
    result = Optimizer(problem, LLMProposer(llm), seed=0, budget=Budget(max_steps=2, stop_when_solved=False)).run()
    assert result.steps == 2 and backend.requests
    assert result.counts["COMPLETE"] > len(problem.initial_solutions(np.random.default_rng(0)))
    assert problem.decode(problem.encode(-12)) == -12 and problem.decode('{"x": 4}') == 4


# --- 6. reports that compare unequal runs say so; one name for what ran ----------------------------

def _function_grid(tmp_path: Path, configs: str) -> Path:
    (tmp_path / "obj_unequal.py").write_text("def f(s):\n    return (s['x'] - 3) ** 2\n")
    (tmp_path / "space.json").write_text('{"type": "object", "required": ["x"], "properties": '
                                         '{"x": {"type": "integer", "minimum": -50, "maximum": 50}}}')
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = 3\n[problems.fn]\nproblem = "function"\nobjective = "obj_unequal.py:f"\n'
                    'schema = "space.json"\n' + configs)
    return grid


def test_rows_of_unequal_budgets_show_their_budgets_and_notes_describe_only_shown_columns(tmp_path: Path,
                                                                                          capsys) -> None:
    grid = _function_grid(tmp_path, '[configs.random]\nproposer = "random"\nsteps = 10\n'
                                    '[configs.short]\nproposer = "random"\nsteps = 3\nproposals = 2\n')
    assert main(["compare", str(grid), "--store", str(tmp_path / "g.db"), "--quiet"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("configuration"))
    assert "budget" in header.split("  ") and "solved" not in header  # a function has no known optimum
    assert re.search(r"^random .* steps 10 ", out, re.M) and re.search(r"^short .* steps 3 ", out, re.M), out
    notes = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert any("budget: each row's stopping limits, which differ between rows" in n for n in notes), notes
    assert not any("solved:" in n for n in notes), notes  # no column, no note
    (tmp_path / "same").mkdir()
    same = _function_grid(tmp_path / "same", '[configs.random]\nproposer = "random"\nsteps = 2\n'
                                             '[configs.tpe]\nproposer = "optuna:tpe"\nsteps = 2\n')
    assert main(["compare", str(same), "--store", str(tmp_path / "same.db"), "--quiet"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("configuration"))
    assert "budget" not in header.split("  ")  # equal budgets: nothing to point out


def test_one_name_for_what_ran_in_show_tables_plots_and_the_report(tmp_path: Path, capsys) -> None:
    from llmopt.cli.compare import grid_from_args
    from llmopt.experiments.plot import _grid_label, collect_runs
    from llmopt.experiments.report import runs_table
    from llmopt.experiments.tables import tables
    from llmopt.testing import ScriptedLLM
    from problems.linear_regression.problem import LinearRegression

    store = tmp_path / "r.db"
    proposer = LLMProposer(ScriptedLLM(lambda prompt, seed: f"[{seed % 20}, {seed % 7}]", model="local/fake"))
    with RunStore(store) as opened:
        Optimizer(LinearRegression(), proposer, store=opened, name="one",
                  budget=Budget(max_steps=1, stop_when_solved=False)).run()
        shown = runs_table(opened)[1][2]
        collected = collect_runs(opened)
    ran = proposer.describe(LinearRegression())
    assert ran == shown == "opro local/fake"  # show's proposer column, the tables' ran column
    assert [o.cell.config for o in collected.outcomes] == [ran] == [o.ran for o in collected.outcomes]
    assert tables(collected)["linreg"][1][:2] == [ran, ran]  # the plots' and the report's label too
    args = build_parser().parse_args(["compare", "--problems", "linreg", "--models", "local/smollm2"])
    grid = grid_from_args(args)
    assert "opro local/smollm2" in grid.configs  # a grid from flags names its row the same way
    cell = next(c for c in grid.cells() if c.config == "opro local/smollm2")
    assert cell.name == "compare/linreg/opro local:smollm2/seed0"  # its run name as before (no '/' in it)
    recorded = {"proposer": {"kind": "llm", "llm": {"model": "local/smollm2"}}}
    assert _grid_label("opro local:smollm2 temperature=1.0", recorded) == "opro local/smollm2 temperature=1.0"
    assert _grid_label("mine", recorded) == "mine"  # a label the grid chose is its own
