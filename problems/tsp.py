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
from llmopt.problem import Direction, ParseError, Problem, json_objects
from problems.tsp_instances import TSPInstance, tour_length

Tour = tuple[int, ...]

_TRACE = re.compile(r"<trace>(.*?)</trace>", re.DOTALL)


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

    def __init__(self, instance: TSPInstance, *, optimum: float | None = None, optimum_proved: bool = False,
                 num_starts: int = 5, start_at_zero: bool = True) -> None:
        if num_starts < 0:
            raise ValueError(f"num_starts must be >= 0, got {num_starts}")
        self.instance, self.n = instance, instance.n
        self.optimum, self.optimum_proved = optimum, optimum_proved
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

    def answer_format(self) -> str:
        """The official code's words (its exemplars all start at 0; the prompt does not say so)."""
        return "The trace should traverse all points exactly once. The trace should start with '<trace>' and end with </trace>."

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
        try:
            items = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not re.fullmatch(r"[-+]?\d+", t))
            raise ParseError(f"trace has a non-integer entry {bad[:20]!r}") from None
        return self._check(items)

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
        gap = None
        if best is not None and self.optimum:
            gap = 100.0 * (best.value - self.optimum) / self.optimum
        return {"optimum": self.optimum, "optimum_proved": self.optimum_proved, "gap_pct": gap,
                "optimum_step": solved[0] if solved else None}


def optimum_of(instance: TSPInstance, time_limit_s: float) -> tuple[float, bool]:
    """The exact optimum (Held-Karp for small n, else the integer program), and whether it was proved."""
    from baselines import tsp as solvers

    result = solvers.held_karp(instance) if instance.n <= 12 else solvers.exact(instance, time_limit_s=time_limit_s)
    return result.length, result.proved_optimal


REFERENCE_LABELS = {"nearest_neighbour": "nearest neighbour", "farthest_insertion": "farthest insertion",
                    "nearest_neighbour_2opt": "nearest neighbour + 2-opt", "christofides": "Christofides",
                    "ortools_guided_local_search": "OR-Tools GLS (1 s)", "lkh": "LKH-3"}


class CLI:
    """``llmopt run tsp``: a generated instance (--n, --seed) or a TSPLIB file (--tsplib)."""

    HELP = "travelling salesman: LLM tours against the exact optimum (the paper's Section 3.2)"

    @staticmethod
    def add_arguments(group: Any) -> None:
        group.add_argument("--n", type=int, default=10, help="cities of a generated instance (default 10)")
        group.add_argument("--tsplib", help="a TSPLIB file instead of a generated instance, or the name of one "
                           "in tsplib/ of $LLMOPT_DATA or the package's data (eil51, berlin52)")
        group.add_argument("--truncate", action="store_true",
                           help="coordinates as the official code draws them (uniform reals cut by int())")
        group.add_argument("--num-starts", type=int, default=5, help="random starting traces (default 5)")
        group.add_argument("--any-start", action="store_true", help="accept traces that do not start at city 0")
        group.add_argument("--exact-time", type=float, default=60.0,
                           help="seconds for proving the optimum before the run, else the best known tour (default 60)")

    @staticmethod
    def from_args(args: Any) -> TravellingSalesman:
        from problems.data import tsplib_file
        from problems.tsp_instances import random_instance, read_tsplib

        instance = read_tsplib(tsplib_file(args.tsplib)) if args.tsplib else random_instance(args.n, args.seed,
                                                                                            truncate=args.truncate)
        optimum, proved = optimum_of(instance, args.exact_time)
        return TravellingSalesman(instance, optimum=optimum, optimum_proved=proved, num_starts=args.num_starts,
                                  start_at_zero=not args.any_start)

    @staticmethod
    def references(problem: TravellingSalesman) -> list[Any]:
        """The classical solvers on the run's instance: rows of ``llmopt compare``'s table."""
        from baselines import tsp as solvers
        from llmopt.compare import Reference

        results = [solvers.nearest_neighbour(problem.instance), solvers.farthest_insertion(problem.instance),
                   solvers.nearest_neighbour_2opt(problem.instance), solvers.christofides(problem.instance),
                   solvers.ortools_guided_local_search(problem.instance, time_limit_s=1.0),
                   solvers.lkh(problem.instance)]
        return [Reference(REFERENCE_LABELS.get(r.method, r.method), r.length, r.seconds, r.tour) for r in results]
