"""The contract every Problem must pass (import and subclass it for a new problem).

    class TestMyProblem(ProblemContract):
        problem = MyProblem(...)
        solutions = my_hypothesis_strategy

It checks what the optimizer relies on: decode(encode(s)) == s with equal keys, decode raises
only ParseError, seeded starting points and random draws that encode, finite scores, and a
configuration that survives the store's JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from llmopt import ParseError, Problem
from llmopt.seeding import stream


class ProblemContract:
    problem: ClassVar[Problem]
    solutions: ClassVar[Any]  # a hypothesis strategy of valid solutions
    replies: ClassVar[Any] = st.text()  # arbitrary LLM replies

    def test_round_trip(self) -> None:
        @settings(max_examples=300, deadline=None)
        @given(self.solutions)
        def check(solution: Any) -> None:
            text = self.problem.encode(solution)
            assert isinstance(text, str) and text
            back = self.problem.decode(text)
            assert self.problem.key(back) == self.problem.key(solution)
            assert self.problem.encode(back) == text

        check()

    def test_decode_raises_only_parse_error(self) -> None:
        @settings(max_examples=1000, deadline=None)
        @given(self.replies)
        def check(reply: str) -> None:
            try:
                solution = self.problem.decode(reply)
            except ParseError:
                return
            self.problem.encode(solution)  # whatever decodes must encode

        check()

    def test_starting_and_random_solutions_are_seeded_and_scoreable(self) -> None:
        starts = self.problem.initial_solutions(stream(7, "start"))
        assert [self.problem.key(s) for s in starts] == [
            self.problem.key(s) for s in self.problem.initial_solutions(stream(7, "start"))]
        draws = [self.problem.random_solution(stream(7, "random", i)) for i in range(20)]
        assert [self.problem.key(s) for s in draws] == [
            self.problem.key(self.problem.random_solution(stream(7, "random", i))) for i in range(20)]
        for solution in starts + draws:
            assert math.isfinite(self.problem.score(solution))
            assert self.problem.key(self.problem.decode(self.problem.encode(solution))) == self.problem.key(solution)

    def test_text_and_config(self) -> None:
        assert self.problem.describe().strip() and self.problem.answer_format().strip()
        config = self.problem.config()
        assert json.loads(json.dumps(config)) == config and config["name"] == self.problem.name
        assert self.problem.solution_noun and self.problem.solution_plural and self.problem.value_noun
