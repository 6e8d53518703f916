"""llmopt.testing: the contract catches each planted bug under its own name, a correct problem it
has never seen passes, hostile replies find what plain text misses, and ScriptedLLM drives the loop."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from llmopt import Budget, LLMProposer, Optimizer, ParseError, Problem, RunStore, TrialState
from llmopt.problem import json_objects
from llmopt.testing import ProblemContract, ScriptedLLM, ScriptExhausted, check_problem, strategies
from problems.linear_regression.problem import LinearRegression

Point = tuple[int, int]
LOW, HIGH = -20, 20


class Grid(Problem[Point]):
    """A user's problem written from scratch: an integer point, JSON in and out."""

    name = "grid"
    solution_noun, solution_plural, value_noun = "point", "points", "distance"

    def describe(self) -> str:
        return "Find the integer point (x, y) closest to a hidden target."

    def answer_format(self) -> str:
        return 'Reply with a JSON object {"x": <integer>, "y": <integer>}.'

    def answer_schema(self) -> dict[str, Any]:
        axis = {"type": "integer"}
        return {"type": "object", "properties": {"x": axis, "y": axis}, "required": ["x", "y"],
                "additionalProperties": False}

    def search_space(self) -> dict[str, Any]:
        axis = {"type": "integer", "minimum": LOW, "maximum": HIGH}
        return {"type": "object", "properties": {"x": axis, "y": axis}, "required": ["x", "y"]}

    def to_json(self, p: Point) -> dict[str, int]:
        return {"x": p[0], "y": p[1]}

    def from_json(self, value: Any) -> Point:
        return self._point(value)

    def encode(self, p: Point) -> str:
        return json.dumps(self.to_json(p))

    def decode(self, text: str) -> Point:
        for obj in reversed(json_objects(text)):
            try:
                return self._point(obj)
            except ParseError:
                continue
        raise ParseError('no {"x": <int>, "y": <int>} in the reply')

    @staticmethod
    def _point(obj: Any) -> Point:
        if not isinstance(obj, dict):
            raise ParseError("not an object")
        x, y = obj.get("x"), obj.get("y")
        if not all(isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 10**6 for v in (x, y)):
            raise ParseError(f"x and y must be integers of at most 10**6, got {x!r}, {y!r}"[:200])
        return x, y

    def score(self, p: Point) -> float:
        return float((p[0] - 3) ** 2 + (p[1] + 4) ** 2)

    def initial_solutions(self, rng: np.random.Generator) -> list[Point]:
        return [self.random_solution(rng) for _ in range(3)]

    def random_solution(self, rng: np.random.Generator) -> Point:
        x, y = rng.integers(LOW, HIGH + 1, size=2)
        return int(x), int(y)

    def is_solved(self, p: Point) -> bool:
        return p == (3, -4)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "box": [LOW, HIGH]}


# --- planted bugs: each an otherwise-correct copy -----------------------------------------------
class DecodeOffByOne(Grid):
    def decode(self, text: str) -> Point:
        x, y = super().decode(text)
        return x, y + 1 if y > 5 else y


class KeyErrorDecoder(Grid):
    def decode(self, text: str) -> Point:
        for obj in json_objects(text):
            if obj:  # the first non-empty object: assumes it has both keys
                return self._point({"x": obj["x"], "y": obj["y"]})
        raise ParseError("no point")


class TypeTrustingDecoder(Grid):
    def decode(self, text: str) -> Point:
        for obj in json_objects(text):
            if "x" in obj and "y" in obj:
                return int(obj["x"]), int(obj["y"])  # TypeError on a list, ValueError on "abc", OverflowError on inf
        raise ParseError("no point")


class GlobalRandom(Grid):
    def random_solution(self, rng: np.random.Generator) -> Point:
        return int(np.random.randint(LOW, HIGH + 1)), int(np.random.randint(LOW, HIGH + 1))


class NaNScore(Grid):
    def score(self, p: Point) -> float:
        return float("nan") if p[0] == p[1] else super().score(p)


class TupleConfig(Grid):
    def config(self) -> dict[str, Any]:
        return {"name": self.name, "box": (LOW, HIGH)}


class NumpyConfig(Grid):
    def config(self) -> dict[str, Any]:
        return {"name": self.name, "box": [np.int64(LOW), HIGH]}


class SetConfig(Grid):
    def config(self) -> dict[str, Any]:
        return {"name": self.name, "box": {LOW, HIGH}}


class EmptyDescribe(Grid):
    def describe(self) -> str:
        return "  "


def test_a_correct_problem_it_has_never_seen_passes() -> None:
    check_problem(Grid())


class TestGridContract(ProblemContract):
    problem = Grid()
    max_examples = 50


@pytest.mark.parametrize("problem, prop, detail", [
    (DecodeOffByOne(), "round trip", "key"),
    (KeyErrorDecoder(), "decode raises only ParseError", "KeyError"),
    (TypeTrustingDecoder(), "decode raises only ParseError", "Error"),
    (GlobalRandom(), "starts and random draws are reproducible", "global"),
    (NaNScore(), "scores are finite", "nan"),
    (TupleConfig(), "config survives JSON", "tuple"),
    (NumpyConfig(), "config survives JSON", "int64"),
    (SetConfig(), "config survives JSON", "set"),
    (EmptyDescribe(), "text hooks are non-empty", "describe()"),
], ids=lambda v: type(v).__name__ if isinstance(v, Problem) else None)
@pytest.mark.slow
def test_each_planted_bug_is_caught_under_its_name(problem: Problem, prop: str, detail: str) -> None:
    with pytest.raises(AssertionError) as caught:
        check_problem(problem)
    message = str(caught.value)
    assert message.startswith(f"{prop}: "), message
    assert detail in message, message


def test_the_minimal_failing_example_is_in_the_message() -> None:
    with pytest.raises(AssertionError) as caught:
        check_problem(KeyErrorDecoder())
    example = re.search(r"value=('.*')", str(caught.value))
    assert example is not None, str(caught.value)
    reply = example.group(1)
    assert len(reply) < 40 and "{" in reply  # shrunk to a small object without "x" or "y"
    with pytest.raises(AssertionError, match="^round trip: "):
        check_problem(DecodeOffByOne())


def test_the_verdict_is_the_same_every_time() -> None:
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as caught:
            check_problem(KeyErrorDecoder())
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def raises_key_error(problem: Problem):
    def predicate(reply: str) -> bool:
        try:
            problem.decode(reply)
        except KeyError:
            return True
        except ParseError:
            pass
        return False

    return predicate


def test_plain_text_misses_the_key_error_hostile_replies_find() -> None:
    """Measured: 1,000 examples of st.text() never write '{"other": 1}'; replies() does at once."""
    problem = KeyErrorDecoder()
    with pytest.raises(KeyError):
        problem.decode('{"other": 1}')
    budget = settings(max_examples=1000, derandomize=True, database=None)
    with pytest.raises(NoSuchExample):
        find(st.text(), raises_key_error(problem), settings=budget)
    found = find(strategies.replies(problem), raises_key_error(problem), settings=budget)
    assert json_objects(found) and {"x", "y"} - set(json_objects(found)[0])


def test_solutions_come_from_the_search_space_and_seeded_draws() -> None:
    seen: list[Point] = []
    with pytest.raises(NoSuchExample):
        find(strategies.solutions(Grid()), lambda p: seen.append(p) or False,
             settings=settings(max_examples=100, derandomize=True, database=None))
    assert all(isinstance(p, tuple) and LOW <= p[0] <= HIGH and LOW <= p[1] <= HIGH for p in seen)
    assert len(set(seen)) > 20


def test_a_schema_value_from_json_refuses_is_a_contract_failure() -> None:
    class Narrow(Grid):
        def from_json(self, value: Any) -> Point:
            if value["x"] > 10:
                raise ParseError("too far right")
            return super().from_json(value)

    with pytest.raises(AssertionError, match="^search space round trip: from_json"):
        check_problem(Narrow())


def test_linear_regression_passes_with_no_strategy_given() -> None:
    check_problem(LinearRegression(seed=2), max_examples=100)


# --- ScriptedLLM --------------------------------------------------------------------------------
def test_a_list_script_drives_the_optimizer_and_a_bad_reply_is_invalid(tmp_path) -> None:
    replies = ['{"x": 1, "y": 1}', "I have no idea.", 'Sure: {"x": 3, "y": -4}', '{"x": 0, "y": 0}'] * 2
    llm = ScriptedLLM(replies, model="scripted/grid")
    with RunStore(tmp_path / "runs.db") as store:
        result = Optimizer(Grid(), LLMProposer(llm), seed=0, store=store, proposals_per_step=4, max_rounds=1,
                           budget=Budget(max_steps=2)).run()
    assert [c.reply for c in llm.calls] == replies[:len(llm.calls)] and len(llm.calls) >= 4
    assert all("point" in c.prompt and isinstance(c.seed, int) for c in llm.calls)
    invalid = [t for t in result.history if t.state is TrialState.INVALID]
    assert invalid and invalid[0].raw == "I have no idea." and "ParseError" in invalid[0].error
    assert result.best is not None and result.best.solution == (3, -4)
    assert all(t.source == "llm:scripted/grid" for t in result.history if t.raw is not None)


def test_a_function_script_depends_on_prompt_and_seed_only() -> None:
    def script(prompt: str, seed: int) -> str:
        return f'{{"x": {seed % 7}, "y": {len(prompt) % 5}}}'

    runs = []
    for _ in range(2):
        llm = ScriptedLLM(script)
        result = Optimizer(Grid(), LLMProposer(llm), seed=4, proposals_per_step=3, max_rounds=1,
                           budget=Budget(max_steps=2)).run()
        runs.append(([(c.seed, c.reply) for c in llm.calls], [t.key for t in result.history]))
    assert runs[0] == runs[1] and len(runs[0][0]) == 6
    one_argument = ScriptedLLM(lambda prompt: "[1]")
    assert one_argument.complete([{"role": "user", "content": "hi"}], [5])[0].text == "[1]"


def test_an_exhausted_list_raises_unless_it_cycles() -> None:
    llm = ScriptedLLM(['{"x": 1, "y": 1}'])
    with pytest.raises(ScriptExhausted, match="1 scripted replies are used up"):
        Optimizer(Grid(), LLMProposer(llm), proposals_per_step=2, max_rounds=1, budget=Budget(max_steps=1)).run()
    cycling = ScriptedLLM(["a", "b"], cycle=True)
    done = cycling.complete([{"role": "user", "content": "hi"}], [1, 2, 3])
    assert [c.text for c in done] == ["a", "b", "a"] and [c.seed for c in cycling.calls] == [1, 2, 3]


def test_a_scripted_exception_is_a_failed_call() -> None:
    llm = ScriptedLLM([RuntimeError("rate limited"), "ok"])
    first, second = llm.complete([{"role": "user", "content": "hi"}], [1, 2])
    assert first.text is None and "rate limited" in first.error and second.text == "ok"
    assert llm.with_cache(None).calls is llm.calls  # a copy (the store's cache) shares the script


def test_config_checks_name_the_value_json_does_not_keep() -> None:
    with pytest.raises(AssertionError, match=r"config\(\)\['box'\] is \(-20, 20\) \(tuple\)"):
        check_problem(TupleConfig())


def test_score_exceptions_and_nan_are_named() -> None:
    class Raising(Grid):
        def score(self, p: Point) -> float:
            return math.log(p[0])  # ValueError at 0 and below

    with pytest.raises(AssertionError, match=r"^scores are finite: score\(\(-?\d+, -?\d+\)\) raised ValueError: math"):
        check_problem(Raising())  # the input that raised is named, as the input that gave NaN is
