"""A JSON schema as the embedded model's grammar, with the numbers bounded.

llama-cpp-python turns a JSON schema into a GBNF grammar (``llama_cpp.llama_grammar``'s
``SchemaConverter``), but its numbers are any numbers: ``minimum`` and ``maximum`` are ignored (a
TODO in its source), so a small model writes ``"n": 42`` for an integer in [-10, 10] and the reply
is an INVALID trial (measured: docs/results/byop-embedded.md). Enums and constants are already
alternatives there. This module keeps that converter and replaces only the rule of a bounded
number:

* an integer with both bounds: exactly the decimal integers in the range, as digit ranges
  (``[1-9] [0-9] | "100"``), for a range of any size;
* a number with both bounds: a decimal whose integer part lies in the range widened to whole
  numbers (``[-5, 5]``: ``-5`` to ``5``, with a fraction only where it cannot leave the range;
  ``[0.5, 2.5]``: ``0`` to ``3``), no exponent; a bound the grammar cannot state exactly is
  widened, never narrowed, so every value the schema admits can still be written;
* a number or integer with only ``minimum >= 0``: no minus sign.

The grammar only steers sampling: every reply is still validated against the schema by the
problem, and a value out of bounds stays an INVALID trial with its reason, never clamped.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

#: The version of the schema-to-grammar rules below, part of an embedded model's cache key: change it
#: whenever the grammar a schema gives changes, so that no cached reply of the old grammar is served.
GRAMMAR = "llmopt-bounded-numbers-1"

#: Digits of a fraction (llama.cpp's own number rule allows up to 16).
FRACTION_DIGITS = 15
#: Bounds this large are left to llama.cpp's converter (a digit range of 16 digits and more is long
#: and buys nothing: such numbers are not exact in JSON's doubles anyway).
LARGEST = 10**15


def _same_length(lo: str, hi: str) -> list[str]:
    """GBNF sequences matching exactly the digit strings of one length from ``lo`` to ``hi``."""
    if lo == hi:
        return [f'"{lo}"']
    i = next(k for k, (a, b) in enumerate(zip(lo, hi)) if a != b)
    prefix, rest = (f'"{lo[:i]}" ' if i else ""), len(lo) - i - 1
    low, high, tail = int(lo[i]), int(hi[i]), " [0-9]" * rest
    out = []
    first, last = low, high
    if lo[i + 1:] != "0" * rest:  # the low digit's numbers start above its ...000
        out += [f'{prefix}"{low}" {s}' for s in _same_length(lo[i + 1:], "9" * rest)]
        first = low + 1
    if hi[i + 1:] != "9" * rest:  # the high digit's numbers stop below its ...999
        last = high - 1
    if first <= last:
        out.append(f"{prefix}[{first}-{last}]{tail}")
    if last < high:
        out += [f'{prefix}"{high}" {s}' for s in _same_length("0" * rest, hi[i + 1:])]
    return out


def digit_range(lo: int, hi: int) -> str:
    """A GBNF expression of the decimal integers ``lo..hi`` (``0 <= lo <= hi``), no leading zeros."""
    if not 0 <= lo <= hi:
        raise ValueError(f"digit_range needs 0 <= lo <= hi, got {lo}, {hi}")
    alternatives: list[str] = []
    while lo <= hi:
        top = min(hi, 10 ** len(str(lo)) - 1)  # one digit count at a time
        alternatives += _same_length(str(lo), str(top))
        lo = top + 1
    return "(" + " | ".join(alternatives) + ")"


def _signed(lo: int, hi: int, part: Callable[[int, int], str], negative_zero: bool = True) -> str:
    """The values ``lo..hi`` (any signs), ``part(a, b)`` the rule of the magnitudes ``a..b`` of one sign."""
    alternatives = []
    if hi >= 0:
        alternatives.append(part(max(lo, 0), hi))
    if lo < 0:
        alternatives.append(f'"-" {part(max(-hi, 0 if negative_zero else 1), -lo)}')
    return "(" + " | ".join(alternatives) + ")"


def integer_rule(lo: int, hi: int) -> str:
    """Exactly the JSON integers ``lo..hi``: no ``-0``, no leading zeros."""
    return _signed(lo, hi, digit_range, negative_zero=False) + " space"


def _fraction(zeros: bool) -> str:
    digit = '"0"' if zeros else "[0-9]"
    return f'("." {digit}{{1,{FRACTION_DIGITS}}})?'


def _decimal_magnitudes(a: int, b: int) -> str:
    """Decimals whose magnitude lies in [a, b] (whole a, b): any fraction below b, b itself exactly."""
    if a == b:
        return f'"{b}" {_fraction(True)}'
    return f'({digit_range(a, b - 1)} {_fraction(False)} | "{b}" {_fraction(True)})'


def number_rule(lo: float, hi: float) -> str:
    """JSON numbers in [floor(lo), ceil(hi)], written without an exponent."""
    return _signed(math.floor(lo), math.ceil(hi), _decimal_magnitudes) + " space"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def bounded_rule(schema: Any) -> str | None:
    """The GBNF rule of a bounded number schema, or None to leave it to llama.cpp's converter."""
    if not isinstance(schema, dict) or schema.get("type") not in ("integer", "number"):
        return None
    if any(k in schema for k in ("enum", "const", "$ref", "oneOf", "anyOf", "allOf", "not")):
        return None
    low = schema.get("minimum", schema.get("exclusiveMinimum"))  # exclusive: widened to inclusive
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if not _finite(low) or abs(low) >= LARGEST:
        low = None
    if not _finite(high) or abs(high) >= LARGEST:
        high = None
    if schema["type"] == "integer":
        if low is not None and high is not None:
            lo, hi = _integer_bounds(schema, low, high)
            return integer_rule(lo, hi) if lo <= hi else None
        return '(integral-part) space' if low is not None and low >= 0 else None
    if low is not None and high is not None and low <= high:
        return number_rule(low, high)
    if low is not None and low >= 0:
        return '(integral-part) ("." decimal-part)? space'
    return None


def _integer_bounds(schema: dict[str, Any], low: float, high: float) -> tuple[int, int]:
    """The whole numbers the bounds admit (an exclusive bound excludes its own value)."""
    lo, hi = math.ceil(low), math.floor(high)
    if "minimum" not in schema and lo == low:
        lo += 1
    if "maximum" not in schema and hi == high:
        hi -= 1
    return lo, hi


@functools.cache
def _converter_class() -> type:
    """llama-cpp-python's converter, with :func:`bounded_rule` for bounded numbers (built on first use:
    llama_cpp is a heavy import)."""
    from llama_cpp import llama_grammar

    class BoundedConverter(llama_grammar.SchemaConverter):  # type: ignore[misc, name-defined]
        def visit(self, schema: Any, name: str) -> str:
            rule = bounded_rule(schema)
            if rule is None:
                return super().visit(schema, name)
            for needed in ("integral-part", "decimal-part"):  # the one-sided rules use llama.cpp's own
                if needed in rule:
                    self._add_primitive(needed, llama_grammar.PRIMITIVE_RULES[needed])
            rule_name = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, rule)

    return BoundedConverter


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar of ``schema``: llama-cpp-python's, with bounded numbers (see the module docstring)."""
    converter = _converter_class()(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "stdin"), "")
    return converter.format_grammar()
