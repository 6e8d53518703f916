"""The embedded model's grammar bounds the numbers of a user's schema (llmopt.llm.grammar): the
grammar is expanded to a regular expression here (it has no recursion), and what it admits is
checked against the schema's bounds, value by value."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmopt.llm import embedded
from llmopt.llm.grammar import digit_range, integer_rule, number_rule, schema_grammar

SCHEMA = {"type": "object", "required": ["n", "t", "kind"], "additionalProperties": False, "properties": {
    "n": {"type": "integer", "minimum": -10, "maximum": 10},
    "t": {"type": "number", "minimum": 0, "maximum": 5},
    "kind": {"enum": ["linear", "square", "root"]}}}

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{\d+(?:,\d*)?\}|[A-Za-z][A-Za-z0-9-]*|[()|?*+]|\s+')


def _expr(body: str, rules: dict[str, str], depth: int = 0) -> str:
    """A GBNF rule body as a Python regular expression (rules expanded in place; no recursion)."""
    assert depth < 50, "recursive grammar"
    out = []
    for token in _TOKEN.findall(body):
        if token.isspace():
            continue
        if token.startswith('"'):
            out.append(re.escape(json.loads(token)))
        elif token.startswith("[") or token.startswith("{") or token in "()|?*+":
            out.append(token)
        else:
            out.append(f"(?:{_expr(rules[token], rules, depth + 1)})")
    assert "".join(_TOKEN.findall(body)).replace(" ", "") == body.replace(" ", ""), f"untokenized: {body}"
    return "".join(out)


def matcher(grammar: str, root: str = "root") -> re.Pattern[str]:
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines() if line.strip())
    return re.compile(_expr(rules[root], rules) + r"\Z")


def rule_matcher(rule: str) -> re.Pattern[str]:
    return matcher(f"root ::= {rule}\nspace ::= \" \"?")


@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 9), (3, 7), (0, 10), (5, 123), (17, 4321), (99, 1000), (123, 129)])
def test_digit_ranges_are_exact(lo: int, hi: int) -> None:
    rx = matcher(f"root ::= {digit_range(lo, hi)}")
    assert [n for n in range(0, 5000) if rx.match(str(n))] == list(range(lo, min(hi, 4999) + 1))
    assert not rx.match(f"0{max(lo, 1)}")  # no leading zeros


@settings(max_examples=60, deadline=None)
@given(st.integers(-3000, 3000), st.integers(0, 3000))
def test_an_integer_rule_admits_exactly_its_range(lo: int, width: int) -> None:
    hi = lo + width
    rx = rule_matcher(integer_rule(lo, hi))
    for n in {lo - 1, lo, lo + 1, (lo + hi) // 2, hi - 1, hi, hi + 1, 0, -1, 1, lo * 10, hi * 10}:
        assert bool(rx.match(str(n))) == (lo <= n <= hi), n
    assert not rx.match("-0") and not rx.match("1e1")


@settings(max_examples=60, deadline=None)
@given(st.floats(-1000, 1000), st.floats(0, 1000), st.floats(-1100, 1100))
def test_a_number_rule_admits_its_range_and_nothing_beyond_whole_numbers_around_it(lo: float, width: float,
                                                                                   x: float) -> None:
    hi = lo + width
    rx = rule_matcher(number_rule(lo, hi))
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    if lo <= float(text) <= hi:
        assert rx.match(text), (lo, hi, text)
    if rx.match(text):
        assert int(lo // 1) <= float(text) <= -int(-hi // 1), (lo, hi, text)


def test_the_schema_grammar_bounds_integers_and_numbers_and_keeps_the_enum() -> None:
    rx = matcher(schema_grammar(SCHEMA))
    ok = {"n": -10, "t": 5, "kind": "square"}
    assert rx.match(json.dumps(ok)) and rx.match(json.dumps(ok, separators=(",", ":")))
    assert rx.match('{"n": 3, "t": 1.75, "kind": "root"}') and rx.match('{"n": 0, "t": 0.0, "kind": "linear"}')
    for bad in ('{"n": 42, "t": 1, "kind": "root"}', '{"n": -11, "t": 1, "kind": "root"}',
                '{"n": 3, "t": 5.5, "kind": "root"}', '{"n": 3, "t": -0.5, "kind": "root"}',
                '{"n": 3, "t": 1e3, "kind": "root"}', '{"n": 3, "t": 1, "kind": "cube"}'):
        assert not rx.match(bad), bad


@pytest.mark.parametrize("schema, good, bad", [
    ({"type": "integer", "minimum": 0}, ["0", "12345"], ["-1"]),
    ({"type": "number", "minimum": 0.5}, ["0.5", "3", "12.25"], ["-0.5"]),
    ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, ["1", "2"], ["0", "3"]),
    ({"type": "number", "minimum": 0.25, "maximum": 2.5}, ["0.25", "2.5", "1"], ["3.5", "-1"]),
    ({"type": "integer"}, ["-7", "123"], ["1.5"]),
])
def test_one_sided_exclusive_and_unbounded_numbers(schema: dict[str, Any], good: list[str], bad: list[str]) -> None:
    rx = matcher(schema_grammar(schema))
    assert all(rx.match(g) for g in good), good
    assert not any(rx.match(b) for b in bad), bad


def test_the_embedded_engine_samples_with_the_bounded_grammar(monkeypatch) -> None:
    """The engine hands llama.cpp the bounded grammar (not the schema for llama-cpp-python to convert,
    whose integers are unbounded)."""
    seen: dict[str, Any] = {}

    class FakeLlama:
        def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
            seen.update(kwargs)
            return {"choices": [{"message": {"content": "{}"}}]}

    eng = embedded._Engine(embedded.Path("unused.gguf"), 512, 1)
    monkeypatch.setattr(eng, "llama", lambda: FakeLlama())
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    eng.chat([{"role": "user", "content": "n?"}], {"response_format": response_format})
    assert "response_format" not in seen
    rx = matcher(seen["grammar"]._grammar)
    assert rx.match('{"n": 10, "t": 2.5, "kind": "root"}') and not rx.match('{"n": 11, "t": 2.5, "kind": "root"}')


def test_an_embedded_models_structured_replies_are_cached_under_its_grammar(monkeypatch) -> None:
    """A reply sampled under an older grammar is never served for this one: the embedded model's cache
    key holds the grammar's version; a hosted model's key does not (its server makes its own grammar)."""
    from llmopt.llm import LLM, grammar
    from llmopt.llm.cache import cache_key

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "a number"}]

    def keys() -> tuple[str, str, str]:
        local, hosted = LLM.from_model("local/smollm2"), LLM.from_model("openai/gpt-4o-mini")
        return (cache_key(local._keyed(local.request(messages, 1, fmt))),
                cache_key(local._keyed(local.request(messages, 1))),
                cache_key(hosted._keyed(hosted.request(messages, 1, fmt))))

    before = keys()
    monkeypatch.setattr("llmopt.llm.client.GRAMMAR", grammar.GRAMMAR + "-next")
    after = keys()
    assert before[0] != after[0]  # structured, embedded: a new grammar, a new key
    assert before[1:] == after[1:]  # free text, or a hosted model: unchanged
