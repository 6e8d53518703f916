"""Program text: markers, code in replies, SEARCH/REPLACE edits; round trips and hostile replies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmopt.problem import ParseError
from llmopt.programs.source import (
    END,
    START,
    Template,
    apply_edits,
    canonical,
    code_in,
    diff,
    edits_in,
    normalize,
    syntax_error,
)

PROGRAM = f"""import math

{START}
def priority(x):
    return 0.0
{END}

def solve():
    return priority(1)
"""


def test_a_template_cuts_at_the_markers_and_puts_a_block_back():
    t = Template.of(PROGRAM)
    assert t.block == "def priority(x):\n    return 0.0\n"
    assert t.program(t.block) == PROGRAM
    assert t.marked
    new = t.program("def priority(x):\n    return x\n")
    assert new.startswith("import math\n\n" + START) and new.endswith(END + "\n\ndef solve():\n    return priority(1)\n")


def test_a_program_without_markers_is_all_block():
    t = Template.of("x = 1\n")
    assert (t.prefix, t.block, t.suffix, t.marked) == ("", "x = 1\n", "", False)


@pytest.mark.parametrize("program, words", [
    (f"{START}\nx=1\n", "exactly one"),
    (f"{START}\n{START}\nx=1\n{END}\n", "exactly one"),
    (f"{END}\nx=1\n{START}\n", "comes before"),
])
def test_bad_markers_are_one_clear_error(program, words):
    with pytest.raises(ValueError, match=words):
        Template.of(program)


@pytest.mark.parametrize("reply, block", [
    ("Here it is:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1\n"),
    ("```\nx = 2\n```", "x = 2\n"),
    ("```py\nx = 2\n```\nand a longer one\n```python\nx = 3\ny = 4\n```", "x = 3\ny = 4\n"),
    ("```python\ndef f():\n    return 1", "def f():\n    return 1\n"),  # cut off at max tokens
    ("x = 5", "x = 5\n"),  # no fence, but Python
    (f"```python\nimport math\n{START}\ndef priority(x):\n    return x\n{END}\n```", "def priority(x):\n    return x\n"),
])
def test_code_is_found_in_a_reply(reply, block):
    assert code_in(reply) == block


@pytest.mark.parametrize("reply, words", [
    ("I would rather not write code today.", "no code"),
    ("```python\n\n```", "empty"),
    ("", "no code"),
    ("x" * 300_000, "characters long"),
])
def test_a_reply_without_code_is_a_parse_error(reply, words):
    with pytest.raises(ParseError, match=words):
        code_in(reply)


EDIT = """I change the return value.
<<<<<<< SEARCH
    return 0.0
=======
    return float(sum(x))
>>>>>>> REPLACE
"""


def test_an_edit_applies_to_the_parent():
    parent = Template.of(PROGRAM).block
    edits = edits_in(EDIT)
    assert edits == [("    return 0.0\n", "    return float(sum(x))\n")]
    assert apply_edits(parent, edits) == "def priority(x):\n    return float(sum(x))\n"


def test_an_edit_whose_search_differs_only_in_trailing_spaces_applies():
    parent = "def f():   \n    return 1\n"
    assert apply_edits(parent, [("def f():\n    return 1\n", "def f():\n    return 2\n")]) == "def f():\n    return 2\n"


def test_an_edit_that_does_not_apply_names_itself():
    with pytest.raises(ParseError, match="edit 2 does not apply.*'return 7'"):
        apply_edits("x = 1\n", [("x = 1", "x = 2"), ("return 7\n", "return 8\n")])
    with pytest.raises(ParseError, match="edit 1 has an empty SEARCH"):
        apply_edits("x = 1\n", [("\n", "y = 2\n")])


def test_syntax_errors_and_canonical_forms():
    assert syntax_error("def f(:\n") .startswith("line 1")
    assert syntax_error("x = 1\n") is None
    assert canonical("x=1  # one\n\n") == canonical("x = 1\n")
    assert canonical("x = 1\n") != canonical("x = 2\n")
    assert "-x = 1\n+x = 2\n" in diff("x = 1\n", "x = 2\n")
    assert diff("x = 1\n", "x = 1\n") == ""


_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\r\n`<>=")
lines = st.lists(st.text(alphabet=_chars, max_size=30), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(lines)
def test_a_fenced_block_round_trips(body):
    block = normalize("\n".join(body))
    if not block.strip() or START in block or END in block:
        return
    assert code_in(f"Sure.\n```python\n{block}```\nThat is all.") == block


@settings(max_examples=60, deadline=None)
@given(lines, st.data())
def test_an_edit_of_any_line_round_trips(body, data):
    parent = normalize("\n".join(body))
    if not parent.strip():
        return
    rows = parent.splitlines()
    i = data.draw(st.integers(0, len(rows) - 1))
    if not rows[i].strip() or parent.count(rows[i]) != 1:
        return
    reply = f"<<<<<<< SEARCH\n{rows[i]}\n=======\nchanged = {i}\n>>>>>>> REPLACE\n"
    out = apply_edits(parent, edits_in(reply))
    assert out.splitlines()[i] == f"changed = {i}"
    assert out.splitlines()[:i] == rows[:i]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_is_code_or_a_parse_error(reply):
    for parse in (code_in, lambda r: apply_edits("x = 1\n", edits_in(r))):
        try:
            out = parse(reply)
        except ParseError:
            continue
        assert isinstance(out, str)
