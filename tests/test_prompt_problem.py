"""Prompt optimization: meta-prompts, decoding, the scorer, and the loop's accounting of it.

The models here are scripted (the loop's unit tests); the real embedded model is exercised in
test_prompt_cli.py.
"""

from __future__ import annotations

import re

import pytest
from fakes import scripted_llm
from hypothesis import strategies as st
from toys import QUESTIONS, TASK, TEST, TRAIN, make_problem, optimizer_script, scorer_script  # noqa: F401

from llmopt import Budget, LLMProposer, Optimizer, ParseError, RunStore, StopReason
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.testing import ProblemContract
from problems.prompt_optimization.data import Task
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer, scorer_prompt


def history(*pairs: tuple[str, float]) -> SolutionHistory:
    h = SolutionHistory(PromptOptimization.direction)
    for i, (text, value) in enumerate(pairs):
        h.append(Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", solution=text, text=text,
                       key=text, value=value))
    return h


def test_meta_prompt_is_the_papers_for_chat_optimizers() -> None:
    problem, _ = make_problem(exemplars=1)
    prompt = build_meta_prompt(problem, history(("Let's solve it.", 75.0), ("", 50.0)), MetaPromptConfig())
    head, empty_text, empty_score, shown_high, problems, example, tail = prompt.split("\n\n")
    shown_low = f"{empty_text}\n\n{empty_score}"  # the empty instruction's text is blank
    assert head == ("Your task is to generate the instruction <INS>. Below are some previous instructions with "
                    "their scores. The score ranges from 0 to 100.")
    assert (shown_low, shown_high) == ("text:\n\nscore:\n50", "text:\nLet's solve it.\nscore:\n75")  # ascending
    assert problems == "Below are some problems."
    assert re.fullmatch(r"input:\nQ: <INS>\nIs \d+ even\?\nOptions:\n- Yes\n- No\nA:\nGround truth answer:\n(Yes|No)",
                        example)
    assert tail == ("Generate an instruction that is different from all the instructions <INS> above, and has a "
                    "higher score than all the instructions <INS> above. The instruction should begin with <INS> "
                    "and end with </INS>. The instruction should be concise, effective, and generally applicable "
                    "to all problems above.")


def test_meta_prompt_figure_3_style_and_positions() -> None:
    problem, _ = make_problem(style="brackets", exemplars=2)
    prompt = build_meta_prompt(problem, history(("A.", 10.0)), MetaPromptConfig())
    assert prompt.startswith("I have some texts along with their corresponding scores. The texts are arranged in "
                             "ascending order based on their scores, where higher scores indicate better quality."
                             "\n\ntext:\nA.\nscore:\n10\n\nThe following exemplars show how to apply your text:")
    assert prompt.count("\noutput:\n") == 2
    assert prompt.endswith("Write your new text that is different from the old ones and has a score as high as "
                           "possible. Write the text in square brackets.")
    llm, _ = scripted_llm(scorer_script, temperature=0.0)
    a_begin = PromptOptimization(TASK, Scorer(llm, "A_begin"), exemplars=1)
    text = build_meta_prompt(a_begin, history(("A.", 10.0)), MetaPromptConfig())
    assert text.startswith("Your task is to generate the answer starting sentence <Start>.")
    assert "\nA: <Start>\nGround truth answer:" in text and "begin with <Start> and end with </Start>" in text


def test_exemplars_change_with_the_step_and_are_seeded() -> None:
    problem, _ = make_problem()
    config = MetaPromptConfig()
    h1, h2 = history(("A.", 10.0)), history(("A.", 10.0), ("B.", 20.0))
    shown = [re.findall(r"Is (\d+) even", build_meta_prompt(problem, h, config, seed=5)) for h in (h1, h2)]
    # stream(run seed, "metaprompt-context", len(history)) picks 3 of the 8 training questions
    # (shown in training order), written out: a resumed run must render the recorded prompts again
    assert shown == [["2", "6", "8"], ["4", "5", "8"]]
    other = build_meta_prompt(problem, h1, MetaPromptConfig(), seed=6)
    assert re.findall(r"Is (\d+) even", other) == ["3", "6", "8"]  # the seed matters


def test_scorer_prompts_by_position() -> None:
    assert scorer_prompt("Think.", "Q?", "Q_begin") == "Q: Think.\nQ?\n\nA:"
    assert scorer_prompt("Think.", "Q?", "Q_end") == "Q: Q?\nThink.\n\nA:"
    assert scorer_prompt("Think.", "Q?", "A_begin") == "Q: Q?\n\nA: Think."
    assert scorer_prompt("", "Q?", "A_begin") == "Q: Q?\n\nA:"
    with pytest.raises(ValueError, match="unknown instruction position 'middle'"):
        scorer_prompt("x", "Q?", "middle")  # type: ignore[arg-type]


@pytest.mark.parametrize("reply,expected", [
    ("<INS>Check parity.</INS>", "Check parity."), ("Here: <INS> Think  it\nthrough. </INS> ok", "Think it through."),
    ('{"instruction": "Be brief."}', "Be brief."), ("[Answer carefully.]", "Answer carefully."),
    ("Answer carefully.", "Answer carefully."), ("<INS></INS>", ""), ("", ""),
])
def test_decode(reply: str, expected: str) -> None:
    problem, _ = make_problem()
    assert problem.decode(reply) == expected


@pytest.mark.parametrize("reply,kw,message", [
    ("First line\nsecond line", {}, "no instruction found"),
    ("<INS>" + "x" * 501 + "</INS>", {}, "too long"), ("<INS>Use INS tags</INS>", {}, "contains 'INS'"),
    ("<INS>Try 3 steps</INS>", {"forbid_digits": True}, "contains digits"),
])
def test_decode_filters_like_the_official_code(reply: str, kw: dict, message: str) -> None:
    problem, _ = make_problem(**kw)
    with pytest.raises(ParseError, match=message):
        problem.decode(reply)
    assert make_problem()[0].decode("<INS>Try 3 steps</INS>") == "Try 3 steps"  # digits: only GSM8K forbids


def test_bad_settings_are_refused() -> None:
    llm, _ = scripted_llm(scorer_script, temperature=0.7)
    with pytest.raises(ValueError, match="temperature 0"):
        Scorer(llm)
    with pytest.raises(ValueError, match="no training examples"):
        PromptOptimization(Task("t", "bool", (), TEST), make_problem()[0].scorer)
    with pytest.raises(ValueError, match="unknown meta-prompt style"):
        make_problem(style="xml")


class TestPromptContract(ProblemContract):
    problem = make_problem()[0]
    solutions = st.text(alphabet=st.characters(categories=("L", "Zs"), include_characters=".,;:!?'-"),
                        min_size=1, max_size=120).map(lambda s: " ".join(s.split())).filter(
        lambda s: s and "INS" not in s)


def test_scoring_is_accuracy_and_each_pair_is_asked_once(tmp_path) -> None:
    problem, backend = make_problem()
    assert problem.score("Check parity.") == 100.0
    assert problem.score("Hmm.") == 50.0  # the 'No' half of the training set
    asked = len(backend.requests)
    assert asked == 2 * len(TRAIN)
    problem.score("Check parity.")  # in memory: no new calls
    assert len(backend.requests) == asked
    assert {r["temperature"] for r in backend.requests} == {0.0} and {r["seed"] for r in backend.requests} == {0}
    with RunStore(tmp_path / "s.db") as store:
        problem.bind_cache(store.cache())
        problem.score("Check parity, twice.")
        fresh, backend2 = make_problem()
        fresh.bind_cache(store.cache())  # a new process on the same store: served from the store
        assert fresh.score("Check parity, twice.") == 100.0 and backend2.requests == []


def test_the_loop_accounts_for_scorer_calls(tmp_path) -> None:
    problem, scorer_backend = make_problem()
    llm, _ = scripted_llm(optimizer_script, model="fake/optimizer")
    with RunStore(tmp_path / "r.db") as store:
        opt = Optimizer(problem, LLMProposer(llm, structured="off"), seed=1, store=store, proposals_per_step=4,
                        max_rounds=1, budget=Budget(max_steps=2))
        result = opt.run()
        complete = result.counts["COMPLETE"]
        assert result.best is not None and result.best.value == 100.0
        assert result.usage_by_role["scorer"].calls == complete * len(TRAIN) == len(scorer_backend.requests)
        assert result.usage.calls == result.usage_by_role["scorer"].calls + result.usage_by_role["optimizer"].calls
        roles = [c.role for c in store.calls(result_run(store).id)]
        assert roles.count("scorer") == complete * len(TRAIN)
        assert store.usage(result_run(store).id).calls == result.usage.calls


def result_run(store: RunStore):
    [run] = store.runs()
    return run


def test_call_budget_counts_scorer_calls(tmp_path) -> None:
    problem, _ = make_problem()
    llm, _ = scripted_llm(optimizer_script, model="fake/optimizer")
    opt = Optimizer(problem, LLMProposer(llm, structured="off"), seed=1, proposals_per_step=4, max_rounds=1,
                    budget=Budget(max_steps=50, max_calls=30))
    result = opt.run()
    assert result.stop_reason is StopReason.MAX_CALLS
    assert result.usage.calls < 30 + 4 * (1 + len(TRAIN))  # overshoot: at most one step's calls


def test_failed_scorer_calls_make_a_failed_trial_not_a_zero(tmp_path) -> None:
    llm, _ = scripted_llm(scorer_script, model="fake/scorer", temperature=0.0,
                          fail=lambda r: RuntimeError("scorer down") if "Shaky" in r["messages"][-1]["content"] else None)
    problem = PromptOptimization(TASK, Scorer(llm), initial=["Shaky."])
    opt = Optimizer(problem, LLMProposer(scripted_llm(optimizer_script)[0], structured="off"), seed=0,
                    budget=Budget(max_steps=0))
    opt.start()
    [trial] = list(opt.history)
    assert trial.state is TrialState.FAILED and "8 of 8 scorer calls failed" in (trial.error or "")


def test_an_instructions_feedback_is_the_training_examples_it_got_wrong() -> None:
    problem, _ = make_problem()
    wrong = problem.evaluate("Answer.")  # the scorer says No to every question: the even ones are wrong
    assert wrong.value == 50.0
    lines = wrong.feedback.splitlines()
    assert len(lines) == 3 and lines[0] == "Q: Is 2 even? Options: - Yes - No | expected 'Yes', got 'false'"
    assert problem.evaluate("Check parity.").feedback is None
    trial = Trial(number=0, step=0, state=TrialState.COMPLETE, source="start", text="Answer.", key="Answer.",
                  value=50.0, metrics={"feedback": wrong.feedback})
    shown = SolutionHistory(problem.direction, [trial])
    assert "expected 'Yes'" not in build_meta_prompt(problem, shown, MetaPromptConfig())
    assert lines[0] in build_meta_prompt(problem, shown, MetaPromptConfig(feedback=True))
