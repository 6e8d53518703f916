"""The cap-set verifier against known caps and lines (and, property-tested, against the definition),
the evaluator's one-line reasons, and the shipped skeleton's size in dimension 8."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.cap_set import CLI, random_priorities, trivial_priority
from llmopt.testing import InProcessCandidate
from problems.cap_set import DESCRIPTION, initial_program
from problems.cap_set.evaluator import evaluate, find_line, parse_vectors

#: a cap of size 20 in dimension 4, the largest there is (found by the greedy in a random order)
CAP_20 = [[2, 0, 0, 2], [2, 0, 1, 2], [2, 1, 2, 2], [2, 2, 1, 0], [1, 1, 2, 1], [0, 0, 2, 1], [0, 0, 2, 2],
          [0, 0, 0, 0], [2, 2, 0, 1], [2, 0, 2, 1], [2, 2, 1, 1], [2, 0, 2, 0], [1, 2, 2, 1], [0, 1, 1, 1],
          [0, 1, 1, 2], [2, 2, 0, 0], [0, 1, 0, 1], [0, 1, 0, 2], [0, 2, 2, 0], [0, 0, 1, 0]]



def returning(vectors: Any) -> InProcessCandidate:
    return InProcessCandidate(f"def solve(n):\n    return {vectors!r}\n")


def with_priority(body: str) -> InProcessCandidate:
    """The shipped skeleton with another priority function (the part the model may change)."""
    source = initial_program()
    start, end = source.index("def priority"), source.index("# EVOLVE-BLOCK-END")
    return InProcessCandidate(source[:start] + body + "\n\n" + source[end:])


def is_cap_by_definition(vectors: list[tuple[int, ...]]) -> bool:
    """No three distinct vectors summing to 0 mod 3: the definition, by brute force over triples."""
    return not any(all((x + y + z) % 3 == 0 for x, y, z in zip(a, b, c))
                   for a, b, c in itertools.combinations(vectors, 3))


def test_the_largest_cap_in_dimension_4_is_accepted() -> None:
    assert is_cap_by_definition([tuple(v) for v in CAP_20])
    verdict = evaluate(returning(CAP_20), n=4)
    assert verdict["score"] == 20.0 and verdict["metrics"] == {"valid": True, "size": 20, "dimension": 4}


def test_a_product_of_caps_is_accepted() -> None:
    square = [(0, 0), (0, 1), (1, 0), (1, 1)]  # a cap of size 4 in dimension 2
    product = [list(a + b + c) for a in square for b in square for c in square]
    assert evaluate(returning(product), n=6)["score"] == 64.0


def test_a_set_with_a_line_is_refused_naming_the_three_points() -> None:
    vectors = CAP_20[:5] + [[1, 1, 1, 1], [2, 2, 2, 2]]  # with (0, 0, 0, 0): a line
    verdict = evaluate(returning(CAP_20[7:8] + vectors), n=4)
    assert verdict["score"] == 0.0
    assert verdict["feedback"] == ("vectors 0, 6 and 7 are on a line: (0,0,0,0), (1,1,1,1), (2,2,2,2) "
                                   "sum to 0 mod 3")


@pytest.mark.parametrize(("vectors", "reason"), [
    ([[0, 1, 2], [0, 1, 2]], "vectors 0 and 1 are the same: (0,1,2)"),
    ([[0, 1, 3]], "vector 0 has 3; every entry must be 0, 1 or 2"),
    ([[0, 1.0, 2]], "vector 0 has 1.0; every entry must be 0, 1 or 2"),
    ([[0, True, 2]], "vector 0 has True; every entry must be 0, 1 or 2"),
    ([[0, -1, 2]], "vector 0 has -1; every entry must be 0, 1 or 2"),
    ([[0, 1]], "vector 0 is not a sequence of 3 values: [0, 1]"),
    ([7], "vector 0 is not a sequence of 3 values: 7"),
    ("012", "solve(3) must return a list of vectors; it returned a str"),
    ([[0, 0, 0]] * 28, "solve(3) returned 28 vectors; there are only 27 in {0, 1, 2}^3"),
])
def test_what_is_not_a_set_of_vectors_is_refused(vectors: Any, reason: str) -> None:
    verdict = evaluate(returning(vectors), n=3)
    assert verdict == {"score": 0.0, "feedback": reason, "metrics": {"valid": False}}


def test_the_empty_set_is_a_cap_of_size_zero() -> None:
    assert evaluate(returning([]), n=3)["score"] == 0.0
    assert evaluate(returning([]), n=3)["metrics"]["valid"] is True


def test_a_raising_priority_scores_zero_with_its_error() -> None:
    verdict = evaluate(with_priority("def priority(el, n):\n    return el[n]"), n=3)
    assert verdict["score"] == 0.0
    assert verdict["feedback"].startswith("solve(3) failed: IndexError (candidate.py line ")


def test_the_initial_program_builds_the_lexicographic_cap_of_size_256_in_dimension_8() -> None:
    source = initial_program()
    assert "# EVOLVE-BLOCK-START" in source and "def priority(el, n)" in source
    verdict = evaluate(InProcessCandidate(source))
    assert verdict["score"] == 256.0 and "FunSearch found 512" in verdict["feedback"]
    assert "priority(el, n)" in DESCRIPTION


def test_another_priority_changes_the_set_and_it_is_still_verified() -> None:
    verdict = evaluate(with_priority("def priority(el, n):\n    return float(sum(el) % 3 == 0)"), n=4)
    assert verdict["metrics"]["valid"] is True and verdict["score"] > 0


def test_the_baselines_match_the_skeleton() -> None:
    assert trivial_priority(8).best == 256
    found = random_priorities(4, 5, seed=0)
    assert len(found.sizes) == 5 and all(10 <= size <= 20 for size in found.sizes)
    assert random_priorities(4, 5, seed=0).sizes == found.sizes


@settings(max_examples=150, deadline=None)
@given(st.sets(st.tuples(*[st.integers(0, 2)] * 3), max_size=12))
def test_the_verifier_agrees_with_the_definition(chosen: set[tuple[int, ...]]) -> None:
    vectors = sorted(chosen)
    parsed = parse_vectors([list(v) for v in vectors], 3)
    assert isinstance(parsed, np.ndarray)
    line = find_line(parsed)
    assert (line is None) == is_cap_by_definition(vectors)
    if line is not None:
        i, j, k = line
        assert len({i, j, k}) == 3 and ((parsed[i] + parsed[j] + parsed[k]) % 3 == 0).all()


def test_llmopt_baselines_cap_set_prints_the_table_with_the_published_sizes(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    CLI.add_arguments(parser)
    assert CLI.run(parser.parse_args(["--orders", "3"])) == 0
    out = capsys.readouterr().out
    assert "trivial priority" in out and " 256 " in out and " 512 " in out and " 496 " in out
    assert "https://doi.org/10.1038/s41586-023-06924-6" in out
    assert CLI.run(parser.parse_args(["--dimension", "11"])) == 2
