"""The problem contract: what the optimizer relies on a Problem for, as checks a user can run.

Each ``check_*`` function tests one property and raises :class:`ContractViolation` (an
``AssertionError``) whose message starts with the property's name and ends with the smallest
failing example hypothesis found. :func:`check_problem` runs them all; :class:`ProblemContract`
is the same checks as a pytest base class, one test per property. Runs are derandomized: the
same problem gives the same verdict in CI every time.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import random
from typing import Any, Callable, ClassVar, Iterator

import jsonschema
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmopt.problem import ParseError, Problem
from llmopt.seeding import stream
from llmopt.space import SpaceError, check_schema, check_space
from llmopt.testing import strategies
from llmopt.testing.strategies import ContractViolation

__all__ = ["ContractViolation", "ProblemContract", "check_answer_schema", "check_config", "check_decode",
           "check_features", "check_finite_scores", "check_problem", "check_reproducible", "check_round_trip",
           "check_search_space", "check_text"]

ROUND_TRIP = "round trip"
DECODE = "decode raises only ParseError"
DECODED_ENCODE = "decoded replies encode"
REPRODUCIBLE = "starts and random draws are reproducible"
FINITE = "scores are finite"
CONFIG = "config survives JSON"
TEXT = "text hooks are non-empty"
ANSWER_SCHEMA = "answers follow answer_schema"
SEARCH_SPACE = "search space round trip"
FEATURES = "features are finite, in range and a function of the solution"

#: Seeds of the deterministic checks (starting solutions per seed, random draws per seed).
SEEDS = (0, 1, 2)
DRAWS = 10


def _settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    report_multiple_bugs=False, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example,
                                           HealthCheck.nested_given])


def _explore(prop: str, strategy: st.SearchStrategy, body: Callable[[Any], None], max_examples: int) -> None:
    """Run ``body`` on examples of ``strategy``; the shrunk failure becomes one ContractViolation."""

    @_settings(max_examples)
    @given(strategy)
    def example(value: Any) -> None:
        body(value)

    try:
        example()
    except Exception as exc:
        notes = "\n".join(_clip(line) for note in getattr(exc, "__notes__", ())
                          if not str(note).startswith(("while generating", "Explanation:"))  # about our code
                          for line in str(note).splitlines())
        if isinstance(exc, ContractViolation):
            prop, detail = exc.prop, exc.detail
        else:
            detail = f"{type(exc).__name__}: {exc}"
        raise ContractViolation(prop, f"{detail}\n{notes}".rstrip()) from exc


@contextlib.contextmanager
def _named(prop: str) -> Iterator[None]:
    """An exception in a deterministic check becomes a ContractViolation naming the property."""
    try:
        yield
    except ContractViolation:
        raise
    except Exception as exc:
        raise ContractViolation(prop, f"{type(exc).__name__}: {_short(str(exc), 300)}") from exc


def _clip(line: str, limit: int = 600) -> str:
    """A line of a failing example, its middle cut out if long (a 5,000-digit number)."""
    if len(line) <= limit:
        return line
    return f"{line[:limit * 2 // 3]}...[{len(line) - limit} characters]...{line[-limit // 3:]}"


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


# --- encode / decode --------------------------------------------------------------------------
def check_round_trip(problem: Problem, solutions: st.SearchStrategy | None = None, *, max_examples: int = 200) -> None:
    """encode gives text; decode(encode(s)) and from_text(encode(s)) have s's key and encoding."""

    def body(solution: Any) -> None:
        text = problem.encode(solution)
        if not isinstance(text, str):
            raise ContractViolation(ROUND_TRIP, f"encode returned {type(text).__name__}, not str")
        for name, read in (("decode", problem.decode), ("from_text", problem.from_text)):
            try:
                back = read(text)
            except ParseError as exc:
                raise ContractViolation(ROUND_TRIP, f"{name}(encode(s)) raised ParseError: {exc}; "
                                                    f"encode(s) = {_short(text)}") from exc
            if problem.key(back) != problem.key(solution):
                raise ContractViolation(ROUND_TRIP, f"{name}(encode(s)) has key {_short(problem.key(back))}, s has "
                                                    f"{_short(problem.key(solution))}; encode(s) = {_short(text)}")
            again = problem.encode(back)
            if again != text:
                raise ContractViolation(ROUND_TRIP, f"encode({name}(encode(s))) = {_short(again)} differs from "
                                                    f"encode(s) = {_short(text)}")

    _explore(ROUND_TRIP, _or_derived(problem, solutions), body, max_examples)


def check_decode(problem: Problem, solutions: st.SearchStrategy | None = None, *, max_examples: int = 200) -> None:
    """decode raises only ParseError on hostile replies (:func:`strategies.replies`), and what it
    returns encodes."""

    def body(reply: str) -> None:
        try:
            solution = problem.decode(reply)
        except ParseError:
            return
        except Exception as exc:
            said = f": {_short(str(exc), 200)}" if str(exc) else ""
            raise ContractViolation(DECODE, f"decode raised {type(exc).__name__}{said} (it may raise only "
                                            f"ParseError)") from exc
        try:
            text = problem.encode(solution)
        except Exception as exc:
            raise ContractViolation(DECODED_ENCODE, f"decode returned {_short(solution)}, and encode of it raised "
                                                    f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise ContractViolation(DECODED_ENCODE, f"encode of a decoded solution returned {type(text).__name__}")

    _explore(DECODE, strategies.replies(problem, solutions), body, max_examples)


# --- seeded draws and scores --------------------------------------------------------------------
@contextlib.contextmanager
def _global_rngs(seed: int) -> Iterator[None]:
    """numpy's and Python's global generators reseeded to ``seed``, restored afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _keys(problem: Problem, draw_: Callable[[], Any], many: bool) -> list[Any]:
    drawn = draw_()
    return [problem.key(s) for s in drawn] if many else [problem.key(drawn)]


def _same_draws(problem: Problem, what: str, draw_: Callable[[], Any], many: bool) -> None:
    with _global_rngs(11):
        first = _keys(problem, draw_, many)
    with _global_rngs(11):
        second = _keys(problem, draw_, many)
    if first != second:
        raise ContractViolation(REPRODUCIBLE, f"{what} drew {_short(first)}, then {_short(second)} from the same "
                                              f"generator state: draws must depend on the rng argument only")
    with _global_rngs(12345):
        third = _keys(problem, draw_, many)
    if third != first:
        raise ContractViolation(REPRODUCIBLE, f"{what} drew {_short(first)}, then {_short(third)} from the same "
                                              "generator state after numpy's and Python's global random generators "
                                              "were reseeded: it draws from global state (np.random.*, random.*), "
                                              "not from the rng it is given")


def check_reproducible(problem: Problem) -> None:
    """Starting solutions and random draws are a function of the generator state they are given
    (same state, same draws), and of nothing else (not of numpy's or Python's global RNG)."""
    with _named(REPRODUCIBLE):
        _reproducible(problem)


def _reproducible(problem: Problem) -> None:
    for seed in SEEDS:
        _same_draws(problem, f"initial_solutions(stream({seed}, 'contract', 'start'))",
                    lambda: problem.initial_solutions(stream(seed, "contract", "start")), True)
        for i in range(DRAWS if problem.can_draw else 0):
            _same_draws(problem, f"random_solution(stream({seed}, 'contract', 'random', {i}))",
                        lambda: problem.random_solution(stream(seed, "contract", "random", i)), False)


def _finite(problem: Problem, solution: Any) -> None:
    try:
        value = problem.score(solution)
    except Exception as exc:  # name the input, as for a score that is not finite
        raise ContractViolation(FINITE, f"score({_short(solution)}) raised {type(exc).__name__}: "
                                        f"{_clip(str(exc), 300)}") from exc
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ContractViolation(FINITE, f"score({_short(solution)}) returned {_short(value)}, not a number")
    if not math.isfinite(float(value)):
        raise ContractViolation(FINITE, f"score({_short(solution)}) = {value}")


def check_finite_scores(problem: Problem, solutions: st.SearchStrategy | None = None, *,
                        max_examples: int = 200) -> None:
    """Every starting solution and random draw, and every valid solution, scores to a finite number."""
    with _named(FINITE):
        for seed in SEEDS:
            for solution in problem.initial_solutions(stream(seed, "contract", "start")):
                _finite(problem, solution)
            for i in range(DRAWS if problem.can_draw else 0):
                _finite(problem, problem.random_solution(stream(seed, "contract", "random", i)))
    _explore(FINITE, _or_derived(problem, solutions), lambda s: _finite(problem, s), max_examples)


# --- configuration and text ------------------------------------------------------------------------
def _json_fault(value: Any, path: str) -> str | None:
    """Where a value stops being JSON: the first part that json.dumps refuses or reads back changed."""
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r} ({type(key).__name__}; JSON keys are strings)"
            found = _json_fault(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if type(value) is list:
        return next((f for i, item in enumerate(value) if (f := _json_fault(item, f"{path}[{i}]"))), None)
    try:
        kept = json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        kept = False
    return None if kept else f"{path} is {_short(value)} ({type(value).__name__}), which JSON does not keep"


def check_config(problem: Problem) -> None:
    """config() is a dict that JSON keeps as it is (the run store records it), named as the problem."""
    with _named(CONFIG):
        config = problem.config()
    if not isinstance(config, dict):
        raise ContractViolation(CONFIG, f"config() returned {type(config).__name__}, not a dict")
    fault = _json_fault(config, "config()")
    if fault:
        raise ContractViolation(CONFIG, fault)
    if config.get("name") != problem.name:
        raise ContractViolation(CONFIG, f"config()['name'] is {config.get('name')!r}, the problem's name is "
                                        f"{problem.name!r}")


def check_text(problem: Problem) -> None:
    """The meta-prompt's pieces are non-empty text."""
    hooks: list[tuple[str, Callable[[], Any]]] = [
        ("describe()", problem.describe), ("answer_format()", problem.answer_format),
        ("solution_noun", lambda: problem.solution_noun), ("solution_plural", lambda: problem.solution_plural),
        ("value_noun", lambda: problem.value_noun)]
    if problem.answer_schema() is not None:
        hooks.append(("structured_answer_format()", problem.structured_answer_format))
    for name, hook in hooks:
        with _named(TEXT):
            text = hook()
        if not isinstance(text, str) or not text.strip():
            raise ContractViolation(TEXT, f"{name} is {_short(text)}: it must be non-empty text")


# --- schemas ----------------------------------------------------------------------------------------
def _has_json_form(problem: Problem) -> bool:
    return type(problem).to_json is not Problem.to_json


def check_answer_schema(problem: Problem, solutions: st.SearchStrategy | None = None, *,
                        max_examples: int = 200) -> None:
    """answer_schema() is a valid JSON schema; where the problem has a JSON form (to_json), that form
    of every valid solution follows it, and the structured answer it makes decodes to the solution."""
    with _named(ANSWER_SCHEMA):
        schema = problem.answer_schema()
    if schema is None:
        return
    try:
        check_schema(schema)
        json.dumps(schema, allow_nan=False)
    except (SpaceError, TypeError, ValueError) as exc:
        raise ContractViolation(ANSWER_SCHEMA, f"answer_schema() is not a JSON schema: {exc}") from exc
    if not _has_json_form(problem):
        return
    validator = jsonschema.Draft202012Validator(schema)

    def body(solution: Any) -> None:
        value = problem.to_json(solution)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise ContractViolation(ANSWER_SCHEMA, f"to_json(s) = {_short(value)} does not follow answer_schema() "
                                                   f"at /{'/'.join(map(str, error.absolute_path))}: {error.message}")
        for reply in (json.dumps(value), json.dumps(value, indent=2)):
            try:
                back = problem.decode(reply)
            except ParseError as exc:
                raise ContractViolation(ANSWER_SCHEMA, f"the structured answer {_short(reply)} does not decode: "
                                                       f"{exc}") from exc
            if problem.key(back) != problem.key(solution):
                raise ContractViolation(ANSWER_SCHEMA, f"the structured answer {_short(reply)} decodes to key "
                                                       f"{_short(problem.key(back))}, not {_short(problem.key(solution))}")

    _explore(ANSWER_SCHEMA, _or_derived(problem, solutions), body, max_examples)


def check_search_space(problem: Problem, solutions: st.SearchStrategy | None = None, *,
                       max_examples: int = 200) -> None:
    """search_space() is a bounded space; from_json accepts each of its values v with
    to_json(from_json(v)) == v; and from_json(to_json(s)) has s's key for valid solutions s."""
    with _named(SEARCH_SPACE):
        space = problem.search_space()
    if space is None:
        return
    try:
        check_space(space)
    except SpaceError as exc:
        raise ContractViolation(SEARCH_SPACE, f"search_space() is not a bounded search space: {exc}") from exc
    values = strategies.space_values(space)

    def value_round_trip(value: Any) -> None:
        solution = strategies.space_solution(problem)(value)
        back = problem.to_json(solution)
        if back != value:
            raise ContractViolation(SEARCH_SPACE, f"to_json(from_json(v)) = {_short(back)}, v = {_short(value)}")

    def solution_round_trip(solution: Any) -> None:
        value = problem.to_json(solution)
        try:
            back = problem.from_json(json.loads(json.dumps(value, allow_nan=False)))
        except (ParseError, TypeError, ValueError) as exc:
            raise ContractViolation(SEARCH_SPACE, f"from_json(to_json(s)) failed for to_json(s) = {_short(value)}: "
                                                  f"{type(exc).__name__}: {exc}") from exc
        if problem.key(back) != problem.key(solution):
            raise ContractViolation(SEARCH_SPACE, f"from_json(to_json(s)) has key {_short(problem.key(back))}, s has "
                                                  f"{_short(problem.key(solution))}")

    _explore(SEARCH_SPACE, values, value_round_trip, max_examples)
    _explore(SEARCH_SPACE, _or_derived(problem, solutions), solution_round_trip, max_examples)


# --- features (MAP-Elites) --------------------------------------------------------------------------
def _features_of(problem: Problem, solution: Any, ranges: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    try:
        values = tuple(problem.features(solution))
    except Exception as exc:
        raise ContractViolation(FEATURES, f"features({_short(solution)}) raised {type(exc).__name__}: "
                                          f"{_clip(str(exc), 300)}") from exc
    if len(values) != len(ranges):
        raise ContractViolation(FEATURES, f"features({_short(solution)}) gave {len(values)} values for "
                                          f"{len(ranges)} feature_ranges")
    for value, (low, high) in zip(values, ranges):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
            raise ContractViolation(FEATURES, f"features({_short(solution)}) = {_short(values)}: not numbers "
                                              f"inside feature_ranges {_short(ranges)}")
    return values


def _features(problem: Problem, solution: Any, ranges: tuple[tuple[float, float], ...]) -> None:
    values = _features_of(problem, solution, ranges)
    again = _features_of(problem, problem.from_text(problem.encode(solution)), ranges)
    if again != values:
        raise ContractViolation(FEATURES, f"features({_short(solution)}) = {_short(values)}, but {_short(again)} "
                                          "for the solution read back from its text (a resumed run would place it "
                                          "elsewhere)")


def check_features(problem: Problem, solutions: st.SearchStrategy | None = None, *, max_examples: int = 200) -> None:
    """``feature_names()`` and ``feature_ranges()`` agree (distinct names, finite ranges with low <
    high), and every valid solution's ``features`` are numbers inside their ranges, the same for the
    solution read back from its text (what ``--proposer map-elites`` bins)."""
    with _named(FEATURES):
        names, ranges = tuple(problem.feature_names()), tuple(problem.feature_ranges())
    if not names or len(names) != len(ranges) or len(set(names)) != len(names):
        raise ContractViolation(FEATURES, f"feature_names() {_short(names)} and feature_ranges() {_short(ranges)}: "
                                          "distinct names, one (low, high) range each")
    if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in ranges):
        raise ContractViolation(FEATURES, f"feature_ranges() {_short(ranges)}: each finite, with low < high")
    _explore(FEATURES, _or_derived(problem, solutions), lambda s: _features(problem, s, ranges), max_examples)


def _or_derived(problem: Problem, solutions: st.SearchStrategy | None) -> st.SearchStrategy:
    return strategies.solutions(problem) if solutions is None else solutions


# --- all of it --------------------------------------------------------------------------------------
def check_problem(problem: Problem, solutions: st.SearchStrategy | None = None, *, max_examples: int = 200) -> None:
    """Check every property of the contract; the first that fails raises :class:`ContractViolation`
    (an AssertionError) naming it, with the smallest failing example. ``solutions``: a hypothesis
    strategy of valid solutions (default: :func:`strategies.solutions`, from the problem's search
    space, random draws and starting solutions)."""
    check_text(problem)
    check_config(problem)
    check_reproducible(problem)
    check_finite_scores(problem, solutions, max_examples=max_examples)
    check_round_trip(problem, solutions, max_examples=max_examples)
    check_decode(problem, solutions, max_examples=max_examples)
    check_answer_schema(problem, solutions, max_examples=max_examples)
    check_search_space(problem, solutions, max_examples=max_examples)
    check_features(problem, solutions, max_examples=max_examples)


class ProblemContract:
    """The contract as a pytest base class: subclass it as ``TestMyProblem`` and set ``problem``
    (and optionally ``solutions``, a strategy of valid solutions); pytest reports each property.

    Its own name does not start with ``Test``, so pytest collects only the subclasses.
    """

    problem: ClassVar[Problem]
    solutions: ClassVar[Any] = None
    max_examples: ClassVar[int] = 200

    def test_text_hooks(self) -> None:
        check_text(self.problem)

    def test_config_survives_json(self) -> None:
        check_config(self.problem)

    def test_starts_and_random_draws_are_reproducible(self) -> None:
        check_reproducible(self.problem)

    def test_scores_are_finite(self) -> None:
        check_finite_scores(self.problem, self.solutions, max_examples=self.max_examples)

    def test_round_trip(self) -> None:
        check_round_trip(self.problem, self.solutions, max_examples=self.max_examples)

    def test_decode_raises_only_parse_error(self) -> None:
        check_decode(self.problem, self.solutions, max_examples=self.max_examples)

    def test_answers_follow_answer_schema(self) -> None:
        check_answer_schema(self.problem, self.solutions, max_examples=self.max_examples)

    def test_search_space_round_trip(self) -> None:
        check_search_space(self.problem, self.solutions, max_examples=self.max_examples)

    def test_features(self) -> None:
        check_features(self.problem, self.solutions, max_examples=self.max_examples)
