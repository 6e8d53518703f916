"""``llmopt baselines cap-set``: the greedy cap set with the trivial and with random priorities.

The classical reference for FunSearch's cap set problem is the same greedy skeleton the model's
programs run (``problems/cap_set/initial.py``), ordered by the trivial priority (lexicographic order)
and by random priorities: random search over priority functions, the best of ``orders`` uniformly
random orders. Every set found is verified by the evaluator's own check before it is reported.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmopt.experiments.compare import Reference
from llmopt.experiments.report import format_table
from problems.cap_set.evaluator import FUNSEARCH_N8, PREVIOUS_BEST_N8, find_line
from problems.cap_set.initial import greedy

#: the published sizes in dimension 8, with their sources
SOURCES = (("FunSearch", FUNSEARCH_N8,
            "Romera-Paredes et al., Nature 625, 468-475 (2024), https://doi.org/10.1038/s41586-023-06924-6; "
            "https://github.com/google-deepmind/funsearch (cap_set)"),
           ("best known before FunSearch", PREVIOUS_BEST_N8, "as the FunSearch paper states it"))


@dataclass(frozen=True)
class Found:
    sizes: tuple[int, ...]   # one per order tried
    seconds: float

    @property
    def best(self) -> int:
        return max(self.sizes)


def all_vectors(n: int) -> np.ndarray:
    """{0, 1, 2}^n in lexicographic order (the skeleton's order: row k is k written in base 3)."""
    return np.array(list(itertools.product((0, 1, 2), repeat=n)), dtype=np.int64)


def _verified_size(vectors: np.ndarray) -> int:
    if find_line(vectors) is not None:  # the skeleton is ours, but a reference is checked like a candidate
        raise AssertionError("the greedy skeleton built a set with a line")
    return len(vectors)


def trivial_priority(n: int) -> Found:
    """The greedy in lexicographic order (priority 0.0 everywhere): the initial program's set."""
    began = time.perf_counter()
    vectors = all_vectors(n)
    size = _verified_size(greedy(vectors, np.arange(len(vectors))))
    return Found((size,), time.perf_counter() - began)


def random_priorities(n: int, orders: int, seed: int = 0) -> Found:
    """The greedy in ``orders`` uniformly random orders (a random priority each), seeded."""
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    vectors = all_vectors(n)
    sizes = tuple(_verified_size(greedy(vectors, rng.permutation(len(vectors)))) for _ in range(orders))
    return Found(sizes, time.perf_counter() - began)


class CLI:
    """``llmopt baselines cap-set`` (group ``llmopt.baselines``), and the reference rows of
    ``llmopt compare``'s cap-set table."""

    HELP = "the greedy cap set with the trivial and with random priorities, beside FunSearch's sizes"

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.add_argument("--dimension", type=int, default=8, help="n of {0, 1, 2}^n (default 8)")
        p.add_argument("--orders", type=int, default=100, help="random priorities (orders) tried (default 100)")
        p.add_argument("--seed", type=int, default=0, help="seed of the random orders (default 0)")

    @staticmethod
    def run(args: Any) -> int:
        if not 1 <= args.dimension <= 10 or args.orders < 1:
            print("error: --dimension must be within 1..10 and --orders at least 1")
            return 2
        trivial = trivial_priority(args.dimension)
        found = random_priorities(args.dimension, args.orders, args.seed)
        rows = [["method", "size", "seconds", "budget"],
                ["greedy, trivial priority (lexicographic)", str(trivial.best), f"{trivial.seconds:.2f}", "1 order"],
                ["greedy, random priorities (best)", str(found.best), f"{found.seconds:.1f}",
                 f"{args.orders} orders, seed {args.seed} (median {statistics.median(found.sizes):g})"]]
        if args.dimension == 8:
            rows += [[name, str(size), "-", "-"] for name, size, _ in SOURCES]
        print(format_table(rows))
        if args.dimension == 8:
            for name, _, source in SOURCES:
                print(f"{name}: {source}")
        return 0

    @staticmethod
    def references(problem: Any) -> list[Any]:
        """The trivial and random priorities in dimension 8, and the published sizes."""
        trivial = trivial_priority(8)
        found = random_priorities(8, 100, 0)
        return [Reference("greedy, trivial priority", float(trivial.best), trivial.seconds),
                Reference("greedy, best of 100 random priorities (seed 0)", float(found.best), found.seconds),
                *(Reference(name, float(size)) for name, size, _ in SOURCES)]
