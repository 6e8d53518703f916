"""FunSearch's cap set problem in dimension 8: a program's ``priority(el, n)`` orders the greedy
construction of a cap set in {0, 1, 2}^n, and the score is the size of the set it builds.
``evaluator`` verifies the set from scratch; ``initial.py`` is the skeleton with a trivial priority
(package data, read with :func:`initial_program`); ``cli`` is the glue for ``llmopt run cap-set``."""

from __future__ import annotations

from importlib import resources

from problems.cap_set.evaluator import FUNSEARCH_N8, PREVIOUS_BEST_N8

DESCRIPTION = (
    "A cap set in dimension n is a set of vectors in {0, 1, 2}^n with no three distinct vectors a, b, c on a "
    "line, that is with a + b + c = 0 (mod 3) in every coordinate. The program's solve(n) builds one greedily: "
    "it visits all 3^n vectors in order of decreasing priority(el, n), where el is a tuple of n integers in "
    "{0, 1, 2}, and keeps each vector that makes no line with two vectors already kept. Improve the function "
    "priority(el, n) -> float so that solve(8) returns a larger cap set; keep solve and greedy as they are. "
    "The score is the size of the returned set, verified independently; an invalid set scores 0. In "
    f"dimension 8 the trivial priority gives 256, the best known before FunSearch was {PREVIOUS_BEST_N8} and "
    f"FunSearch found {FUNSEARCH_N8}. priority is called once per vector (6561 times) and must be fast."
)


def initial_program() -> str:
    """The skeleton (solve, greedy) and the trivial priority (0.0: lexicographic order, size 2^n)."""
    return resources.files(__name__).joinpath("initial.py").read_text(encoding="utf-8")


__all__ = ["DESCRIPTION", "FUNSEARCH_N8", "PREVIOUS_BEST_N8", "initial_program"]
