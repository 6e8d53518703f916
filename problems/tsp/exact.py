"""The proved optimum of a TSP instance: what an OPRO tour's gap is measured against.

Held-Karp dynamic programming for small instances, an integer program with lazily added
subtour-elimination cuts (scipy's HiGHS) beyond, with an LKH tour (elkai) as the upper bound.
They belong to the problem, not to the baselines: a run needs its instance's optimum (to stop
when solved, to report the gap) whether or not any baseline is compared. The classical
heuristics in :mod:`baselines.tsp` reuse :class:`TourResult` and :func:`lkh`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from problems.tsp.instances import TSPInstance, tour_length

HELD_KARP_MAX_N = 13  # 2^12 subsets x 12 end cities: well under a second
EXACT_REFERENCE_MAX_N = 12  # below this, held_karp is the reference optimum (as the report and CLI use it)
SCALE = 1000  # non-integer distances are multiplied by this and rounded for the integer-only solvers


@dataclass(frozen=True)
class TourResult:
    method: str
    tour: tuple[int, ...]  # a permutation of range(n), starting at city 0
    length: float  # tour_length(inst.dist, tour)
    seconds: float  # wall time
    proved_optimal: bool = False  # only exact solvers that proved it


# --- helpers -----------------------------------------------------------------------------

def _normalize(tour: Sequence[int]) -> tuple[int, ...]:
    """Rotate so the tour starts at city 0: one canonical form for every solver."""
    order = [int(c) for c in tour]
    k = order.index(0)
    return tuple(order[k:] + order[:k])


def _result(method: str, inst: TSPInstance, tour: Sequence[int], started: float,
            proved: bool = False) -> TourResult:
    canonical = _normalize(tour)
    if sorted(canonical) != list(range(inst.n)):
        raise RuntimeError(f"{method} returned a tour that is not a permutation of the {inst.n} cities")
    return TourResult(method, canonical, tour_length(inst.dist, canonical), perf_counter() - started, proved)


def _integer_matrix(dist: np.ndarray) -> np.ndarray:
    """Integer costs for LKH and OR-Tools, which misbehave on (or truncate) floats.

    TSPLIB distances are integers already and pass unchanged; anything else is scaled by
    ``SCALE`` and rounded (LKH with raw floats returned non-optimal tours on 12 of 30 instances).
    """
    if np.array_equal(dist, np.round(dist)):
        return dist.astype(np.int64)
    return np.rint(dist * SCALE).astype(np.int64)


def lkh(inst: TSPInstance, runs: int = 10) -> TourResult:
    """LKH-3 (Helsgaun) through elkai, on integer-scaled distances (see ``_integer_matrix``)."""
    import elkai

    started = perf_counter()
    order = elkai.DistanceMatrix(_integer_matrix(inst.dist).tolist()).solve_tsp(runs=runs)
    return _result("lkh", inst, order[:-1], started)  # elkai repeats the first city at the end


# --- exact solvers -----------------------------------------------------------------------

def held_karp(inst: TSPInstance) -> TourResult:
    """Exact dynamic programming over subsets, O(2^n n^2): the optimum for small n, no solver needed."""
    if inst.n > HELD_KARP_MAX_N:
        raise ValueError(f"held_karp is exponential (O(2^n n^2)); it accepts n <= {HELD_KARP_MAX_N}, "
                         f"got n={inst.n} ({inst.name}); use exact() for larger instances")
    started = perf_counter()
    if inst.n <= 3:
        return _result("held_karp", inst, range(inst.n), started, proved=True)
    cost, parent = _held_karp_tables(inst.dist)
    m = inst.n - 1
    mask, last = (1 << m) - 1, int(np.argmin(cost[-1] + inst.dist[0, 1:]))
    tour = []
    while last >= 0:
        tour.append(last + 1)
        mask, last = mask ^ (1 << last), int(parent[mask, last])
    return _result("held_karp", inst, [0, *reversed(tour)], started, proved=True)


def _held_karp_tables(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cost[S, k]: shortest path from city 0 through the cities in S (bit j = city j+1) ending at k."""
    m = dist.shape[0] - 1
    inner = dist[1:, 1:]
    cost = np.full((1 << m, m), np.inf)
    parent = np.full((1 << m, m), -1, dtype=np.int64)
    cities = np.arange(m)
    cost[1 << cities, cities] = dist[0, 1:]
    for mask in range(1, 1 << m):  # every subset is processed after all of its own subsets
        via = cost[mask][:, None] + inner  # via[j, k]: end at j, then go to k
        best = via.argmin(axis=0)
        outside = cities[(mask >> cities) & 1 == 0]
        grown = mask | (1 << outside)
        value = via[best[outside], outside]
        better = value < cost[grown, outside]
        cost[grown[better], outside[better]] = value[better]
        parent[grown[better], outside[better]] = best[outside[better]]
    return cost, parent


def exact(inst: TSPInstance, time_limit_s: float = 60.0) -> TourResult:
    """The proved optimum from an integer program with lazily added subtour-elimination cuts.

    A heuristic tour (LKH with one run) comes first: it bounds the optimum from
    above, which lets the solver drop most edges, and it is what comes back, with
    ``proved_optimal=False``, if the proof does not finish within ``time_limit_s``.
    """
    started = perf_counter()
    upper = lkh(inst, runs=1)
    tour = _subtour_elimination(inst.dist, upper.length, started + time_limit_s)
    if tour is None:
        return _result("exact", inst, upper.tour, started, proved=False)
    if tour_length(inst.dist, tour) > upper.length:
        tour = list(upper.tour)  # nothing shorter exists among the edges left: the known tour is optimal
    return _result("exact", inst, tour, started, proved=True)


class _EdgeModel:
    """Edge variables x_ij (i < j), the degree-2 rows, the subtour cuts found so far, and the
    edges still allowed (those not ruled out by reduced-cost fixing)."""

    def __init__(self, dist: np.ndarray) -> None:
        from scipy.sparse import csr_matrix

        self.n = dist.shape[0]
        self.i, self.j = np.triu_indices(self.n, k=1)
        self.cost = dist[self.i, self.j]
        edges = np.arange(self.i.size)
        self.degree = csr_matrix((np.ones(2 * edges.size), (np.r_[self.i, self.j], np.r_[edges, edges])),
                                 shape=(self.n, edges.size))
        self.cuts: list = []
        self.sizes: list[float] = []
        self.allowed = np.ones(edges.size)

    def cut(self, inside: np.ndarray) -> None:
        """At most |S| - 1 edges inside S (written for the smaller side: fewer nonzeros)."""
        from scipy.sparse import csr_matrix

        if inside.sum() > self.n / 2:
            inside = ~inside
        self.cuts.append(csr_matrix((inside[self.i] & inside[self.j]).astype(float)[None, :]))
        self.sizes.append(inside.sum() - 1.0)

    def relaxation(self, seconds: float) -> tuple[np.ndarray, float, np.ndarray] | None:
        """The LP optimum: (x, its value, reduced costs), or None if HiGHS stopped early."""
        from scipy.optimize import linprog
        from scipy.sparse import vstack

        cuts = vstack(self.cuts).tocsr() if self.cuts else None
        res = linprog(self.cost, A_ub=cuts, b_ub=self.sizes if self.cuts else None, A_eq=self.degree,
                      b_eq=np.full(self.n, 2.0), bounds=(0, 1), method="highs", options={"time_limit": seconds})
        return (res.x, res.fun, res.lower.marginals) if res.status == 0 else None

    def integer_solution(self, seconds: float) -> np.ndarray | None:
        """The IP optimum over the allowed edges; mip_rel_gap is tightened from HiGHS' default
        1e-4, which would not prove optimality."""
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import vstack

        rows = vstack([self.degree, *self.cuts]).tocsr()
        lower = np.r_[np.full(self.n, 2.0), np.full(len(self.cuts), -np.inf)]
        res = milp(self.cost, integrality=np.ones(self.cost.size), bounds=Bounds(0, self.allowed),
                   constraints=LinearConstraint(rows, lower, np.r_[np.full(self.n, 2.0), self.sizes]),
                   options={"time_limit": seconds, "mip_rel_gap": 1e-9})
        return res.x if res.status == 0 and res.x is not None else None


def _subtour_elimination(dist: np.ndarray, upper_bound: float, deadline: float) -> list[int] | None:
    """Exact TSP by cutting planes; None if the deadline passes first.

    First the LP relaxation is tightened with subtour cuts (components of its support, then
    Stoer-Wagner minimum cuts below 2) and every edge whose reduced cost proves it cannot be in
    a tour shorter than ``upper_bound`` is dropped; then the integer program is re-solved,
    cutting every subtour of its solution, until it is one tour. The costs are the distances as
    they are (TSPLIB: integers already; generated: floats).
    """
    model = _EdgeModel(dist)
    _tighten_relaxation(model, upper_bound, deadline)
    while (left := deadline - perf_counter()) > 0:
        x = model.integer_solution(left)
        if x is None:
            return None
        chosen = x > 0.5
        labels = _components(model.n, model.i[chosen], model.j[chosen])
        if labels.max() == 0:
            return _walk(model.n, model.i[chosen], model.j[chosen])
        largest = np.bincount(labels).argmax()
        for label in set(range(labels.max() + 1)) - {largest}:
            model.cut(labels == label)
    return None


def _tighten_relaxation(model: _EdgeModel, upper_bound: float, deadline: float, rounds: int = 200) -> None:
    """Add subtour cuts violated by the LP optimum until none is, then fix edges by reduced cost.

    Every tour using an edge with reduced cost r (at an LP optimum of value z) is at least
    z + r long; edges with z + r above the known tour's length are in no shorter tour, while
    every edge of the known tour passes, so the optimum stays reachable.
    """
    for _ in range(rounds):
        left = deadline - perf_counter()
        lp = model.relaxation(left) if left > 0 else None
        if lp is None:
            return
        x, value, reduced = lp
        sides = _violated_subtour(model, x)
        if sides is None:
            slack = 1e-6 * max(1.0, abs(upper_bound))  # well above HiGHS' tolerances
            model.allowed = (value + reduced <= upper_bound + slack).astype(float)
            return
        for side in sides:
            model.cut(side)


def _violated_subtour(model: _EdgeModel, x: np.ndarray) -> list[np.ndarray] | None:
    """Vertex sets whose subtour constraint x breaks: support components, else a minimum cut < 2."""
    import networkx as nx

    support = x > 1e-9
    labels = _components(model.n, model.i[support], model.j[support])
    if labels.max() > 0:
        return [labels == label for label in range(labels.max() + 1)]
    graph = nx.Graph()
    graph.add_weighted_edges_from(zip(model.i[support].tolist(), model.j[support].tolist(), x[support].tolist()))
    value, (side, _) = nx.stoer_wagner(graph)
    if value >= 2.0 - 1e-6:
        return None
    inside = np.zeros(model.n, dtype=bool)
    inside[side] = True
    return [inside]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _walk(n: int, a: np.ndarray, b: np.ndarray) -> list[int]:
    """The single cycle formed by the chosen edges, as a city order from city 0."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(a.tolist(), b.tolist()):
        neighbours[u].append(v)
        neighbours[v].append(u)
    tour, previous = [0], -1
    while len(tour) < n:
        here = tour[-1]
        step = neighbours[here][0] if neighbours[here][0] != previous else neighbours[here][1]
        previous = here
        tour.append(step)
    return tour


# --- everything at once ------------------------------------------------------------------


def optimum(inst: TSPInstance, time_limit_s: float = 60.0) -> TourResult:
    """The reference optimum: Held-Karp up to EXACT_REFERENCE_MAX_N cities, else :func:`exact`
    (``proved_optimal`` False if the proof did not finish within ``time_limit_s``)."""
    return held_karp(inst) if inst.n <= EXACT_REFERENCE_MAX_N else exact(inst, time_limit_s=time_limit_s)
