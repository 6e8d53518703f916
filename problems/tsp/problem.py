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
