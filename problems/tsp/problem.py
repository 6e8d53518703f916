"""The travelling salesman as an OPRO problem (the paper's Section 3.2 and its code).

The meta-prompt lists the cities' coordinates as ``(i): (x, y)`` and the best traces so far as
``<trace> 0,3,1,... </trace>`` with their lengths, worst to best. A reply decodes only to a
permutation of all cities; by default it must start at city 0, as the paper requires (the
official code discards other traces). Two tours that are rotations or reversals of each other
are one tour (one dedup key). The score is the closed tour's length.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from llmopt.history import SolutionHistory
from llmopt.problem import Direction, ParseError, Problem, clamp, json_objects
from problems.tsp.instances import TSPInstance, tour_length

Tour = tuple[int, ...]

_TRACE = re.compile(r"<trace>(.*?)</trace>", re.DOTALL)
#: A city number as text (at most 18 digits: int() of a longer one can fail, and no instance has that many).
_INTEGER = re.compile(r"[-+]?\d{1,18}")


def canonical(tour: Tour) -> Tour:
    """The representative of a tour's rotations and reversals: starts at 0, smaller neighbour next."""
    i = tour.index(0)
    forward = tour[i:] + tour[:i]
    backward = (0,) + tuple(reversed(forward[1:]))
    return min(forward, backward)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class TravellingSalesman(Problem[Tour]):
    name = "tsp"
    direction = Direction.MINIMIZE
    solution_noun = "trace"
    solution_plural = "traces"
    value_noun = "length"
    value_label = "length"
    default_shown = 10  # the paper shows the 10 best traces
    default_scores = "rounded"  # the paper shows integer lengths

    def __init__(self, instance: TSPInstance, *, optimum: float | None = None, optimum_proved: bool = False,
                 num_starts: int = 5, start_at_zero: bool = True) -> None:
        if num_starts < 0:
            raise ValueError(f"num_starts must be >= 0, got {num_starts}")
        self.instance, self.n = instance, instance.n
        self._optimum, self.optimum_proved = optimum, optimum_proved
        self.num_starts, self.start_at_zero = num_starts, start_at_zero

    # --- text ----------------------------------------------------------------------------
    def describe(self) -> str:
        inst = self.instance
        if inst.coords is not None:
            points = ", ".join(f"({i}): ({_number(x)}, {_number(y)})" for i, (x, y) in enumerate(inst.coords))
            intro = f"You are given a list of points with coordinates below:\n{points}."
        else:
            rows = "\n".join(f"({i}): " + ", ".join(_number(d) for d in row) for i, row in enumerate(inst.dist))
            intro = f"You are given the distances between points below, one row per point:\n{rows}"
        return f"{intro}\n\nBelow are some previous traces and their lengths."

    def operator_context(self) -> str:
        return self.describe().rsplit("\n\n", 1)[0] + "\n\nA trace visits every point exactly once."

    def answer_format(self) -> str:
        """The official code's words (its exemplars all start at 0; the prompt does not say so)."""
        return ("The trace should traverse all points exactly once. "
                "The trace should start with '<trace>' and end with </trace>.")

    def answer_schema(self) -> dict[str, Any]:
        item = {"type": "integer", "minimum": 0, "maximum": self.n - 1}
        trace = {"type": "array", "items": item, "minItems": self.n, "maxItems": self.n}
        return {"type": "object", "properties": {"trace": trace}, "required": ["trace"], "additionalProperties": False}

    def structured_answer_format(self) -> str:
        start = ", starting at point 0" if self.start_at_zero else ""
        return (f"The trace should traverse all {self.n} points exactly once{start}. Reply with only a JSON "
                'object of the form {"trace": [0, ...]}.')

    def render(self, text: str, value: str | None) -> str:
        return text if value is None else f"{text}\n{self.value_label}:\n{value}"

    def encode(self, solution: Tour) -> str:
        return f"<trace> {','.join(map(str, solution))} </trace>"

    def decode(self, text: str) -> Tour:
        """The first ``<trace> ... </trace>`` (the paper's rule), or a JSON ``{"trace": [...]}``."""
        if not isinstance(text, str):
            raise ParseError(f"expected text, got {type(text).__name__}")
        for obj in json_objects(text):
            items = self._json_trace(obj)
            if items is not None:
                return self._check(items)
        match = _TRACE.search(text)
        if match is None:
            raise ParseError('no trace found: expected <trace> 0,1,2,... </trace> or {"trace": [...]}')
        tokens = [t.strip() for t in match.group(1).replace("\n", ",").split(",") if t.strip()]
        bad = next((t for t in tokens if not _INTEGER.fullmatch(t)), None)
        if bad is not None:  # also too many digits: int() refuses over 4,300 of them with a ValueError
            raise ParseError(f"trace has an entry of {len(bad)} digits" if bad.lstrip("+-").isdigit()
                             else f"trace has a non-integer entry {bad[:20]!r}")
        return self._check([int(t) for t in tokens])

    @staticmethod
    def _json_trace(obj: dict[str, Any]) -> list[int] | None:
        items = obj.get("trace")
        if not isinstance(items, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return None
        return items

    def _check(self, items: list[int]) -> Tour:
        if len(items) != self.n:
            raise ParseError(f"trace has {len(items)} points, the instance has {self.n}")
        if sorted(items) != list(range(self.n)):
            missing = sorted(set(range(self.n)) - set(items))[:5]
            raise ParseError(f"trace is not a permutation of 0..{self.n - 1} (missing {missing})")
        if self.start_at_zero and items[0] != 0:
            raise ParseError(f"trace starts at {items[0]}, it must start at point 0")
        return tuple(items)

    def key(self, solution: Tour) -> Tour:
        return canonical(tuple(solution))

    # --- search space --------------------------------------------------------------------
    def score(self, solution: Tour) -> float:
        return tour_length(self.instance.dist, solution)

    def _random_tour(self, rng: np.random.Generator) -> Tour:
        return (0, *(int(c) + 1 for c in rng.permutation(self.n - 1)))

    def initial_solutions(self, rng: np.random.Generator) -> list[Tour]:
        """Random traces from city 0, as the paper's starting points."""
        tours: dict[Tour, Tour] = {}
        for _ in range(self.num_starts):
            tour = self._random_tour(rng)
            tours.setdefault(self.key(tour), tour)
        return list(tours.values())

    def random_solution(self, rng: np.random.Generator) -> Tour:
        return self._random_tour(rng)

    def random_space(self) -> str:
        return f"all tours ({self.n} cities, from city 0)"

    # --- features (MAP-Elites) -------------------------------------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """The tour's self-crossings (capped at n; a 2-opt local optimum has none) where the cities
        have coordinates, its mean neighbour rank (0: every step goes to the nearest city, 1: the
        farthest), and its share of long edges (longer than the median distance between cities)."""
        base = ("neighbour_rank", "long_edges")
        return base if self.instance.coords is None else ("crossings", *base)

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        unit = ((0.0, 1.0), (0.0, 1.0))
        return unit if self.instance.coords is None else ((0.0, float(self.n)), *unit)

    def features(self, solution: Tour) -> tuple[float, ...]:
        order = np.asarray(solution, dtype=int)
        nxt = np.roll(order, -1)
        ranks = self._ranks()
        rank = float((ranks[order, nxt] + ranks[nxt, order]).mean() / (2 * max(self.n - 2, 1)))
        dist = self.instance.dist
        long = float((dist[order, nxt] > self._median()).mean())
        values = (rank, long) if self.instance.coords is None else (float(self._crossings(order)), rank, long)
        return clamp(values, self.feature_ranges())

    def _ranks(self) -> np.ndarray:
        """ranks[a, b]: b's place among a's other cities by distance (0: the nearest), computed once."""
        if getattr(self, "_rank_cache", None) is None:
            dist = self.instance.dist + np.diag(np.full(self.n, np.inf))
            self._rank_cache = np.argsort(np.argsort(dist, axis=1, kind="stable"), axis=1, kind="stable")
        return self._rank_cache  # type: ignore[no-any-return]

    def _median(self) -> float:
        """The median distance between two cities, computed once."""
        if getattr(self, "_median_cache", None) is None:
            upper = self.instance.dist[np.triu_indices(self.n, k=1)]
            self._median_cache = float(np.median(upper)) if upper.size else 0.0
        return self._median_cache  # type: ignore[return-value]

    def _crossings(self, order: np.ndarray) -> int:
        """Pairs of non-adjacent edges of the closed tour that cross (proper crossings), capped at n."""
        pts = np.asarray(self.instance.coords, dtype=float)[order]
        a, b = pts, np.roll(pts, -1, axis=0)
        i, j = np.triu_indices(len(order), k=2)
        keep = ~((i == 0) & (j == len(order) - 1))  # the first and last edges share city order[0]
        i, j = i[keep], j[keep]

        def side(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
            return np.sign((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))

        cross = ((side(a[i], b[i], a[j]) * side(a[i], b[i], b[j]) < 0)
                 & (side(a[j], b[j], a[i]) * side(a[j], b[j], b[i]) < 0))
        return min(int(cross.sum()), self.n)

    @property
    def optimum(self) -> float | None:
        """The instance's optimum as given (proved, or the best known: ``optimum_proved`` says which)."""
        return self._optimum

    def is_solved(self, solution: Tour) -> bool:
        return self.optimum is not None and self.score(solution) <= self.optimum + 1e-9 * max(1.0, self.optimum)

    def config(self) -> dict[str, Any]:
        inst = self.instance
        return {"name": self.name, "instance": inst.name, "n": self.n, "edge_weight_type": inst.edge_weight_type,
                "source": inst.source, "optimum": self.optimum, "optimum_proved": self.optimum_proved,
                "num_starts": self.num_starts, "start_at_zero": self.start_at_zero}

    def draw(self, solution: Tour, ax: Any, title: str = "") -> None:
        """The tour on the plane (for ``llmopt plot``); city 0 is the square."""
        coords = self.instance.coords
        ax.set_title(title, fontsize=8)
        if coords is None:  # an EXPLICIT-matrix TSPLIB instance has no plane to draw on
            ax.text(0.5, 0.5, "no coordinates", ha="center", va="center", transform=ax.transAxes)
            return
        closed = [*solution, solution[0]]
        ax.plot(coords[closed, 0], coords[closed, 1], "-", color="tab:blue", linewidth=1.0)
        ax.plot(coords[:, 0], coords[:, 1], "o", color="black", markersize=3)
        ax.plot(coords[solution[0], 0], coords[solution[0], 1], "s", color="tab:red", markersize=6)
        ax.set_aspect("equal")
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])

    def metrics(self, history: SolutionHistory) -> dict[str, Any]:
        best = history.best()
        solved = [t.step for t in history if t.ok and self.is_solved(t.solution)]
        gap = None if best is None else self.gap_pct(best.value)
        return {"optimum": self.optimum, "optimum_proved": self.optimum_proved, "gap_pct": gap,
                "optimum_step": solved[0] if solved else None}
