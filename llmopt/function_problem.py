"""A user's problem in five lines: an objective function over JSON values described by a JSON schema.

    problem = FunctionProblem(lambda s: (s["x"] - 3) ** 2 + abs(s["y"]),
                              {"type": "object", "properties": {"x": {"type": "integer", "minimum": -10, "maximum": 10},
                                                                "y": {"type": "number", "minimum": -1, "maximum": 1}}},
                              description="Minimize a function of an integer x and a number y.")

A solution is a JSON value that the schema admits. ``encode`` and ``key`` are canonical JSON (sorted
keys; a whole-valued float is written as the integer it equals, so ``3`` and ``3.0`` are one
solution); ``decode`` finds the last JSON value in a reply that the schema admits (validated by the
``jsonschema`` library; a reply with none is a :class:`ParseError` naming the failing path); the
schema is the answer schema, so structured output (a grammar for the embedded model) works as is;
starting and random solutions are drawn from the schema with the problem's generator
(:mod:`llmopt.space`) unless the user gives ``random_solution``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import re
from types import CodeType
from typing import Any, Callable, Sequence

import numpy as np

from llmopt.problem import Direction, ParseError, Problem, clamp
from llmopt.space import SpaceError, check_schema, check_space, draw, pointer

#: Replies are searched for JSON in their last this-many characters (LLM replies are capped far below).
MAX_REPLY_CHARS = 20_000
#: At most this many places in a reply (its last ones: the answer comes last) are tried as the start of a JSON value.
MAX_CANDIDATES = 1_000
#: Whole-valued floats below this magnitude are written as integers (above it, floats stay floats).
_EXACT_INTEGERS = 2.0**53
_SCALAR_START = re.compile(r'(?<![\w.\-+])(?:-?\d|true\b|false\b|null\b|")')


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def canonical(value: Any) -> Any:
    """The canonical form of a JSON value: whole-valued floats as ints; non-finite numbers refused."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return int(value) if value.is_integer() and abs(value) < _EXACT_INTEGERS else value
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


def real_value(value: Any) -> float:
    """An objective's value as a float. A value that is not a real number is refused with the reason
    (TypeError), never converted: ``float("1.5")`` and ``float(True)`` would score a bug silently."""
    if isinstance(value, (bool, np.bool_, str, bytes, bytearray)) or not hasattr(type(value), "__float__"):
        raise TypeError(f"the objective returned {type(value).__name__} {_clipped(value)}, not a real number")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:  # e.g. an array of several numbers
        raise TypeError(f"the objective returned {type(value).__name__} {_clipped(value)}, not a real number "
                        f"({exc})") from None


def _clipped(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_space(schema: dict[str, Any]) -> bool:
    try:
        check_space(schema)
    except SpaceError:
        return False
    return True


def callable_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function: how a run records which objective it optimized."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))


def _code_names(code: CodeType) -> set[str]:
    """The global names a code object (and the functions and comprehensions inside it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _code_names(const)
    return names


def _code_text(code: CodeType) -> str:
    """A code object's instructions, constants and names (nested code included): a lambda's identity
    without the rest of the line it was written on."""
    consts = [_code_text(c) if isinstance(c, CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}"


def fingerprint(fn: Callable[..., Any]) -> str | None:
    """A short hash of what an objective computes: the source of its function (a lambda: its code),
    with the source of the module-level functions and classes it calls by name and the values of
    the simple constants it reads (one level deep); for a ``functools.partial`` its arguments too,
    for a callable object its class. None where Python has no source to read (a builtin). A resumed
    run whose fingerprint differs would mix the values of two functions (see :class:`Optimizer`)."""
    target: Any = inspect.unwrap(getattr(fn, "func", fn))
    parts = [repr((getattr(fn, "args", ()), getattr(fn, "keywords", {})))] if hasattr(fn, "func") else []
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isclass(target)):
        target = type(target)
    code = getattr(target, "__code__", None)
    try:
        parts.append(_code_text(code) if code is not None and target.__name__ == "<lambda>" else
                     inspect.getsource(target))
    except (OSError, TypeError):
        return None
    scope = getattr(target, "__globals__", {})
    for name in sorted(_code_names(code)) if code is not None else []:
        value = scope.get(name)
        if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == target.__module__:
            with contextlib.suppress(OSError, TypeError):
                parts.append(inspect.getsource(value))
        elif isinstance(value, _CONSTANTS) or isinstance(value, tuple) and all(isinstance(v, _CONSTANTS) for v in value):
            parts.append(f"{name} = {value!r}")
    return hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


def _bounds(schema: Any) -> tuple[float, float] | None:
    """(minimum, maximum) of a bounded numeric schema, else None."""
    if not isinstance(schema, dict) or schema.get("type") not in ("integer", "number"):
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        return None
    return (float(low), float(high)) if low < high else None


def numeric_variables(schema: dict[str, Any]) -> list[tuple[str, tuple[Any, ...], tuple[float, float]]]:
    """(name, path, bounds) of the bounded numeric variables a schema names, in its order: a
    number itself, an object's properties, a fixed-length array's items."""
    if _bounds(schema) is not None:
        return [("value", (), _bounds(schema))]  # type: ignore[list-item]
    props = schema.get("properties")
    if schema.get("type") == "object" and isinstance(props, dict):
        return [(str(k), (k,), b) for k, v in props.items() if (b := _bounds(v)) is not None
                and k in schema.get("required", ())]
    items, size = schema.get("items"), schema.get("minItems")
    if schema.get("type") == "array" and _bounds(items) is not None and size and size == schema.get("maxItems"):
        return [(f"x[{i}]", (i,), _bounds(items)) for i in range(int(size))]  # type: ignore[misc]
    return []


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _user_features(fn: Any, names: Sequence[str] | None,
                   ranges: Sequence[tuple[float, float]] | None) -> tuple[Callable[[Any], Sequence[float]],
                                                                          tuple[str, ...], tuple[tuple[float, float], ...]]:
    """A user's ``features=`` function with its names and ranges, checked (one-line errors)."""
    if not callable(fn):
        raise ValueError(f"features must be a function of a solution returning numbers, got {type(fn).__name__}")
    if ranges is None:
        raise ValueError("features= needs feature_ranges=[(low, high), ...], one per feature (bins need bounds)")
    try:
        bounds = tuple((float(lo), float(hi)) for lo, hi in ranges)
    except (TypeError, ValueError):
        raise ValueError(f"feature_ranges must be (low, high) pairs, got {ranges!r}"[:300]) from None
    if not bounds or any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) for lo, hi in bounds):
        raise ValueError(f"feature_ranges must be finite (low, high) pairs with low < high, got {ranges!r}"[:300])
    labels = tuple(str(n) for n in names) if names is not None else tuple(f"f{i}" for i in range(len(bounds)))
    if len(labels) != len(bounds) or len(set(labels)) != len(labels):
        raise ValueError(f"feature_names must be {len(bounds)} distinct names, one per feature range, got {names!r}")
    return fn, labels, bounds


class FunctionProblem(Problem[Any]):
    """Optimize ``objective(value) -> float`` over the JSON values ``schema`` admits. See the module docstring.

    ``random_solution(rng)`` replaces the schema's own draws (needed when the schema is not a bounded
    space, e.g. free strings); ``initial`` gives the starting solutions (default: ``num_starts``
    random draws, as the paper's warm start); ``optimum`` the best value, if known (for gaps).
    """

    def __init__(self, objective: Callable[[Any], float], schema: dict[str, Any], *, description: str,
                 direction: Direction | str = Direction.MINIMIZE, name: str = "function",
                 random_solution: Callable[[np.random.Generator], Any] | None = None,
                 initial: Sequence[Any] | None = None, num_starts: int = 5, optimum: float | None = None,
                 solution_noun: str = "solution", solution_plural: str = "solutions",
                 value_noun: str = "value", features: Callable[[Any], Sequence[float]] | None = None,
                 feature_names: Sequence[str] | None = None,
                 feature_ranges: Sequence[tuple[float, float]] | None = None) -> None:
        if not callable(objective):
            raise ValueError(f"objective must be a function of one JSON value, got {type(objective).__name__}")
        if not isinstance(description, str) or not description.strip():
            raise ValueError("description must say in words what is optimized (it opens the meta-prompt)")
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        if num_starts < 0:
            raise ValueError(f"num_starts must be >= 0, got {num_starts}")
        if random_solution is not None and not callable(random_solution):
            raise ValueError("random_solution must be a function of a numpy Generator")
        check_schema(schema)
        if random_solution is None:
            check_space(schema)  # draws come from the schema: it must be bounded (one line if not)
        self._space = schema if random_solution is None or _is_space(schema) else None
        self.objective, self.schema, self.description = objective, schema, description.strip()
        self.direction, self.name = Direction(direction), name
        self._random, self.num_starts, self._optimum = random_solution, int(num_starts), optimum
        self.solution_noun, self.solution_plural, self.value_noun = solution_noun, solution_plural, value_noun
        import jsonschema  # where used (see llmopt.space.check_schema): `import llmopt` stays light

        self._validator = jsonschema.Draft202012Validator(schema)
        self.fingerprint = fingerprint(objective)  # read now: the source as it is when the run begins
        self.initial = None if initial is None else [self._checked(v, f"initial[{i}]") for i, v in enumerate(initial)]
        self._features = _user_features(features, feature_names, feature_ranges) if features is not None else None
        if features is None and (feature_names is not None or feature_ranges is not None):
            raise ValueError("feature_names= and feature_ranges= describe a features= function: give it too")
        self._numeric = numeric_variables(schema)

    def _checked(self, value: Any, label: str) -> Any:
        """A JSON value of the schema in canonical form, else a one-line ValueError naming ``label``."""
        try:
            value = canonical(value)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        error = self._first_error(value)
        if error is not None:
            raise ValueError(f"{label} does not fit the schema: {error}")
        return value

    def _first_error(self, value: Any) -> str | None:
        from jsonschema.exceptions import best_match

        error = best_match(self._validator.iter_errors(value))
        if error is None:
            return None
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        return f"at {pointer(tuple(error.absolute_path))}: {message}"

    # --- text ----------------------------------------------------------------------------
    def describe(self) -> str:
        return self.description

    def _schema_text(self) -> str:
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)

    def answer_format(self) -> str:
        return (f"Write the new {self.solution_noun} as JSON that follows this JSON schema: {self._schema_text()} "
                f"(the last such JSON in your reply is taken).")

    def structured_answer_format(self) -> str:
        return f"Reply with only JSON that follows this JSON schema: {self._schema_text()}"

    def answer_schema(self) -> dict[str, Any]:
        return self.schema

    def encode(self, solution: Any) -> str:
        return canonical_json(solution)

    def key(self, solution: Any) -> str:
        return canonical_json(solution)

    def decode(self, text: str) -> Any:
        """The last JSON value in ``text`` that the schema admits (a whole reply, one in a code fence,
        one after prose); else :class:`ParseError` with the schema's complaint about the last JSON seen."""
        if not isinstance(text, str):
            raise ParseError(f"expected text, got {type(text).__name__}")
        text = text[-MAX_REPLY_CHARS:]
        found = self._json_values(text)
        for _, _, value in sorted(found, key=lambda f: f[0], reverse=True):  # the last answer wins
            try:
                value = canonical(value)
            except ValueError:
                continue
            if self._first_error(value) is None:
                return value
        outer = [f for f in found if not any(o[0] < f[0] < o[1] for o in found)]  # not inside another
        if outer:
            try:
                complaint = self._first_error(canonical(outer[-1][2]))
            except ValueError as exc:
                complaint = str(exc)
            raise ParseError(f"no JSON in the reply fits the schema; the last one: {complaint}")
        raise ParseError(f"no JSON value in the reply; expected JSON that follows {self._schema_text()[:300]}")

    def _json_values(self, text: str) -> list[tuple[int, int, Any]]:
        """(start, end, value) of every JSON value that starts somewhere in ``text``, in order: objects,
        arrays, and scalars too where the schema's top level may be one."""
        top = self.schema.get("type")
        brackets = "{" if top == "object" else "[" if top == "array" else "{["
        starts = {i for i, c in enumerate(text) if c in brackets}
        if top not in ("object", "array"):
            starts |= {m.start() for m in _SCALAR_START.finditer(text)}
        out = []
        for start in sorted(starts)[-MAX_CANDIDATES:]:
            try:
                value, end = _DECODER.raw_decode(text, start)
            except (ValueError, RecursionError):
                continue
            out.append((start, end, value))
        return out

    def to_json(self, solution: Any) -> Any:
        return canonical(solution)

    def from_json(self, value: Any) -> Any:
        try:
            return self._checked(value, "value")
        except ValueError as exc:
            raise ParseError(str(exc)) from None

    def search_space(self) -> dict[str, Any] | None:
        """The schema, if it is a bounded space (decided once: optuna asks for it at every proposal);
        None for free strings etc., searched by an LLM and random search only (``random_solution``)."""
        return self._space

    # --- search space --------------------------------------------------------------------
    def score(self, solution: Any) -> float:
        return real_value(self.objective(solution))

    def initial_solutions(self, rng: np.random.Generator) -> list[Any]:
        if self.initial is not None:
            return list(self.initial)
        return [self.random_solution(rng) for _ in range(self.num_starts)]

    def random_solution(self, rng: np.random.Generator) -> Any:
        if self._random is None:
            return canonical(draw(self.schema, rng))
        return self._checked(self._random(rng), "random_solution(rng)")

    def random_space(self) -> str:
        if self._random is not None:
            return f"the draws of {callable_name(self._random)}"
        return super().random_space()

    @property
    def optimum(self) -> float | None:
        return None if self._optimum is None else float(self._optimum)

    # --- features (MAP-Elites) -----------------------------------------------------------
    def feature_names(self) -> tuple[str, ...]:
        """The user's (``features=``), else the schema's bounded numeric variables (MAP-Elites bins
        the first two), else the generic measures of the text."""
        if self._features is not None:
            return self._features[1]
        return tuple(name for name, _, _ in self._numeric) or super().feature_names()

    def feature_ranges(self) -> tuple[tuple[float, float], ...]:
        if self._features is not None:
            return self._features[2]
        return tuple(bounds for _, _, bounds in self._numeric) or super().feature_ranges()

    def features(self, solution: Any) -> tuple[float, ...]:
        if self._features is not None:
            values = tuple(self._features[0](solution))
            if len(values) != len(self._features[1]):
                raise ValueError(f"features() returned {len(values)} values, feature_names has {len(self._features[1])}")
            return clamp([float(v) for v in values], self.feature_ranges())
        if not self._numeric:
            return super().features(solution)
        return clamp([float(_at(solution, path)) for _, path, _ in self._numeric], self.feature_ranges())

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "objective": callable_name(self.objective), "fingerprint": self.fingerprint,
                "schema": self.schema,
                "description": self.description, "direction": self.direction.value, "num_starts": self.num_starts,
                "initial": self.initial,
                "random_solution": None if self._random is None else callable_name(self._random),
                "optimum": self.optimum,
                **({"features": callable_name(self._features[0])} if self._features is not None else {})}
