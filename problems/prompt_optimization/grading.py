"""Answer extraction and grading: is a scorer model's reply the right answer?

Follows the semantics of the OPRO paper's evaluation (its answer formats and the cases its
tests pin down), written afresh:

* **number** (GSM8K, MultiArith, object counting, arithmetic): the last number of the answer,
  thousands separators, currency signs, units and trailing text ignored, compared numerically;
* **choice** (AQuA and most BBH tasks, targets like ``(B)``): the option symbol in any common
  spelling (``(B)``, ``B``, ``b``, ``B)``), or the text of exactly one option ("east" when
  option (B) is "east"; "east west" is not option "west");
* **bool** (targets yes/no, true/false, valid/invalid): by meaning, across vocabularies
  ("true" answers a "Yes" target; "1"/"0" alone count too);
* **exact** (word sorting, Dyck languages): the same tokens, ignoring case, commas, spacing and a
  final full stop.

The answer is read after the last "the answer is" / "Answer:" marker when there is one, and a
reply that runs on into a new "Q:" is cut there. Grading never raises on any reply.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Iterable, Literal

Kind = Literal["number", "choice", "bool", "exact"]
KINDS: tuple[str, ...] = ("number", "choice", "bool", "exact")

BOOLEAN_WORDS = {"yes": True, "true": True, "valid": True, "no": False, "false": False, "invalid": False}

_SYMBOL = re.compile(r"^\(([A-Z])\)$")
_MARKER = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*:?", re.IGNORECASE)
_NUMBER = re.compile(r"(?:(?<!\d)-)?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BOOL = re.compile(r"\b(yes|no|true|false|valid|invalid)\b", re.IGNORECASE)
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def infer_kind(targets: Iterable[str]) -> Kind:
    """The grading kind of a task from its targets: all ``(X)`` -> choice, all yes/no-like ->
    bool, all numbers -> number, anything else -> exact."""
    targets = [t.strip() for t in targets]
    if targets and all(_SYMBOL.match(t) for t in targets):
        return "choice"
    if targets and all(t.lower() in BOOLEAN_WORDS for t in targets):
        return "bool"
    if targets and all(parse_number(t) is not None and _NUMBER.fullmatch(t.replace(",", "")) for t in targets):
        return "number"
    return "exact"


def answer_region(reply: str) -> str:
    """The part of a reply that states the answer.

    A reply that continues the few-shot pattern with a new ``Q:`` is cut there; then the text
    after the last "the answer is" / "Answer:" marker is taken, if there is any.
    """
    text = reply.split("\nQ:")[0]
    last = None
    for last in _MARKER.finditer(text):
        pass
    if last is not None and text[last.end():].strip():
        text = text[last.end():]
    return text.strip()


def parse_number(text: str) -> float | None:
    """The last number in ``text`` ("$1,234.50 in total." -> 1234.5), or None."""
    found = _NUMBER.findall(_THOUSANDS.sub("", text))
    if not found:
        return None
    try:
        return float(found[-1])
    except (ValueError, OverflowError):
        return None


def _norm(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces."""
    return " ".join(text.lower().translate(_PUNCT).split())


def parse_options(question: str) -> dict[str, str]:
    """The options of a multiple-choice question: {"A": "west", "B": "east", ...}.

    Options are ``(A) text`` with consecutive letters from A; each text runs to the next
    option symbol or the end of its line.
    """
    positions: list[tuple[str, int, int]] = []
    start = 0
    for letter in string.ascii_uppercase:
        at = question.find(f"({letter})", start)
        if at < 0:
            break
        positions.append((letter, at, at + 3))
        start = at + 3
    out = {}
    for i, (letter, _, end) in enumerate(positions):
        stop = positions[i + 1][1] if i + 1 < len(positions) else len(question)
        out[letter] = question[end:stop].split("\n")[0].strip()
    return out


def predicted_choice(answer: str, options: dict[str, str]) -> str | None:
    """The option letter an answer picks, or None if it picks none (or several)."""
    text = answer.strip()
    symbol = re.search(r"\(([A-Za-z])\)", text)
    if symbol and symbol.group(1).upper() in options:
        return symbol.group(1).upper()
    bare = re.fullmatch(r"[\s:\-*\"']*([A-Za-z])[\s.):\-*\"']*", text)
    if bare and bare.group(1).upper() in options:
        return bare.group(1).upper()
    lead = re.match(r"([A-Z])[).:]\s", text)
    if lead and lead.group(1) in options:
        return lead.group(1)
    said = _norm(text)
    texts = {letter: _norm(option) for letter, option in options.items() if _norm(option)}
    exact = [letter for letter, option in texts.items() if option == said]
    if len(exact) == 1:
        return exact[0]
    # Options mentioned as whole phrases; a mention inside a longer mentioned option does not count.
    spans: list[tuple[int, int, str]] = []
    padded = f" {said} "
    for letter, option in texts.items():
        for m in re.finditer(re.escape(f" {option} "), padded):
            spans.append((m.start(), m.end(), letter))
    kept = {letter for s, e, letter in spans
            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}
    return kept.pop() if len(kept) == 1 else None


def predicted_bool(answer: str) -> bool | None:
    """The first yes/no-like word of an answer as a truth value, or None."""
    text = answer.strip()
    if text in ("0", "1"):
        return text == "1"
    found = _BOOL.search(text)
    return None if found is None else BOOLEAN_WORDS[found.group(1).lower()]


def _tokens(text: str) -> list[str]:
    return text.lower().replace(",", " ").rstrip(".").split()


@dataclass(frozen=True)
class Grade:
    correct: bool
    extracted: str | None  # what was read as the answer (None: nothing recognisable)


def grade(reply: str, target: str, kind: Kind, question: str = "") -> Grade:
    """Grade one reply against its target. Never raises on any reply text."""
    answer = answer_region(reply)
    if kind == "number":
        want, got = parse_number(target), parse_number(answer)
        if got is None or want is None:
            return Grade(False, None)
        return Grade(abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"{got:g}")
    if kind == "choice":
        options = parse_options(question)
        letter = predicted_choice(answer, options)
        wanted = target.strip().strip("()").upper()
        return Grade(letter is not None and letter == wanted, None if letter is None else f"({letter})")
    if kind == "bool":
        got_bool, want_bool = predicted_bool(answer), BOOLEAN_WORDS.get(target.strip().lower())
        if got_bool is None or want_bool is None:
            return Grade(False, None)
        return Grade(got_bool == want_bool, str(got_bool).lower())
    if kind == "exact":
        got_tokens, want_tokens = _tokens(answer), _tokens(target)
        symbols_only = not any(ch.isalnum() for ch in target)  # Dyck: ") ] >" and ")]>" are one answer
        same = got_tokens == want_tokens or (symbols_only and "".join(got_tokens) == "".join(want_tokens))
        return Grade(same, " ".join(got_tokens) or None)
    raise ValueError(f"unknown answer kind {kind!r} (expected one of {', '.join(KINDS)})")
