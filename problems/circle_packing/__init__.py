"""Circle packing (AlphaEvolve's benchmark): a program places 26 circles in the unit square and the
score is the sum of their radii. ``evaluator`` checks the packing; ``initial.py`` is the program the
search starts from (package data, read with :func:`initial_program`); ``cli`` is the glue for
``llmopt run circle-packing``."""

from __future__ import annotations

from importlib import resources

from problems.circle_packing.evaluator import BEST_KNOWN

DESCRIPTION = (
    "Write a Python program whose function construct_packing() returns (centers, radii) for 26 circles "
    "packed in the unit square: centers is 26 (x, y) pairs and radii is 26 positive numbers (lists or "
    "numpy arrays). Every circle must lie inside the square (x - r >= 0, x + r <= 1, and the same for y) "
    "and no two circles may overlap (the distance between two centers is at least the sum of their radii), "
    "up to a tolerance of 1e-9. The score is the sum of the radii; an invalid packing scores 0. Higher is "
    f"better; the best known sum is about {BEST_KNOWN}. The program may use numpy and scipy and must "
    "finish within the time limit."
)


def initial_program() -> str:
    """The program the search starts from: a 6 x 5 grid layout with feasible radii (sum 2.1667)."""
    return resources.files(__name__).joinpath("initial.py").read_text(encoding="utf-8")


__all__ = ["BEST_KNOWN", "DESCRIPTION", "initial_program"]
