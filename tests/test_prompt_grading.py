"""The answer grader, against the answer formats of the OPRO paper's evaluation.

The multiple-choice and boolean cases restate, as behaviour, the ones the paper's evaluation
code pins down in its own tests (symbols with or without brackets, option texts, an option text
inside another, booleans by meaning); the number cases are GSM8K-style replies.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from problems.prompt_optimization.grading import (
    answer_region,
    grade,
    infer_kind,
    parse_number,
    parse_options,
    predicted_bool,
    predicted_choice,
)

SUN = "From which direction does the sun rise in the morning? (A) west (B) east (C) north (D) south"
DUMMY = ("This is a (dummy) question. (A) west (B) east west (C) north (D) south\n"
         "What's the answer in (A)(B)(C)(D)?")
BBH = "Which statement is sarcastic?\nOptions:\n(A) He is generous\n(B) He is terrible"


def correct(reply: str, target: str, kind: str, question: str = "") -> bool:
    return grade(reply, target, kind, question).correct  # type: ignore[arg-type]


@pytest.mark.parametrize("target,reply,question,expected", [
    ("(A)", "a", "", True), ("(A)", "b", "", False), ("(A)", "(a)", "", True), ("(A)", "(b)", "", False),
    ("(B)", "east", SUN, True), ("(B)", "west", SUN, False), ("(B)", "b", SUN, True), ("(B)", "a", SUN, False),
    ("(B)", "b/c! ", "This is a dummy (x) question: (A) a/b$ (B) b/c! (C) c/d (D) d/a", True),
    ("B", "(b)", DUMMY, True), ("B", "(a)", DUMMY, False),
    ("B", "east west", DUMMY, True), ("A", "west", DUMMY, True),
    ("B", "east west is reported", DUMMY, True), ("A", "west is reported", DUMMY, True),
    ("A", ": west", DUMMY, True), ("A", ": west is reported", DUMMY, True), ("A", ": east", DUMMY, False),
    ("B", "west is reported", DUMMY, False), ("A", "east west is reported", DUMMY, False),
])
def test_multiple_choice_as_in_the_paper(target: str, reply: str, question: str, expected: bool) -> None:
    if not question:  # symbols alone: a question with four options
        question = "Pick one. (A) w (B) x (C) y (D) z"
    assert correct(reply, target, "choice", question) is expected


@pytest.mark.parametrize("reply,expected", [
    ("The answer is (B).", True), ("(B) He is terrible", True), ("B) He is terrible", True), ("B.", True),
    ("He is terrible", True), ("So the answer is: B", True), ("(A)", False),
    ("Both (A) and (B) ... the answer is (B)", True), ("I am not sure.", False), ("", False),
    ("He is generous. He is terrible.", False),  # two options named: no answer
])
def test_multiple_choice_bbh_replies(reply: str, expected: bool) -> None:
    assert correct(reply, "(B)", "choice", BBH) is expected


@pytest.mark.parametrize("target,reply,expected", [
    ("Yes", ":yes", True), ("Yes", "yes", True), ("True", "true", True), ("Yes", "true", True),
    ("Yes", "false", False), ("Yes", "1", True), ("Invalid", "true", False), ("Invalid", "false", True),
    ("Invalid", "1", False), ("valid", "The argument is valid.", True), ("valid", "invalid", False),
    ("No", "No, because the steps do not cancel.", True), ("No", "Yes. Then no.", False),
    ("no", "The answer is no", True), ("Yes", "Maybe", False), ("True", "", False),
    ("False", "Let's see. not ( True ) is False. So the answer is False.", True),
])
def test_booleans_by_meaning(target: str, reply: str, expected: bool) -> None:
    assert correct(reply, target, "bool") is expected


@pytest.mark.parametrize("reply,target,expected", [
    ("72", "72", True), ("She sold 72 clips.", "72", True), ("The answer is $1,080.", "1080", True),
    ("48 + 24 = 72 clips altogether", "72", True), ("It costs 18 dollars and 50 cents", "50", True),
    ("The answer is 10.\n\nQ: another question with 99", "10", True),  # the run-on question is cut
    ("The answer is 12. Let me check: 3 * 4 = 12", "12", True),
    ("The final answer is -3", "-3", True), ("between 3-5", "5", True),
    ("No numbers here", "5", False), ("39.0", "39", True), ("0.5", "0.50", True), ("7", "8", False),
    ("The answer is 5. Actually 6", "6", True), ("1,234,567", "1234567", True), ("50%", "50", True),
])
def test_numbers(reply: str, target: str, expected: bool) -> None:
    assert correct(reply, target, "number") is expected


@pytest.mark.parametrize("reply,target,expected", [
    ("apple banana cherry", "apple banana cherry", True), ("Apple, banana, cherry.", "apple banana cherry", True),
    ("banana apple cherry", "apple banana cherry", False), ("] ]", "] ]", True), ("]]", "] ]", True),
    (") ] >", ")]>", True), ("ab c", "a bc", False), ("The answer is ] }", "] }", True),
])
def test_exact_match(reply: str, target: str, expected: bool) -> None:
    assert correct(reply, target, "exact") is expected


def test_helpers() -> None:
    assert parse_options(SUN) == {"A": "west", "B": "east", "C": "north", "D": "south"}
    assert parse_options(DUMMY) == {"A": "west", "B": "east west", "C": "north", "D": "south"}
    assert parse_options("no options") == {}
    assert predicted_choice("(E)", parse_options(SUN)) is None  # not an option
    assert predicted_bool("1") is True and predicted_bool("0") is False and predicted_bool("maybe") is None
    assert parse_number("$1,234.50 in total.") == 1234.5 and parse_number("none") is None
    assert answer_region("blah. The answer is: 42") == "42"
    assert answer_region("Answer: (C)\nQ: next") == "(C)"


def test_kind_is_inferred_from_targets() -> None:
    assert infer_kind(["(A)", "(B)"]) == "choice"
    assert infer_kind(["Yes", "no"]) == "bool" and infer_kind(["valid", "invalid"]) == "bool"
    assert infer_kind(["3", "-12", "1,000"]) == "number"
    assert infer_kind(["] ]", "apple banana"]) == "exact" and infer_kind([]) == "exact"


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown answer kind 'essay'"):
        grade("x", "y", "essay")  # type: ignore[arg-type]


@settings(max_examples=1000, deadline=None)
@given(reply=st.text(), target=st.sampled_from(["(A)", "(C)", "Yes", "invalid", "72", "-3.5", "] ) >", "a b"]),
       kind=st.sampled_from(["number", "choice", "bool", "exact"]), question=st.text())
def test_grading_never_raises(reply: str, target: str, kind: str, question: str) -> None:
    result = grade(reply, target, kind, question + " (A) one (B) two (C) three")  # type: ignore[arg-type]
    assert isinstance(result.correct, bool)


@settings(max_examples=1000, deadline=None)
@given(reply=st.text(alphabet=st.sampled_from(list("0123456789,.-$% ()ABab\nQ:answer is")), max_size=80))
def test_number_and_choice_parsing_never_raise_on_hostile_text(reply: str) -> None:
    grade(reply, "1,000", "number")
    grade(reply, "(B)", "choice", SUN)
