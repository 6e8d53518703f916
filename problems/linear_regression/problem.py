"""Linear regression from scores alone, as in the paper (Section 3.1) and its code.

Fifty points x = 1..50, y = w_true * x + b_true + N(0, 1); the LLM sees only (w, b) pairs and
their losses (the sum of squared errors, shown as integers), never the data or the formula
("black-box" meta-prompt). Solutions are integer pairs. A run is solved when the exact
(w_true, b_true) pair is proposed: the paper's criterion, even where noise makes a neighbouring
integer pair's loss slightly lower.

Differences from the official code, on purpose: the noise and the starting pairs come from
named streams of one seed (the official code calls ``np.random.seed(rep + 1)``), and a reply
may give the pair as ``[w, b]``, ``[w=.., b=..]`` (the paper's format) or ``w=.., b=..``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from llmopt.history import SolutionHistory, TrialState
from llmopt.problem import Direction, ParseError, Problem, clamp, json_objects
from llmopt.seeding import stream

Pair = tuple[int, int]

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_NAMED = re.compile(rf"w\s*=\s*({_NUMBER})\s*,?\s*(?:and\s+)?b\s*=\s*({_NUMBER})", re.IGNORECASE)
_PLAIN = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")
#: Larger magnitudes are refused rather than scored: their losses overflow float64 precision.
MAX_ABS = 10**9


def _json_pair(obj: dict[str, Any]) -> tuple[str, str] | None:
    w, b = obj.get("w"), obj.get("b")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (w, b)):
        return None
    return repr(w) if isinstance(w, float) else str(w), repr(b) if isinstance(b, float) else str(b)


class LinearRegression(Problem[Pair]):
    name = "linreg"
    direction = Direction.MINIMIZE
    solution_noun = "(w, b) pair"
    solution_plural = "pairs"
    value_noun = "function value"
    default_scores = "rounded"  # the paper shows integer values

    def __init__(self, *, w_true: int = 15, b_true: int = 14, num_points: int = 50, seed: int = 0,
                 num_starts: int = 5, start_range: tuple[int, int] = (10, 20),
                 random_range: tuple[int, int] | None = None) -> None:
        if num_points < 2:
            raise ValueError(f"num_points must be >= 2, got {num_points}")
        if num_starts < 0:
            raise ValueError(f"num_starts must be >= 0, got {num_starts}")
        for label, (low, high) in (("start_range", start_range), ("random_range", random_range or start_range)):
            if not low <= high:
                raise ValueError(f"{label} must be (low, high) with low <= high, got {(low, high)}")
        self.w_true, self.b_true, self.num_points, self.seed = int(w_true), int(b_true), num_points, int(seed)
        self.num_starts, self.start_range = num_starts, (int(start_range[0]), int(start_range[1]))
        self.random_range = tuple(random_range) if random_range else self.start_range
        self.x = np.arange(1, num_points + 1, dtype=float)
        noise = stream(self.seed, "linreg-noise").standard_normal(num_points)
        self.y = self.w_true * self.x + self.b_true + noise
        # Not the optimum: noise can give a neighbouring integer pair a lower loss. The optimum (the
        # best integer pair's loss) is left unknown here (Problem.optimum is None); the baselines
        # compute it as a reference row.
        self.loss_at_true_pair = float(noise @ noise)

    # --- text ----------------------------------------------------------------------------
    def describe(self) -> str:
        return ("Now you will help me minimize a function with two input variables w, b. "
                "I have some (w, b) pairs and the function values at those points.")

    def operator_context(self) -> str:
        return "Now you will help me minimize a function with two input variables w, b."

    def answer_format(self) -> str:
        return "Do not write code. The output must end with a pair [w, b], where w and b are numerical values."

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"w": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["w", "b"], "additionalProperties": False}

    def structured_answer_format(self) -> str:
        return 'Do not write code. Reply with only a JSON object of the form {"w": <integer>, "b": <integer>}.'

    def search_space(self) -> dict[str, Any]:
        """Integer pairs in the random-search box: what random search and optuna's samplers draw from."""
        low, high = self.random_range
        axis = {"type": "integer", "minimum": low, "maximum": high}
        return {"type": "object", "properties": {"w": dict(axis), "b": dict(axis)}, "required": ["w", "b"],
                "additionalProperties": False}

    def to_json(self, solution: Pair) -> dict[str, int]:
        return {"w": int(solution[0]), "b": int(solution[1])}

    def from_json(self, value: Any) -> Pair:
        try:
            pair = _json_pair(value) if isinstance(value, dict) else None
        except ValueError:  # an integer too long to write as text (over 4,300 digits)
            raise ParseError(f"pair out of range (|w|, |b| <= {MAX_ABS})") from None
        if pair is None:
            raise ParseError(f'expected {{"w": <int>, "b": <int>}}, got {value!r}'[:200])
        return self._pair(*pair)

    def encode(self, solution: Pair) -> str:
        w, b = solution
        return f"w={w}, b={b}"

    def decode(self, text: str) -> Pair:
        """A structured ``{"w": .., "b": ..}``, else the last ``[w, b]`` in the reply (the paper's
        rule), else the last ``w=.., b=..``."""
        if not isinstance(text, str):
            raise ParseError(f"expected text, got {type(text).__name__}")
        for obj in reversed(json_objects(text)):
            pair = _json_pair(obj)
            if pair is not None:
                return self._pair(*pair)
        for inner in reversed(_BRACKET.findall(text)):
            pair = _NAMED.search(inner) or _PLAIN.match(inner)
            if pair:
                return self._pair(pair.group(1), pair.group(2))
        named = _NAMED.findall(text)
        if named:
            return self._pair(*named[-1])
        raise ParseError('no (w, b) pair found: expected {"w": <int>, "b": <int>}, [w, b] or w=<number>, b=<number>')

    @staticmethod
    def _pair(w_text: str, b_text: str) -> Pair:
        w, b = float(w_text), float(b_text)
        if not (math.isfinite(w) and math.isfinite(b)) or max(abs(w), abs(b)) > MAX_ABS:
            raise ParseError(f"pair ({w_text}, {b_text}) is out of range (|w|, |b| <= {MAX_ABS})")
        return int(round(w)), int(round(b))  # the paper rounds proposals to its 0 input decimals

    def key(self, solution: Pair) -> Pair:
        return (int(solution[0]), int(solution[1]))

    # --- features (MAP-Elites) -------------------------------------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """The pair itself: w and b."""
        return ("w", "b")

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        """The random-search box widened by its span on each side (at least 10 wide), where the
        model's proposals land; a pair beyond it sits in an edge cell."""
        low, high = self.random_range
        span = max(high - low, 10)
        axis = (float(low - span), float(high + span))
        return (axis, axis)

    def features(self, solution: Pair) -> tuple[float, ...]:
        return clamp((float(solution[0]), float(solution[1])), self.feature_ranges())

    # --- search space --------------------------------------------------------------------
    def score(self, solution: Pair) -> float:
        w, b = solution
        residual = self.y - (self.x * w + b)
        return float(residual @ residual)

    def initial_solutions(self, rng: np.random.Generator) -> list[Pair]:
        """Uniform reals in the start range, rounded, duplicates dropped (as the official code)."""
        low, high = self.start_range
        pairs = np.round(rng.uniform(low, high, size=(self.num_starts, 2))).astype(int)
        seen: dict[Pair, None] = {}
        for w, b in pairs:
            seen.setdefault((int(w), int(b)), None)
        return list(seen)

    def random_solution(self, rng: np.random.Generator) -> Pair:
        low, high = self.random_range
        w, b = rng.integers(low, high + 1, size=2)
        return int(w), int(b)

    def is_solved(self, solution: Pair) -> bool:
        return tuple(solution) == (self.w_true, self.b_true)

    def targets(self) -> list[tuple[str, float]]:
        """Loss levels down to the true pair's: its loss times 1 + 10^k for k = 3, 2, 1, 0, then its loss."""
        floor = self.loss_at_true_pair
        return [(f"loss {floor * (1 + 10.0 ** k):.3g}", floor * (1 + 10.0 ** k)) for k in (3, 2, 1, 0)] + [
            ("the true pair's loss", floor)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "w_true": self.w_true, "b_true": self.b_true, "num_points": self.num_points,
                "seed": self.seed, "num_starts": self.num_starts, "start_range": list(self.start_range),
                "random_range": list(self.random_range)}

    def metrics(self, history: SolutionHistory) -> dict[str, Any]:
        solved = [t for t in history if t.ok and self.is_solved(t.solution)]
        unique = {t.key for t in history if t.state in (TrialState.COMPLETE, TrialState.DUPLICATE)}
        return {
            "exact_pair_step": solved[0].step if solved else None,
            "unique_pairs": len(unique),
            "loss_at_true_pair": self.loss_at_true_pair,
        }
