"""Classical TSP baselines: valid tours, honest lengths, never below the optimum, exact where claimed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from datadir import data_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines import tsp
from problems.tsp.instances import (
    TSPInstance,
    random_instance,
    read_tsplib,
    tour_length,
)

DATA = data_dir() / "tsplib"
FAST = settings(deadline=None, max_examples=30)


@st.composite
def instances(draw: st.DrawFn, low: int = 5, high: int = 12, boxes: tuple[int, ...] = (2, 100)) -> TSPInstance:
    """Random instances; a tiny coordinate box makes coincident cities (zero distances) common."""
    n = draw(st.integers(low, high))
    seed = draw(st.integers(0, 2**31 - 1))
    box = draw(st.sampled_from(boxes))
    return random_instance(n, seed, low=-box, high=box)


def brute_force_optimum(dist: np.ndarray) -> float:
    n = dist.shape[0]
    rest = np.array(list(itertools.permutations(range(1, n))))
    tours = np.hstack([np.zeros((len(rest), 1), dtype=int), rest])
    return float(dist[tours, np.roll(tours, -1, axis=1)].sum(axis=1).min())


def every_result(inst: TSPInstance) -> list[tsp.TourResult]:
    shuffled = [0, *np.random.default_rng(inst.n).permutation(np.arange(1, inst.n)).tolist()]
    return [*tsp.all_baselines(inst, gls_time_s=0.05, exact_time_s=30.0), tsp.exact(inst, time_limit_s=30.0),
            tsp.two_opt(inst, shuffled), tsp.nearest_neighbour(inst, start=inst.n - 1)]


def assert_valid(result: tsp.TourResult, inst: TSPInstance) -> None:
    assert sorted(result.tour) == list(range(inst.n)), result.method
    assert result.tour[0] == 0, result.method
    assert result.length == tour_length(inst.dist, result.tour), result.method
    assert result.seconds >= 0.0
    assert not result.proved_optimal or result.method in ("held_karp", "exact")


@FAST
@given(instances())
def test_every_baseline_returns_a_valid_tour_with_its_true_length(inst: TSPInstance) -> None:
    results = every_result(inst)
    for result in results:
        assert_valid(result, inst)
    assert len({r.method for r in results[:9]}) == 9


@settings(deadline=None, max_examples=25)
@given(instances(high=9))
def test_no_baseline_beats_brute_force_and_the_exact_solvers_reach_it(inst: TSPInstance) -> None:
    optimum = brute_force_optimum(inst.dist)
    tolerance = 1e-9 * max(optimum, 1.0)
    for result in every_result(inst):
        assert result.length >= optimum - tolerance, result.method
    for result in (tsp.held_karp(inst), tsp.exact(inst)):
        assert result.proved_optimal
        assert result.length == pytest.approx(optimum, abs=tolerance), result.method


@pytest.mark.parametrize("name, optimum", [("eil51", 426), ("berlin52", 7542)])
def test_exact_and_lkh_reproduce_the_tsplib_optima(name: str, optimum: int) -> None:
    inst = read_tsplib(DATA / f"{name}.tsp")
    proved = tsp.exact(inst, time_limit_s=60.0)
    assert proved.proved_optimal and proved.length == optimum
    assert tsp.lkh(inst).length == optimum
    for result in (proved, tsp.lkh(inst)):
        assert_valid(result, inst)


@FAST
@given(st.integers(3, 30), st.integers(0, 2**31 - 1), st.integers(0, 29))
def test_tour_length_is_invariant_under_rotation_and_reversal(n: int, seed: int, shift: int) -> None:
    inst = random_instance(n, seed)
    tour = np.random.default_rng(seed).permutation(n).tolist()
    length = tour_length(inst.dist, tour)
    rotated = tour[shift % n:] + tour[:shift % n]
    assert tour_length(inst.dist, rotated) == pytest.approx(length, rel=1e-12)
    assert tour_length(inst.dist, tour[::-1]) == pytest.approx(length, rel=1e-12)
    assert tsp.two_opt(inst, rotated).tour[0] == 0


def test_held_karp_refuses_large_instances_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"n=20.*exact\(\)"):
        tsp.held_karp(random_instance(20, 0))


def test_exact_falls_back_to_an_unproved_tour_when_out_of_time() -> None:
    inst = random_instance(30, 3)
    result = tsp.exact(inst, time_limit_s=1e-6)
    assert_valid(result, inst)
    assert not result.proved_optimal and result.method == "exact"


@FAST
@given(instances(high=14))
def test_two_opt_ends_in_a_local_optimum_no_longer_than_its_start(inst: TSPInstance) -> None:
    start = tsp.nearest_neighbour(inst)
    tour = list(tsp.two_opt(inst, start.tour).tour)
    assert tour_length(inst.dist, tour) <= start.length + 1e-9
    best_move = min(tour_length(inst.dist, tour[:i] + tour[i:j][::-1] + tour[j:])
                    for i in range(1, inst.n) for j in range(i + 2, inst.n + 1))
    assert best_move >= tour_length(inst.dist, tour) - 1e-9 * max(1.0, inst.dist.max())


def opro_rule_by_hand(dist: np.ndarray) -> tuple[int, ...]:
    """The official OPRO insertion, restated slowly: truncated lengths, earliest city/position wins ties."""
    tour, left = [0], list(range(1, dist.shape[0]))
    while left:
        options = [(math.floor(tour_length(dist, tour[:k] + [c] + tour[k:])), k, c)
                   for c in left for k in range(1, len(tour) + 1)]
        cheapest = {c: min((v, k) for v, k, cc in options if cc == c) for c in left}
        city = max(left, key=lambda c: (cheapest[c][0], -c))
        tour.insert(cheapest[city][1], city)
        left.remove(city)
    return tuple(tour)


@settings(deadline=None, max_examples=10)
@given(instances(high=16, boxes=(100,)))  # in a tiny box, exact-integer lengths make truncation float-fragile
def test_opro_farthest_insertion_follows_the_official_rule(inst: TSPInstance) -> None:
    assert tsp.farthest_insertion_opro(inst).tour == opro_rule_by_hand(inst.dist)


def test_the_textbook_and_opro_insertion_rules_differ() -> None:
    inst = random_instance(60, 0)
    assert tsp.farthest_insertion(inst).tour != tsp.farthest_insertion_opro(inst).tour


def test_guided_local_search_needs_a_positive_time_limit() -> None:
    with pytest.raises(ValueError, match="time_limit_s"):
        tsp.ortools_guided_local_search(random_instance(5, 0), time_limit_s=0)
