"""Hypothesis strategies for testing a problem: replies that attack its decoder, and valid solutions.

Plain ``st.text()`` almost never writes a JSON object, so it misses the decoder bugs that real
replies trigger (a decoder that raises ``KeyError`` on ``'{"other": 1}'`` survives 1,000 of its
examples). :func:`replies` starts from what the problem itself says a good answer looks like (its
encodings, its answer schema, its search space) and breaks it the ways language models do: keys
dropped, renamed or added, values of the wrong type, numbers out of range or beyond floats,
``NaN``, truncated JSON, code fences, prose around the answer, several answers, odd unicode.
Every example is bounded in size (the largest is one 5,000-digit number).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from llmopt.problem import ParseError, Problem, json_objects
from llmopt.seeding import stream
from llmopt.space import SpaceError, check_space, dimensions, unflatten

__all__ = ["ContractViolation", "replies", "solutions"]

_SEED = st.integers(0, 2**32 - 1)


class ContractViolation(AssertionError):
    """A property of a contract (the problem's or the proposer's) that does not hold; ``prop`` names it."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop, self.detail = prop, detail


# --- valid solutions ------------------------------------------------------------------------
def _random_draws(problem: Problem) -> st.SearchStrategy:
    return _SEED.map(lambda s: problem.random_solution(stream(s, "contract", "random")))


def _starts(problem: Problem) -> st.SearchStrategy:
    """A starting solution of a seeded draw (a random draw where a seed gives no starts)."""

    def pick(seed_and_index: tuple[int, int]) -> Any:
        seed, index = seed_and_index
        starts = problem.initial_solutions(stream(seed, "contract", "start"))
        if not starts:
            return problem.random_solution(stream(seed, "contract", "random"))
        return starts[index % len(starts)]

    return st.tuples(_SEED, st.integers(0, 63)).map(pick)


def space_values(schema: dict[str, Any]) -> st.SearchStrategy:
    """Values of a bounded search space (:mod:`llmopt.space`), one hypothesis strategy per dimension,
    so a failure shrinks coordinate by coordinate (integers towards 0 or their lower bound)."""
    check_space(schema)
    parts: dict[str, st.SearchStrategy] = {}
    for dim in dimensions(schema):
        if dim.kind == "choice":
            parts[dim.name] = st.sampled_from(dim.choices)
        elif dim.step is not None:
            step = dim.step
            parts[dim.name] = st.integers(math.ceil(dim.low / step - 1e-9), math.floor(dim.high / step + 1e-9)).map(
                lambda k, step=step, kind=dim.kind: (k * step if kind == "int" else float(k * step)))
        elif dim.kind == "int":
            parts[dim.name] = st.integers(int(dim.low), int(dim.high))
        else:
            parts[dim.name] = st.floats(dim.low, dim.high, allow_nan=False, allow_infinity=False)
    return st.fixed_dictionaries(parts).map(lambda params: unflatten(schema, params))


def _loose(schema: Any, depth: int = 0) -> st.SearchStrategy:
    """Values shaped like a JSON schema's (types, properties, items, bounds), not guaranteed to
    satisfy every keyword: seeds for hostile replies where exact generation is not available."""
    if not isinstance(schema, dict) or depth > 4:
        return st.none()
    if "const" in schema:
        return st.just(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return st.sampled_from(schema["enum"])
    choices = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(choices, list) and choices:
        return st.one_of(*(_loose(c, depth + 1) for c in choices))
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        return st.one_of(*(_loose({**schema, "type": k}, depth + 1) for k in kind)) if kind else st.none()
    if kind == "integer":
        return st.integers(_int(schema.get("minimum")), _int(schema.get("maximum")))
    if kind == "number":
        return st.floats(_float(schema.get("minimum")), _float(schema.get("maximum")), allow_nan=False,
                         allow_infinity=False)
    if kind == "string":
        low = _int(schema.get("minLength")) or 0
        return st.text(min_size=min(low, 40), max_size=max(min(low, 40), min(_int(schema.get("maxLength")) or 20, 40)))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return _loose_array(schema, depth)
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [k for k in schema.get("required", ()) if isinstance(k, str)]
        return st.fixed_dictionaries({k: _loose(props.get(k), depth + 1) for k in required},
                                     optional={k: _loose(v, depth + 1) for k, v in props.items() if k not in required})
    return st.none()


def _loose_array(schema: dict[str, Any], depth: int) -> st.SearchStrategy:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return st.tuples(*(_loose(p, depth + 1) for p in prefix)).map(list)
    low = min(_int(schema.get("minItems")) or 0, 64)
    high = max(low, min(_int(schema.get("maxItems")) or low + 4, 64))
    return st.lists(_loose(schema.get("items", {}), depth + 1), min_size=low, max_size=high)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def schema_values(schema: Any) -> st.SearchStrategy | None:
    """Values of a JSON schema: exact for a bounded search space, else values of the schema's shape
    (hypothesis-jsonschema 0.23 would be the tool, but it cannot draw objects with hypothesis 6.170:
    it calls an internal, ``many.more``, that hypothesis removed). None for no schema."""
    if not isinstance(schema, dict):
        return None
    try:
        return space_values(schema)
    except SpaceError:
        pass
    return _loose(schema)


def space_solution(problem: Problem) -> Callable[[Any], Any]:
    """``problem.from_json`` of a search-space value; a ParseError there breaks the contract."""

    def convert(value: Any) -> Any:
        try:
            return problem.from_json(value)
        except ParseError as exc:
            raise ContractViolation("search space round trip",
                                    f"from_json({value!r}) raised ParseError for a value of search_space(): "
                                    f"{exc}") from exc

    return convert


def solutions(problem: Problem) -> st.SearchStrategy:
    """Valid solutions of ``problem``: values of its search space through ``from_json`` (so failures
    shrink to small JSON), random draws and starting solutions from seeded generators."""
    parts = []
    values = schema_values(problem.search_space())
    if values is not None:
        parts.append(values.map(space_solution(problem)))
    parts += [_random_draws(problem), _starts(problem)] if problem.can_draw else [_starts(problem)]
    return st.one_of(*parts)


# --- hostile replies ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Literal:
    """Text written verbatim into JSON (numbers json.dumps cannot write: 10**400 as digits, NaN)."""

    text: str


HUGE_DIGITS = "9" * 5000  # beyond Python's int-from-text limit (4,300 digits): int() raises ValueError
_ODD_NUMBERS = ["1e308", "-1e308", "1e999", "-0.0", "0.0", "-0", "NaN", "Infinity", "-Infinity", "nan", "inf",
                "1" + "0" * 400, "-" + "1" * 30, "0x1F", "1_000", "1.5", "2.0", "1e-320", "+7", "007", "1/2", "½",
                "\uff11\uff15", "\u0661\u0665", "²", HUGE_DIGITS]
_ODD_TEXT = ["", " ", "\n", "\u200f", "\u202e", "\ufeff", "\u00a0", "\u3000", "\x00", "\t", "\u2028", "é", "ﬁ",
             "\U0001f600", "\uff5b", "\uff3b", "\\", "\"", "'", "`", "{", "}", "[", "]", ",", ":", "<", ">"]
_WORDS = ["Sure!", "Here is my answer:", "Answer:", "I think", "The answer is", "Let me think step by step.",
          "Note: the previous answer was wrong.", "```", "```json", "<answer>", "</answer>", "->", "=", "null",
          "true", "false", "None", "undefined"]
_HOSTILE = ["", " ", "\n\n", "null", "true", "0", "[]", "{}", "[{}]", '""', "{", "}", "[", "]", "NaN", "```",
            "```json\n```", "\u200f\u202e", "\ufeff{}"]
_KEYS = st.sampled_from(["other", "value", "answer", "x", "", " ", "\u0000", "Key", "solution", "id"])


def _wrong_values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=False, allow_infinity=False, width=64),
                        st.sampled_from(_ODD_NUMBERS).map(_Literal),
                        st.sampled_from(_ODD_NUMBERS).map(lambda s: s if s.isascii() else "7"))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(_KEYS, inner, max_size=2)),
                        max_leaves=6)


def _dump(value: Any) -> str:
    """JSON text of a value holding :class:`_Literal` parts (NaN and Infinity written as literals)."""
    if isinstance(value, _Literal):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)


@st.composite
def _mutated_json(draw: Any, base: st.SearchStrategy) -> Any:
    """A JSON value close to a valid answer, with one or two faults a model might make."""
    value = draw(base)
    for _ in range(draw(st.integers(1, 2))):
        value = _mutate(draw, value)
    return value


def _mutate(draw: Any, value: Any) -> Any:
    if isinstance(value, dict) and value:
        keys = list(value)
        key = draw(st.sampled_from(keys))
        how = draw(st.sampled_from(["drop", "rename", "extra", "wrong", "wrong", "wrap", "nest"]))
        out = dict(value)
        if how == "drop":
            del out[key]
        elif how == "rename":
            new = draw(st.one_of(_KEYS, st.just(key.upper()), st.just(key + "_"), st.just(f" {key}")))
            out = {(new if k == key else k): v for k, v in value.items()}
        elif how == "extra":
            out[draw(_KEYS)] = draw(_wrong_values())
        elif how == "wrong":
            out[key] = draw(_wrong_values())
        elif how == "nest":
            out[key] = _mutate(draw, value[key])
        else:
            return _wrap(draw, value)
        return out
    if isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        how = draw(st.sampled_from(["drop", "extra", "wrong", "wrong", "wrap", "nest", "empty"]))
        if how == "drop":
            return value[:i] + value[i + 1:]
        if how == "extra":
            return [*value, draw(_wrong_values())]
        if how == "wrong":
            return [*value[:i], draw(_wrong_values()), *value[i + 1:]]
        if how == "nest":
            return [*value[:i], _mutate(draw, value[i]), *value[i + 1:]]
        return [] if how == "empty" else _wrap(draw, value)
    return draw(st.one_of(_wrong_values(), st.just(value).map(lambda v: _wrap_plain(v))))


def _wrap_plain(value: Any) -> Any:
    return {"answer": value}


def _wrap(draw: Any, value: Any) -> Any:
    """The answer inside another object or array (as some models do)."""
    key = draw(_KEYS)
    return draw(st.sampled_from([{key: value}, [value], [value, value], {key: [value]}, {"result": {key: value}}]))


_NUMBER_IN_TEXT = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@st.composite
def _mutated_text(draw: Any, base: st.SearchStrategy) -> str:
    """A text answer with faults: a number replaced or removed, a piece cut out, odd characters."""
    text = draw(base)
    how = draw(st.sampled_from(["number", "number", "number", "cut", "insert", "delete", "double"]))
    numbers = list(_NUMBER_IN_TEXT.finditer(text))
    if how == "number" and numbers:
        m = draw(st.sampled_from(numbers))
        new = draw(st.one_of(st.sampled_from(_ODD_NUMBERS), st.sampled_from(["", "-", "x", "seven", ".", "1.5"]),
                             st.integers(-10**20, 10**20).map(str)))
        return text[:m.start()] + new + text[m.end():]
    if len(text) == 0:
        return draw(st.sampled_from(_ODD_TEXT))
    i = draw(st.integers(0, len(text)))
    if how == "cut":
        return text[:i]
    if how == "insert":
        return text[:i] + draw(st.sampled_from(_ODD_TEXT)) + text[i:]
    if how == "delete":
        j = draw(st.integers(i, min(len(text), i + 8)))
        return text[:i] + text[j:]
    return text[:i] + text + text[i:]


@st.composite
def _dressed(draw: Any, core: st.SearchStrategy) -> str:
    """A reply around one or more answers: prose, code fences, truncation, a second answer."""
    answers = draw(st.lists(core, min_size=1, max_size=3))
    prose = st.one_of(st.sampled_from(_WORDS), st.text(max_size=20))
    parts = []
    for answer in answers:
        if draw(st.booleans()):
            parts.append(draw(prose))
        fence = draw(st.sampled_from(["", "", "```json\n{}\n```", "```\n{}\n```", "`{}`", "**{}**", '"{}"',
                                      "<answer>{}</answer>"]))
        parts.append(fence.replace("{}", answer, 1) if fence else answer)
        if draw(st.booleans()):
            parts.append(draw(prose))
    text = draw(st.sampled_from([" ", "\n", "\n\n", ""])).join(parts)
    if draw(st.integers(0, 4)) == 0:
        text = text[:draw(st.integers(0, len(text)))]  # truncated, as at max_tokens
    return text


def replies(problem: Problem, solutions: st.SearchStrategy | None = None) -> st.SearchStrategy[str]:
    """LLM replies that attack ``problem.decode``: valid encodings and schema-shaped JSON, mutated
    (keys, types, numbers, nesting, truncation), dressed in prose and fences, mixed with arbitrary
    text. ``solutions`` (valid solutions) defaults to random draws and starting solutions."""
    valid = st.one_of(*([] if solutions is None else [solutions]), _random_draws(problem), _starts(problem))
    encodings = valid.map(problem.encode)
    json_values = [encodings.map(_as_json)]
    for schema in (problem.answer_schema(), problem.search_space()):
        values = schema_values(schema)
        if values is not None:
            json_values.append(values)
    base_json = st.one_of(*json_values)
    json_text = st.one_of(base_json.map(_dump), _mutated_json(base_json).map(_dump))
    text_answers = st.one_of(encodings, _mutated_text(encodings), _mutated_text(json_text))
    answers = st.one_of(json_text, text_answers)
    return st.one_of(st.sampled_from(_HOSTILE), encodings, answers, _dressed(answers), st.text(max_size=60),
                     st.text(st.characters(codec="utf-8"), max_size=30).map(lambda t: t + "{" + t + "}"))


def _as_json(text: str) -> Any:
    """The JSON value an encoding is or holds (its last flat object), else the text as a JSON string."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        found = json_objects(text)
        return found[-1] if found else text
