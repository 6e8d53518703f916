"""Classical TSP solvers: the yardsticks every OPRO tour is measured against.

Each solver takes a :class:`~problems.tsp_instances.TSPInstance` and returns a
:class:`TourResult` (tour starting at city 0, its length under ``inst.dist``, wall time).
Only :func:`held_karp` and :func:`exact` may claim ``proved_optimal``. Heavy solvers (OR-Tools,
LKH through elkai, networkx, scipy's HiGHS) are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from problems.tsp_instances import TSPInstance, tour_length

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


def _cheapest_position(dist: np.ndarray, tour: list[int], city: int) -> int:
    """Index at which inserting ``city`` lengthens the closed tour least."""
    t = np.asarray(tour)
    nxt = np.roll(t, -1)
    cost = dist[t, city] + dist[city, nxt] - dist[t, nxt]
    return int(np.argmin(cost)) + 1


# --- construction heuristics -------------------------------------------------------------

def nearest_neighbour(inst: TSPInstance, start: int = 0) -> TourResult:
    """Greedy: always walk to the closest unvisited city (the weakest sensible baseline)."""
    started = perf_counter()
    visited = np.zeros(inst.n, dtype=bool)
    tour = [start]
    visited[start] = True
    for _ in range(inst.n - 1):
        row = np.where(visited, np.inf, inst.dist[tour[-1]])
        nxt = int(np.argmin(row))
        tour.append(nxt)
        visited[nxt] = True
    return _result("nearest_neighbour", inst, tour, started)


def farthest_insertion(inst: TSPInstance) -> TourResult:
    """Textbook farthest insertion: start from city 0 and the city farthest from it; repeatedly
    take the city whose distance to the tour (to its nearest tour city) is largest and insert it
    where it lengthens the tour least."""
    started = perf_counter()
    dist = inst.dist
    first = np.where(np.arange(inst.n) == 0, -np.inf, dist[0])
    far = int(np.argmax(first))
    tour = [0, far]
    inside = np.zeros(inst.n, dtype=bool)
    inside[tour] = True
    to_tour = np.minimum(dist[0], dist[far])
    while len(tour) < inst.n:
        city = int(np.argmax(np.where(inside, -np.inf, to_tour)))
        tour.insert(_cheapest_position(dist, tour, city), city)
        inside[city] = True
        to_tour = np.minimum(to_tour, dist[city])
    return _result("farthest_insertion", inst, tour, started)


def farthest_insertion_opro(inst: TSPInstance) -> TourResult:
    """Farthest insertion as the official OPRO code does it (``solve_tsp`` in
    google-deepmind/opro ``opro/optimization/optimize_tsp.py``), which the paper's gaps use.

    It differs from the textbook rule in three ways: (1) the tour starts from city 0 alone, not
    from a pair; (2) the city chosen is the one whose *cheapest insertion* gives the longest tour
    (max over cities of the min insertion cost), not the one farthest from the tour (max of the
    min distance to a tour city); (3) candidate tour lengths are compared after ``int()``
    truncation (the official ``num_decimals=0``), so lengths within the same unit tie and the
    first position / lowest-numbered city wins. Measured here: about +11% over the optimum at
    n=100, against about +7% for :func:`farthest_insertion`.
    """
    started = perf_counter()
    dist = inst.dist
    tour = [0]
    remaining = np.arange(1, inst.n)
    while remaining.size:
        t = np.asarray(tour)
        nxt = np.roll(t, -1)
        base = tour_length(dist, tour)
        totals = np.floor(base + dist[np.ix_(remaining, t)] + dist[np.ix_(remaining, nxt)] - dist[t, nxt])
        position = totals.argmin(axis=1)  # first minimum: the official strict '<'
        pick = int(totals[np.arange(remaining.size), position].argmax())  # first maximum: strict '>'
        tour.insert(int(position[pick]) + 1, int(remaining[pick]))
        remaining = np.delete(remaining, pick)
    return _result("farthest_insertion_opro", inst, tour, started)


def christofides(inst: TSPInstance) -> TourResult:
    """networkx's Christofides (1.5-approximation) on the complete graph of the instance."""
    import networkx as nx
    from networkx.algorithms.approximation import christofides as nx_christofides

    started = perf_counter()
    graph = nx.Graph()
    i, j = np.triu_indices(inst.n, k=1)
    # built edge by edge: from_numpy_array would drop zero-length edges between coincident cities
    graph.add_weighted_edges_from(zip(i.tolist(), j.tolist(), inst.dist[i, j].tolist()))
    cycle = nx_christofides(graph, weight="weight")
    return _result("christofides", inst, cycle[:-1], started)


# --- local search ------------------------------------------------------------------------

def _two_opt_order(dist: np.ndarray, tour: Sequence[int]) -> np.ndarray:
    """Best-improvement 2-opt, one numpy pass over all n^2 moves per step; city tour[0] stays first."""
    t = np.array(tour, dtype=int)
    n = t.size
    movable = np.triu(np.ones((n, n), dtype=bool), k=2)
    movable[0, n - 1] = False  # those two edges share city t[0]
    eps = 1e-9 * max(float(dist.max()), 1.0)
    while True:
        nxt = np.roll(t, -1)
        edge = dist[t, nxt]
        delta = dist[t[:, None], t[None, :]] + dist[nxt[:, None], nxt[None, :]] - edge[:, None] - edge[None, :]
        delta = np.where(movable, delta, 0.0)
        i, j = divmod(int(delta.argmin()), n)
        if delta[i, j] >= -eps:
            return t
        t[i + 1:j + 1] = t[i + 1:j + 1][::-1]


def two_opt(inst: TSPInstance, tour: Sequence[int]) -> TourResult:
    """Improve ``tour`` with 2-opt moves until none shortens it (a local optimum)."""
    started = perf_counter()
    return _result("two_opt", inst, _two_opt_order(inst.dist, tour), started)


def nearest_neighbour_2opt(inst: TSPInstance) -> TourResult:
    """Nearest neighbour followed by 2-opt: the classic cheap-but-decent baseline."""
    started = perf_counter()
    improved = two_opt(inst, nearest_neighbour(inst).tour)
    return _result("nearest_neighbour_2opt", inst, improved.tour, started)


# --- OR-Tools ----------------------------------------------------------------------------

def _ortools(inst: TSPInstance, method: str, time_limit_s: float | None) -> TourResult:
    """One vehicle from depot 0; the distances go in as a transit matrix, not a Python callback
    (measured here: 5-6x faster local search)."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    started = perf_counter()
    manager = pywrapcp.RoutingIndexManager(inst.n, 1, 0)
    routing = pywrapcp.RoutingModel(manager)
    transit = routing.RegisterTransitMatrix(_integer_matrix(inst.dist).tolist())
    routing.SetArcCostEvaluatorOfAllVehicles(transit)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    if time_limit_s is None:
        params.solution_limit = 1  # stop at the first solution: construction only, no local search
    else:
        params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
        params.time_limit.FromMilliseconds(max(1, round(time_limit_s * 1000)))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        raise RuntimeError(f"OR-Tools found no tour for {inst.name} ({method})")
    tour, index = [], routing.Start(0)
    while not routing.IsEnd(index):
        tour.append(manager.IndexToNode(index))
        index = solution.Value(routing.NextVar(index))
    return _result(method, inst, tour, started)


def ortools_first_solution(inst: TSPInstance) -> TourResult:
    """OR-Tools' PATH_CHEAPEST_ARC construction, stopped at its first solution."""
    return _ortools(inst, "ortools_first_solution", None)


def ortools_guided_local_search(inst: TSPInstance, time_limit_s: float = 2.0) -> TourResult:
    """OR-Tools guided local search from PATH_CHEAPEST_ARC; runs for the whole time limit."""
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
    return _ortools(inst, "ortools_guided_local_search", time_limit_s)


# --- LKH ---------------------------------------------------------------------------------

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

    A heuristic tour (LKH with one run, else 2-opt) comes first: it bounds the optimum from
    above, which lets the solver drop most edges, and it is what comes back, with
    ``proved_optimal=False``, if the proof does not finish within ``time_limit_s``.
    """
    started = perf_counter()
    try:
        upper = lkh(inst, runs=1)
    except ImportError:
        upper = nearest_neighbour_2opt(inst)
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

def all_baselines(inst: TSPInstance, *, gls_time_s: float = 2.0, exact_time_s: float = 60.0) -> list[TourResult]:
    """Every heuristic, then the reference optimum (held_karp for n <= 12, else exact)."""
    results = [nearest_neighbour(inst), farthest_insertion(inst), farthest_insertion_opro(inst),
               nearest_neighbour_2opt(inst), christofides(inst), ortools_first_solution(inst),
               ortools_guided_local_search(inst, time_limit_s=gls_time_s), lkh(inst)]
    if inst.n <= EXACT_REFERENCE_MAX_N:
        results.append(held_karp(inst))
    else:
        results.append(exact(inst, time_limit_s=exact_time_s))
    return results
