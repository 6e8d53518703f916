"""A user's program problem: from Python and the command line, edits against the parent, feedback
in the meta-prompt, cascades, failed candidates counted in the budget. (The isolation itself:
tests/test_sandbox.py and tests/test_hostile_candidates.py.)"""

from __future__ import annotations

import textwrap

import pytest

import llmopt
from llmopt.cli import main
from llmopt.history import TrialState
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.problem import ParseError
from llmopt.programs.problem import ProgramProblem, Stage
from llmopt.store import RunStore
from llmopt.testing import ScriptedLLM, check_problem

KEY_ENV = "LLMOPT_TEST_FAKE_KEY"  # the openai_server fixture sets it

INITIAL = textwrap.dedent("""\
    # EVOLVE-BLOCK-START
    def value():
        return 1
    # EVOLVE-BLOCK-END
    """)

EVALUATOR = textwrap.dedent("""\
    def evaluate(candidate, cap=100):
        v = candidate.run("value")
        if not isinstance(v, (int, float)):
            return {"score": 0.0, "feedback": f"value() returned {type(v).__name__}, expected a number"}
        return {"score": float(min(v, cap)), "feedback": f"value() returned {v}", "metrics": {"raw": v}}

    def quick(candidate):
        return 1.0 if "return" in candidate.source else 0.0
    """)

DESCRIPTION = "Write value() so that it returns a number as large as possible (at most 100 counts)."


@pytest.fixture
def evaluator(tmp_path):
    path = tmp_path / "my_eval.py"
    path.write_text(EVALUATOR)
    return f"{path}:evaluate"


def program(n: int) -> str:
    return f"```python\ndef value():\n    return {n}\n```"


def edit(old: int, new: int) -> str:
    return f"<<<<<<< SEARCH\n    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"


def test_a_program_problem_from_python_edits_the_best_and_records_its_parent(evaluator, tmp_path):
    replies = iter([program(5), "no code here", edit(5, 7), edit(999, 1), "```python\ndef value(:\n```",
                    edit(7, 9), program(9) + "\n# the same program again"])
    llm = ScriptedLLM(lambda prompt: next(replies, program(2)), model="local/x")
    store = tmp_path / "runs.sqlite"
    result = llmopt.evolve(evaluator, INITIAL, description=DESCRIPTION, model=llm, steps=7, proposals_per_step=1,
                           max_rounds=1, store=store, progress=False, proposer_options={"feedback": True})
    states = [t.state for t in result.history]
    assert result.best.value == 9.0 and result.best.text == "def value():\n    return 9\n"
    by_number = {t.number: t for t in result.history}
    seven = next(t for t in result.history if t.value == 7.0)
    assert by_number[seven.parents[0]].value == 5.0  # the edit applied to the best shown, and says so
    invalid = [t.error for t in result.history if t.state is TrialState.INVALID]
    assert any("no code" in e for e in invalid)
    assert any("edit 1 does not apply" in e for e in invalid)
    assert any("does not parse" in e for e in invalid)
    assert TrialState.DUPLICATE in states  # the comment changes nothing the program does
    assert seven.metrics["feedback"] == "value() returned 7" and seven.metrics["raw"] == 7
    with RunStore(store) as s:  # the feedback is stored and reached the prompt of the next step
        run = s.runs()[0]
        prompts = [st.prompt for st in s.steps(run.id) if st.prompt]
    assert any("feedback:\nvalue() returned 5" in p for p in prompts)


def test_feedback_is_off_by_default_and_word_for_word_when_on(evaluator):
    problem = ProgramProblem(evaluator, INITIAL, description=DESCRIPTION)
    llm = ScriptedLLM(lambda prompt: program(3), model="local/x")
    result = llmopt.evolve(evaluator, INITIAL, description=DESCRIPTION, model=llm, steps=2, proposals_per_step=1,
                           progress=False)
    off = build_meta_prompt(problem, result.history, MetaPromptConfig(max_shown=4))
    on = build_meta_prompt(problem, result.history, MetaPromptConfig(max_shown=4, feedback=True))
    assert "feedback:" not in off and "feedback:\nvalue() returned 3" in on
    assert on.replace("\nfeedback:\nvalue() returned 3", "").replace("\nfeedback:\nvalue() returned 1", "") == off


def test_a_failing_candidate_is_a_failed_trial_and_counts_in_the_evaluation_budget(evaluator):
    crash = "```python\ndef value():\n    return 1 / 0\n```"
    replies = iter([crash, program(4), crash.replace("1 / 0", "2 / 0"), program(6)])
    llm = ScriptedLLM(lambda prompt: next(replies, program(8)), model="local/x")
    result = llmopt.evolve(evaluator, INITIAL, description=DESCRIPTION, model=llm, steps=50, max_evals=4,
                           proposals_per_step=1, max_rounds=1, progress=False)
    failed = [t for t in result.history if t.state is TrialState.FAILED]
    assert len(failed) == 2 and all("ZeroDivisionError" in t.error for t in failed)
    assert "\n" not in failed[0].error
    assert result.stop_reason.value == "max_evals"
    assert len(result.history.completed()) + len(failed) == 4  # killed or crashed: paid, so counted


def test_a_cascade_stops_at_a_stage_whose_bar_is_not_reached(evaluator, tmp_path):
    quick = evaluator.replace(":evaluate", ":quick")
    problem = ProgramProblem([Stage(quick, threshold=1.0), Stage(evaluator)], INITIAL, description=DESCRIPTION)
    passed = problem.evaluate("def value():\n    return 42\n")
    assert (passed.value, passed.metrics["stage"]) == (42.0, 2)
    stopped = problem.evaluate("def value():\n    pass\n")
    assert (stopped.value, stopped.metrics["stage"]) == (0.0, 1)
    assert passed.metrics["wall_s"] >= stopped.metrics["wall_s"] > 0


def test_bad_input_is_refused_in_one_line_before_anything_runs(evaluator, tmp_path):
    with pytest.raises(ValueError, match="exactly one # EVOLVE-BLOCK-START"):
        ProgramProblem(evaluator, INITIAL + "# EVOLVE-BLOCK-START\n", description=DESCRIPTION)
    with pytest.raises(ValueError, match="does not parse"):
        ProgramProblem(evaluator, "def f(:\n", description=DESCRIPTION)
    with pytest.raises(ValueError, match="description"):
        ProgramProblem(evaluator, INITIAL, description=" ")
    with pytest.raises(ValueError, match="replies must be one of full, edits"):
        ProgramProblem(evaluator, INITIAL, description=DESCRIPTION, replies="patch")
    with pytest.raises(ValueError):
        ProgramProblem("no_colon_here", INITIAL, description=DESCRIPTION)
    with pytest.raises(ValueError, match="no random draw"):
        llmopt.evolve(evaluator, INITIAL, description=DESCRIPTION, proposer="random", steps=1, progress=False)


def test_replies_are_decoded_against_the_parent_or_the_initial_program(evaluator):
    problem = ProgramProblem(evaluator, INITIAL, description=DESCRIPTION, replies="edits")
    assert problem.decode(edit(1, 3)) == "def value():\n    return 3\n"  # no parent: the initial program
    assert problem.revise(edit(3, 4), "def value():\n    return 3\n") == "def value():\n    return 4\n"
    with pytest.raises(ParseError, match="does not apply"):
        problem.revise(edit(1, 4), "def value():\n    return 3\n")
    assert "SEARCH" in problem.answer_format() and "SEARCH" not in ProgramProblem(
        evaluator, INITIAL, description=DESCRIPTION).answer_format()
    assert problem.program("x = 1\n") == "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
    assert problem.key("x=1 # c\n") == problem.key("x = 1\n")


def test_the_problem_contract_holds(evaluator):
    check_problem(ProgramProblem(evaluator, INITIAL, description=DESCRIPTION), max_examples=5)


def test_llmopt_run_program_from_the_command_line_and_show_prints_diffs_and_feedback(evaluator, tmp_path, capsys,
                                                                                     openai_server):
    from llmopt.experiments.programs import announce_isolation

    announce_isolation.cache_clear()  # said once per process: this test's process may have said it
    initial = tmp_path / "initial.py"
    initial.write_text(INITIAL)
    server = openai_server(lambda prompt, seed: edit(1, 12))
    store = str(tmp_path / "runs.sqlite")
    code = main(["run", "program", "--evaluator", evaluator, "--initial", str(initial), "--description", DESCRIPTION,
                 "--model", "openai/scripted", "--api-base", server.api_base, "--api-key-env", KEY_ENV,
                 "--structured", "off", "--steps", "1", "--proposals", "1",
                 "--store", store, "--name", "p", "--quiet", "--feedback", "--replies", "edits"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "candidates run isolated" in out.err
    assert main(["show", "p", "--store", store, "--step", "1"]) == 0
    shown = capsys.readouterr().out
    assert "diff against #0:" in shown and "-    return 1\n+    return 12" in shown
    assert "feedback:\nvalue() returned 12" in shown


def test_candidates_are_scored_on_a_process_pool_as_in_the_loop(evaluator):
    from concurrent.futures import ProcessPoolExecutor

    from llmopt import Budget, LLMProposer, Optimizer

    problem = ProgramProblem(evaluator, INITIAL, description=DESCRIPTION)

    def run(executor):
        llm = ScriptedLLM(lambda prompt, seed: program(seed % 50), model="local/x")
        opt = Optimizer(problem, LLMProposer(llm), seed=3, budget=Budget(max_steps=2), proposals_per_step=2)
        return [(t.number, t.state, t.value) for t in opt.run(executor=executor).history]

    with ProcessPoolExecutor(max_workers=2) as pool:  # the problem pickles; each candidate still isolated
        assert run(pool) == run(None)


def test_the_report_shows_the_best_program_its_lineage_and_diffs():
    from llmopt.experiments.html import lineage_html

    rows = [{"number": 0, "text": "def value():\n    return 1\n", "value": 1.0, "parents": None},
            {"number": 1, "text": "def value():\n    return 5\n", "value": 5.0, "parents": "[0]"},
            {"number": 2, "text": "x = 1\n", "value": 0.0, "parents": "[0]"},
            {"number": 3, "text": "def value():\n    return 9\n", "value": 9.0, "parents": "[1]"}]
    page = lineage_html(rows, 3)
    assert "best solution #3 in full" in page and "lineage: #3 &larr; #1 &larr; #0" in page
    assert "-    return 5\n+    return 9" in page and "-    return 1\n+    return 5" in page
    assert lineage_html(rows, 0) == ""  # no parents: nothing to trace


@pytest.mark.parametrize("module, value", [("circle_packing", 26 / 12), ("cap_set", 256.0)])
def test_a_builtin_program_problem_scores_its_initial_program_in_the_sandbox(module, value):
    import argparse
    import importlib

    cli = importlib.import_module(f"problems.{module}.cli").CLI
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    problem = cli.from_args(parser.parse_args(["--time-limit", "30"]))
    assert problem.limits.wall_s == 30 and problem.name == module.replace("_", "-")
    (start,) = problem.initial_solutions(None)
    done = problem.evaluate(start)
    assert done.value == pytest.approx(value, abs=1e-9) and done.feedback
    check_problem(problem, max_examples=2)


HOSTILE_REPLIES = {
    "an infinite loop": "```python\ndef value():\n    while True:\n        pass\n```",
    "a segfault": "```python\ndef value():\n    import ctypes\n    return ctypes.string_at(0)\n```",
    "killing its parent": "```python\ndef value():\n    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                          "    return 50\n```",
    "a memory bomb": "```python\ndef value():\n    x = [0] * (10 ** 10)\n    return 1\n```",
}


def test_a_run_goes_on_past_hostile_candidates_and_loses_nothing(evaluator, tmp_path):
    """The issue's promise at the level of a run: hostile candidates among good ones, scored two at
    a time, with a store: the run ends by its budget, each hostile one is a trial with a one-line
    reason, the good ones are scored, and the store holds every trial."""
    from llmopt.programs.sandbox import Limits

    replies = list(HOSTILE_REPLIES.values()) + [program(30), program(40)]
    llm = ScriptedLLM(replies, model="local/x")  # in call order: the step asks all six
    store = tmp_path / "runs.sqlite"
    result = llmopt.evolve(evaluator, INITIAL, description=DESCRIPTION, model=llm, steps=1, proposals_per_step=6,
                           max_rounds=1, store=store, workers=2, progress=False,
                           limits=Limits(wall_s=3, cpu_s=3, memory_mb=512))
    assert result.stop_reason.value == "max_steps"
    failed = [t for t in result.history if t.state is TrialState.FAILED]
    assert len(failed) == len(HOSTILE_REPLIES)
    assert all(t.error and "\n" not in t.error and t.text for t in failed)
    assert {t.value for t in result.history if t.state is TrialState.COMPLETE} == {1.0, 30.0, 40.0}
    with RunStore(store) as s:
        assert len(s.trials(s.runs()[0].id)) == len(list(result.history))
