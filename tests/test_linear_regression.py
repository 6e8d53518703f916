from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.linear_regression import best_integer_pair, least_squares
from llmopt import ParseError
from llmopt.seeding import stream
from llmopt.testing import ProblemContract
from problems.linear_regression.problem import MAX_ABS, LinearRegression

PROBLEM = LinearRegression()
pairs = st.tuples(st.integers(-MAX_ABS, MAX_ABS), st.integers(-MAX_ABS, MAX_ABS))


@given(pairs)
def test_decode_encode_round_trips_with_equal_keys(pair: tuple[int, int]) -> None:
    decoded = PROBLEM.decode(PROBLEM.encode(pair))
    assert decoded == pair and PROBLEM.key(decoded) == PROBLEM.key(pair)


@settings(max_examples=500)
@given(st.text())
def test_decode_raises_only_parse_error(text: str) -> None:
    try:
        w, b = PROBLEM.decode(text)
    except ParseError:
        return
    assert isinstance(w, int) and isinstance(b, int)


@given(st.lists(st.sampled_from(["[", "]", "w", "=", "b", ",", "-", ".", "e", "1", "9", " ", "\n", "inf", "nan",
                                 "1e999", "and"]), max_size=40).map("".join))
def test_decode_on_pair_like_noise_raises_only_parse_error(text: str) -> None:
    try:
        PROBLEM.decode(text)
    except ParseError:
        pass


@pytest.mark.parametrize("reply, pair", [
    ("[w=15, b=14]", (15, 14)),
    ("Based on the pattern, my answer is [15, 14]", (15, 14)),
    ("Try [w=3, b=4]. Actually better: [w=16, b=13]", (16, 13)),  # the last pair, as the paper's parser
    ("[w, b] = [15.4, 13.6]", (15, 14)),  # rounded to integers, as the paper's 0 input decimals
    ("w = -2, b = 7", (-2, 7)),
    ("The pair [w=17, b=14] ... so [see above]", (17, 14)),
])
def test_decode_paper_style_replies(reply: str, pair: tuple[int, int]) -> None:
    assert PROBLEM.decode(reply) == pair


@pytest.mark.parametrize("reply", ["", "no numbers here", "[1, 2, 3]", "[w=1e400, b=2]", f"[{MAX_ABS * 10}, 1]",
                                   "w=, b=3", "[nan, 1]"])
def test_decode_rejects(reply: str) -> None:
    with pytest.raises(ParseError):
        PROBLEM.decode(reply)


def test_score_is_sum_of_squared_errors() -> None:
    p = LinearRegression(seed=4)
    x = np.arange(1, 51)
    assert p.score((15, 14)) == pytest.approx(float(np.sum((p.y - (15 * x + 14)) ** 2)))
    noise = p.y - (15 * x + 14)
    assert abs(noise.mean()) < 0.5 and 0.6 < noise.std() < 1.4  # N(0, 1) noise


def test_instances_and_starts_are_seeded() -> None:
    assert np.array_equal(LinearRegression(seed=1).y, LinearRegression(seed=1).y)
    assert not np.array_equal(LinearRegression(seed=1).y, LinearRegression(seed=2).y)
    starts = PROBLEM.initial_solutions(stream(0, "start"))
    assert starts == PROBLEM.initial_solutions(stream(0, "start"))
    assert 1 <= len(starts) <= 5 and len(set(starts)) == len(starts)
    assert all(10 <= w <= 20 and 10 <= b <= 20 for w, b in starts)


def test_random_solution_stays_in_its_box() -> None:
    p = LinearRegression(random_range=(-5, 5))
    draws = [p.random_solution(stream(0, "r", i)) for i in range(200)]
    assert all(-5 <= w <= 5 and -5 <= b <= 5 for w, b in draws) and len(set(draws)) > 50


def test_is_solved_is_the_exact_pair() -> None:
    assert PROBLEM.is_solved((15, 14)) and not PROBLEM.is_solved((15, 13))


@pytest.mark.parametrize("seed", range(5))
def test_least_squares_and_best_integer_pair(seed: int) -> None:
    p = LinearRegression(seed=seed)
    fit = least_squares(p)
    slope, intercept = np.polyfit(p.x, p.y, 1)
    assert fit.w == pytest.approx(slope) and fit.b == pytest.approx(intercept)
    (w, b), loss = best_integer_pair(p)
    brute = min(((ww, bb) for ww in range(0, 31) for bb in range(-10, 40)), key=p.score)
    assert (w, b) == brute and loss == pytest.approx(p.score(brute))
    assert loss >= fit.loss


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="num_points"):
        LinearRegression(num_points=1)
    with pytest.raises(ValueError, match="start_range"):
        LinearRegression(start_range=(20, 10))


class TestLinearRegressionContract(ProblemContract):
    problem = LinearRegression(seed=3)
    solutions = pairs


def test_from_json_refuses_out_of_range_pairs_with_a_parse_error() -> None:
    from llmopt import ParseError

    problem = LinearRegression()
    assert problem.from_json({"w": 15, "b": 14}) == (15, 14)
    for value in ({"w": 10**5000, "b": 1}, {"w": 10**20, "b": 1}, {"w": "15", "b": 14}, [15, 14], None):
        with pytest.raises(ParseError):
            problem.from_json(value)
