"""Search spaces as JSON schemas: random draws, and the flat dimensions classical optimizers search.

A problem whose solutions have a JSON form describes them with a *bounded* JSON schema
(:meth:`Problem.search_space`; for :class:`FunctionProblem`, the user's schema). This module
reads the subset of JSON Schema that is a search space: bounded integers and numbers (with
``minimum``/``maximum`` or their exclusive forms, and ``multipleOf``), booleans, ``enum`` and
``const``, ``null``, fixed-length arrays (``prefixItems``, or ``items`` with ``minItems ==
maxItems``) and objects of these. Anything else (an unbounded number, a free string, ``anyOf``)
is a :class:`SpaceError` naming where it is and what would bound it.

The dimensions are what optuna's samplers search: one per bounded number, one categorical per
``enum`` or boolean; :func:`flatten` and :func:`unflatten` turn a JSON value into their parameters
and back. Validation (is a value in the schema?) is the ``jsonschema`` library's job, not ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

Path = tuple[str | int, ...]

#: Keywords this module understands; any other constraint would make a draw invalid, so it is refused.
_KNOWN = {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "enum", "const",
          "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
          "title", "description", "default", "examples", "$schema", "$comment", "$id", "format"}


class SpaceError(ValueError):
    """A schema that is not a bounded search space (one line: where, what, and what would fix it)."""


def pointer(path: Path) -> str:
    """The JSON pointer of a path (``/x/0``), ``/`` for the root."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "/"


def check_schema(schema: Any) -> None:
    """A valid JSON schema (draft 2020-12), else a one-line :class:`SpaceError` naming the fault."""
    if not isinstance(schema, dict):
        raise SpaceError(f"a JSON schema must be an object (a dict), got {type(schema).__name__}")
    import jsonschema  # here, not at the top: every `import llmopt` (each CLI or child process) skipped ~0.2 s

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SpaceError(f"invalid JSON schema at {pointer(tuple(exc.absolute_path))}: {exc.message}") from None


@dataclass(frozen=True)
class Dimension:
    """One searched coordinate: a bounded integer or float (``step``: multipleOf) or a choice."""

    path: Path
    kind: str  # "int", "float" or "choice"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return pointer(self.path)


def _unbounded(path: Path, what: str, fix: str) -> SpaceError:
    return SpaceError(f"the schema at {pointer(path)} is {what}, which cannot be searched or drawn from: {fix} "
                      f"(or give the problem a random_solution function, and search it with an LLM or random search)")


def _type(node: dict[str, Any], path: Path) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        if len(kind) != 1:
            raise _unbounded(path, f"of several types {kind}", "give one type, or an enum of the allowed values")
        kind = kind[0]
    return kind


def _bounds(node: dict[str, Any], path: Path, integer: bool) -> tuple[float, float, float | None]:
    """The closed bounds (and step) of a number node, exclusive bounds made inclusive."""
    low, high = node.get("minimum"), node.get("maximum")
    ex_low, ex_high = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    step = node.get("multipleOf")
    if step is not None and not float(step).is_integer() and not math.log2(step).is_integer():
        raise _unbounded(path, f"a multiple of {step}", "use a multipleOf that binary floating point holds exactly "
                         "(an integer, 0.5, 0.25, ...): validators test multipleOf in floating point, where 0.3 is "
                         "not a multiple of 0.1")
    if integer:
        step = max(1, int(step)) if step is not None and float(step).is_integer() else step
        inner_low = None if ex_low is None else math.floor(ex_low) + 1
        inner_high = None if ex_high is None else math.ceil(ex_high) - 1
    else:
        inner_low = None if ex_low is None else float(np.nextafter(ex_low, math.inf))
        inner_high = None if ex_high is None else float(np.nextafter(ex_high, -math.inf))
    if inner_low is not None:
        low = inner_low if low is None else max(low, inner_low)
    if inner_high is not None:
        high = inner_high if high is None else min(high, inner_high)
    if low is None or high is None:
        kind = "integer" if integer else "number"
        raise _unbounded(path, f"an unbounded {kind}", "give it a minimum and a maximum")
    if step is not None:
        low, high = math.ceil(low / step) * step, math.floor(high / step) * step
        if integer and isinstance(step, int):
            low, high = int(low), int(high)
    if integer and step is None:
        low, high = math.ceil(low), math.floor(high)
    if low > high:
        raise SpaceError(f"the schema at {pointer(path)} admits no value (minimum {low} > maximum {high})")
    return low, high, step


def walk(schema: dict[str, Any], path: Path = ()) -> Iterator[tuple[Path, dict[str, Any], str]]:
    """Every node of a search space, depth first: (path, node, kind) with kind one of "const",
    "enum", "boolean", "null", "integer", "number", "array", "object". Raises :class:`SpaceError`
    for a node that is not a bounded space."""
    unknown = sorted(set(schema) - _KNOWN)
    if unknown:
        raise _unbounded(path, f"constrained by {', '.join(unknown)}", "use only bounds, enum/const, fixed-length "
                                                                      "arrays and objects of these")
    if "const" in schema:
        yield path, schema, "const"
        return
    if "enum" in schema:
        yield path, schema, "enum"
        return
    kind = _type(schema, path)
    if kind in ("boolean", "null", "integer", "number"):
        if kind in ("integer", "number"):
            _bounds(schema, path, kind == "integer")
        yield path, schema, kind
    elif kind == "array":
        yield path, schema, "array"
        for i, item in enumerate(_items(schema, path)):
            yield from walk(item, (*path, i))
    elif kind == "object":
        properties = schema.get("properties") or {}
        if not properties:
            raise _unbounded(path, "an object without properties", "list its properties")
        missing = sorted(set(schema.get("required", ())) - set(properties))
        if missing:
            raise _unbounded(path, f"an object requiring undeclared properties {missing}", "declare them")
        yield path, schema, "object"
        for key, sub in properties.items():
            if not isinstance(sub, dict):
                raise _unbounded((*path, key), "not an object schema", "give it a type and bounds")
            yield from walk(sub, (*path, key))
    elif kind == "string":
        raise _unbounded(path, "a free string", "give it an enum of the allowed strings")
    else:
        raise _unbounded(path, f"of type {kind!r}" if kind else "without a type",
                         "give a type: integer, number, boolean, array or object, or an enum")


def _items(node: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    prefix = node.get("prefixItems")
    if prefix is not None:
        if node.get("items") not in (None, False):
            raise _unbounded(path, "an array with prefixItems and more items", 'set "items": false')
        return list(prefix)
    n_min, n_max, item = node.get("minItems"), node.get("maxItems"), node.get("items")
    if n_min is None or n_min != n_max or not isinstance(item, dict):
        raise _unbounded(path, "an array of varying length", "give minItems == maxItems and an items schema")
    return [item] * int(n_min)


def check_space(schema: Any) -> None:
    """A valid JSON schema that is also a bounded search space, else one :class:`SpaceError` line."""
    check_schema(schema)
    for _ in walk(schema):
        pass


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def draw(schema: dict[str, Any], rng: np.random.Generator, path: Path = ()) -> Any:
    """One uniform random JSON value of the space (uniform per coordinate), from ``rng`` only."""
    nodes = {p: (node, kind) for p, node, kind in walk(schema, path)}
    return _draw(nodes, path, rng)


def _draw(nodes: dict[Path, tuple[dict[str, Any], str]], path: Path, rng: np.random.Generator) -> Any:
    node, kind = nodes[path]
    if kind == "const":
        return node["const"]
    if kind == "enum":
        return node["enum"][int(rng.integers(len(node["enum"])))]
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "null":
        return None
    if kind in ("integer", "number"):
        low, high, step = _bounds(node, path, kind == "integer")
        if step is not None:
            k = int(rng.integers(round(low / step), round(high / step) + 1))
            return _python(k * step) if kind == "number" or not isinstance(step, int) else k * step
        if kind == "integer":
            return int(rng.integers(int(low), int(high) + 1))
        return float(rng.uniform(low, high)) if high > low else float(low)
    if kind == "array":
        return [_draw(nodes, (*path, i), rng) for i in range(len(_items(node, path)))]
    return {key: _draw(nodes, (*path, key), rng) for key in node["properties"]}


def dimensions(schema: dict[str, Any]) -> list[Dimension]:
    """The coordinates a classical optimizer searches, in a stable order (``const`` and ``null``
    nodes are fixed and have none)."""
    out = []
    for path, node, kind in walk(schema):
        if kind == "enum":
            out.append(Dimension(path, "choice", choices=tuple(range(len(node["enum"])))))
        elif kind == "boolean":
            out.append(Dimension(path, "choice", choices=(False, True)))
        elif kind in ("integer", "number"):
            low, high, step = _bounds(node, path, kind == "integer")
            integer = kind == "integer" and (step is None or isinstance(step, int))
            out.append(Dimension(path, "int" if integer else "float", low, high, step))
    return out


def flatten(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """The parameters (by dimension name) of a JSON value of the space; a value outside the space
    (a missing key, an enum member it lacks) raises :class:`SpaceError`."""
    out = {}
    for dim in dimensions(schema):
        here = value
        for part in dim.path:
            try:
                here = here[part]
            except (KeyError, IndexError, TypeError):
                raise SpaceError(f"value has nothing at {dim.name}") from None
        if dim.kind == "choice" and dim.choices != (False, True):
            enum = _node_at(schema, dim.path)["enum"]
            matches = [i for i, member in enumerate(enum) if member == here and type(member) is type(here)]
            if not matches:
                raise SpaceError(f"value {here!r} at {dim.name} is not in its enum")
            here = matches[0]
        out[dim.name] = here
    return out


def _node_at(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    return next(node for p, node, _ in walk(schema) if p == path)


def unflatten(schema: dict[str, Any], params: dict[str, Any]) -> Any:
    """The JSON value of the space with these parameters (the inverse of :func:`flatten`)."""
    nodes = {p: (node, kind) for p, node, kind in walk(schema)}

    def build(path: Path) -> Any:
        node, kind = nodes[path]
        if kind == "const":
            return node["const"]
        if kind == "null":
            return None
        if kind == "enum":
            return node["enum"][int(params[pointer(path)])]
        if kind in ("boolean", "integer", "number"):
            value = _python(params[pointer(path)])
            return bool(value) if kind == "boolean" else value
        if kind == "array":
            return [build((*path, i)) for i in range(len(_items(node, path)))]
        return {key: build((*path, key)) for key in node["properties"]}

    return build(())


_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not float(value).is_integer() else str(int(value))


def describe(schema: dict[str, Any]) -> str:
    """A search space in a few words, for the row of a table that names what a control searched:
    ``[10, 20]² (integers)`` when every coordinate has the same bounds, else each coordinate
    (``/x in [-5, 5], /n in 1..10, /c in {'a', 'b'}``); fixed parts are left out."""
    dims = dimensions(schema)
    if not dims:
        return "a single point"
    nodes = {path: node for path, node, _ in walk(schema)}
    numeric = [d for d in dims if d.kind in ("int", "float")]
    if len(numeric) == len(dims) and len({(d.kind, d.low, d.high, d.step) for d in dims}) == 1:
        d = dims[0]
        power = str(len(dims)).translate(_SUPERSCRIPTS) if len(dims) > 1 else ""
        kind = " (integers)" if d.kind == "int" else ""
        return f"[{_number(d.low)}, {_number(d.high)}]{power}{kind}"
    parts = []
    for d in dims:
        if d.kind == "choice":
            node = nodes[d.path]
            values = node["enum"] if "enum" in node else [False, True]
            parts.append(f"{d.name} in {{{', '.join(repr(v) for v in values)}}}")
        elif d.kind == "int":
            parts.append(f"{d.name} in {_number(d.low)}..{_number(d.high)}")
        else:
            parts.append(f"{d.name} in [{_number(d.low)}, {_number(d.high)}]")
    return ", ".join(parts)
