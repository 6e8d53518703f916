"""The circle-packing evaluator's verdicts on known packings, its one-line reasons, the shipped
initial program's exact score, and the SLSQP reference on a small instance."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from baselines.circle_packing import CLI, Budget, repair, slsqp_packing
from llmopt.testing import InProcessCandidate
from problems.circle_packing import DESCRIPTION, initial_program
from problems.circle_packing.evaluator import evaluate, first_violation, quick

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib



def program(centers: Any, radii: Any) -> InProcessCandidate:
    return InProcessCandidate(f"def construct_packing():\n    return {centers!r}, {radii!r}\n")


def square_grid(k: int) -> tuple[list[list[float]], list[float]]:
    """k x k equal circles touching their neighbours and the walls: a known sum, k / 2."""
    step = 1.0 / k
    centers = [[(i + 0.5) * step, (j + 0.5) * step] for i in range(k) for j in range(k)]
    return centers, [step / 2] * (k * k)


def test_a_valid_packing_scores_the_sum_of_its_radii() -> None:
    centers, radii = square_grid(2)
    verdict = evaluate(program(centers, radii), n=4)
    assert verdict["score"] == pytest.approx(1.0, abs=1e-15)
    assert verdict["metrics"]["valid"] is True
    assert "valid packing of 4 circles" in verdict["feedback"]


def test_overlapping_circles_score_zero_and_name_the_pair() -> None:
    verdict = evaluate(program([[0.25, 0.5], [0.6, 0.5], [0.8, 0.2]], [0.2, 0.2, 0.1]), n=3)
    assert verdict == {"score": 0.0, "feedback": "circles 0 and 1 overlap by 0.05", "metrics": {"valid": False}}
    worst = evaluate(program([[0.25, 0.5], [0.6, 0.5], [0.8, 0.5]], [0.2, 0.2, 0.1]), n=3)
    assert worst["feedback"] == "circles 1 and 2 overlap by 0.1 (2 overlapping pairs)"


def test_an_overlap_within_the_tolerance_passes_and_beyond_it_fails() -> None:
    centers = [[0.25, 0.5], [0.75, 0.5]]
    assert evaluate(program(centers, [0.25, 0.25 + 5e-10]), n=2)["score"] == pytest.approx(0.5 + 5e-10)
    verdict = evaluate(program(centers, [0.25, 0.25 + 5e-10]), n=2, tolerance=1e-10)
    assert verdict["score"] == 0.0 and verdict["feedback"].startswith("circle 1 sticks out")


def test_a_circle_outside_the_square_scores_zero() -> None:
    verdict = evaluate(program([[0.5, 0.5], [0.95, 0.1]], [0.1, 0.08]), n=2)
    assert verdict["score"] == 0.0
    assert verdict["feedback"].startswith("circle 1 sticks out of the square by 0.03")


@pytest.mark.parametrize(("centers", "radii", "reason"), [
    ([[0.5, 0.5]] * 4, [0.1] * 3, "returned 3 radii, expected 4"),
    ([[0.5, 0.5]] * 3, [0.1] * 4, "centers have shape (3, 2), expected (4, 2)"),
    ([[0.5, 0.5, 0.5]] * 4, [0.1] * 4, "centers have shape (4, 3), expected (4, 2)"),
    ([[0.5, 0.5]] * 4, "abcd", "radii are not a list of numbers"),
    ([[0.5], [0.5, 0.5]] * 2, [0.1] * 4, "centers are not a list of (x, y) numbers"),
])
def test_wrong_shapes_score_zero_with_the_reason(centers: Any, radii: Any, reason: str) -> None:
    verdict = evaluate(program(centers, radii), n=4)
    assert verdict == {"score": 0.0, "feedback": reason, "metrics": {"valid": False}}


def test_not_a_pair_is_refused() -> None:
    verdict = evaluate(InProcessCandidate("def construct_packing():\n    return 3.0\n"), n=1)
    assert verdict["score"] == 0.0 and "must return (centers, radii)" in verdict["feedback"]


def test_nan_and_infinite_numbers_score_zero() -> None:
    centers = [[0.25, 0.5], [0.75, 0.5]]
    nan = InProcessCandidate(f"def construct_packing():\n    return {centers!r}, [0.1, float('nan')]\n")
    assert evaluate(nan, n=2)["feedback"] == "radius of circle 1 is not finite: nan"
    inf = InProcessCandidate("def construct_packing():\n    return [[0.5, float('inf')], [0.2, 0.2]], [0.1, 0.1]\n")
    assert evaluate(inf, n=2)["feedback"].startswith("center of circle 0 is not finite")


def test_a_zero_or_negative_radius_scores_zero() -> None:
    verdict = evaluate(program([[0.25, 0.5], [0.75, 0.5]], [0.1, -0.1]), n=2)
    assert verdict["score"] == 0.0 and verdict["feedback"].startswith("circle 1 has radius -0.1")


def test_a_raising_candidate_scores_zero_with_its_error() -> None:
    verdict = evaluate(InProcessCandidate("def construct_packing():\n    return 1 / 0\n"))
    assert verdict["score"] == 0.0
    assert verdict["feedback"] == "construct_packing failed: ZeroDivisionError (candidate.py line 2): division by zero"


def test_the_initial_program_is_a_valid_packing_of_26_circles_summing_to_26_twelfths() -> None:
    source = initial_program()
    assert "# EVOLVE-BLOCK-START" in source and "# EVOLVE-BLOCK-END" in source
    verdict = evaluate(InProcessCandidate(source))
    assert verdict["score"] == pytest.approx(26 / 12, abs=1e-12)
    assert verdict["metrics"]["circles"] == 26 and "sum of the radii" in DESCRIPTION


def test_quick_credits_the_circles_that_break_nothing() -> None:
    centers = [[0.25, 0.25], [0.75, 0.25], [0.3, 0.75], [0.5, 0.75]]
    verdict = quick(program(centers, [0.2, 0.2, 0.15, 0.15]), n=4)  # circles 2 and 3 overlap
    assert verdict["score"] == pytest.approx(0.4)
    assert verdict["metrics"]["clean_circles"] == 2
    assert quick(InProcessCandidate(initial_program()))["score"] == pytest.approx(26 / 12, abs=1e-12)
    assert quick(program(centers, [0.1] * 3), n=4)["score"] == 0.0


def test_repair_only_shrinks_and_always_yields_a_valid_packing() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        centers = rng.uniform(0, 1, size=(8, 2))
        radii = rng.uniform(0, 0.4, size=8)
        fixed = repair(centers, radii)
        assert (fixed <= radii).all()
        assert first_violation(centers, fixed, 1e-12) is None


def test_slsqp_finds_a_valid_packing_of_three_circles() -> None:
    found = slsqp_packing(3, Budget(starts=2, max_iter=100, seed=0))
    assert found.valid_starts >= 1
    assert first_violation(found.centers, found.radii, 1e-9) is None
    assert found.value == pytest.approx(float(found.radii.sum()))
    assert found.value > 0.7  # three equal circles in a row alone give 0.5; the best known is about 0.765
    assert math.isfinite(found.seconds)


def test_llmopt_baselines_circle_packing_prints_one_row_per_budget(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    CLI.add_arguments(parser)
    assert CLI.run(parser.parse_args(["--circles", "2", "--starts", "1", "2", "--max-iter", "50"])) == 0
    out = capsys.readouterr().out
    assert "1 starts x 50 iterations, seed 0" in out and "2 starts x 50 iterations, seed 0" in out
    assert CLI.run(parser.parse_args(["--starts", "0"])) == 2


def test_both_initial_programs_are_package_data() -> None:
    """``pip install .`` (not only -e) carries the files ``initial_program()`` reads."""
    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]
    assert data["problems.circle_packing"] == ["initial.py"] and data["problems.cap_set"] == ["initial.py"]
