"""The TSP problem: the paper's meta-prompt, decoding, canonical keys, and the Problem contract."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from datadir import data_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from llmopt import Budget, MetaPromptConfig, Optimizer, ParseError, RandomProposer, SolutionHistory, Trial, TrialState
from llmopt.metaprompt import build_meta_prompt
from llmopt.testing import ProblemContract
from problems.tsp.instances import TSPLIBError, random_instance, read_tour, read_tsplib, tour_length
from problems.tsp.problem import TravellingSalesman, canonical

DATA = data_dir() / "tsplib"
PROBLEM = TravellingSalesman(random_instance(8, 1))


def tours(n: int):
    return st.permutations(list(range(1, n))).map(lambda rest: (0, *rest))


class TestTSPContract(ProblemContract):
    problem = PROBLEM
    solutions = tours(8)


def test_meta_prompt_is_the_papers() -> None:
    p = TravellingSalesman(random_instance(4, 0))
    h = SolutionHistory(p.direction)
    for i, (tour, value) in enumerate([((0, 2, 1, 3), 412.7), ((0, 1, 2, 3), 300.2)]):
        h.append(Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", solution=tour,
                       text=p.encode(tour), key=p.key(tour), value=value))
    coords = ", ".join(f"({i}): ({int(x)}, {int(y)})" for i, (x, y) in enumerate(p.instance.coords))
    assert build_meta_prompt(p, h, MetaPromptConfig()) == (
        f"You are given a list of points with coordinates below:\n{coords}.\n\n"
        "Below are some previous traces and their lengths. The traces are arranged in descending order based on "
        "their lengths, where lower values are better.\n\n"
        "<trace> 0,2,1,3 </trace>\nlength:\n413\n\n<trace> 0,1,2,3 </trace>\nlength:\n300\n\n"
        "Give me a new trace that is different from all traces above, and has a length lower than any of the above. "
        "The trace should traverse all points exactly once. The trace should start with '<trace>' and end with "
        "</trace>.")


@pytest.mark.parametrize("reply, tour", [
    ("Sure! <trace> 0,3,1,2,4,5,6,7 </trace> is shorter", (0, 3, 1, 2, 4, 5, 6, 7)),
    ("<trace>0, 1, 2, 3,\n4, 5, 6, 7</trace> and <trace> 0,7,6,5,4,3,2,1 </trace>", (0, 1, 2, 3, 4, 5, 6, 7)),
    ('{"trace": [0, 7, 6, 5, 4, 3, 2, 1]}', (0, 7, 6, 5, 4, 3, 2, 1)),
])
def test_decode(reply: str, tour: tuple[int, ...]) -> None:
    assert PROBLEM.decode(reply) == tour


@pytest.mark.parametrize("reply, message", [
    ("no trace", "no trace found"), ("<trace> 0,1,2 </trace>", "has 3 points"),
    ("<trace> 0,1,2,3,4,5,6,6 </trace>", "not a permutation"), ("<trace> 1,0,2,3,4,5,6,7 </trace>", "must start"),
    ("<trace> 0,1,2,3,4,5,6,seven </trace>", "non-integer"), ("<trace> 0,1,2,3,4,5,6,7", "no trace found"),
    ("<trace> 0," + "9" * 5000 + " </trace>", "5000 digits"),  # int() raises ValueError past 4,300 digits
])
def test_decode_rejects_with_a_reason(reply: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        PROBLEM.decode(reply)


def test_start_anywhere_when_allowed() -> None:
    p = TravellingSalesman(random_instance(5, 0), start_at_zero=False)
    assert p.decode("<trace> 3,1,0,2,4 </trace>") == (3, 1, 0, 2, 4)


@settings(max_examples=200, deadline=None)
@given(tour=tours(9), shift=st.integers(0, 8), flip=st.booleans())
def test_key_and_length_invariant_under_rotation_and_reversal(tour, shift: int, flip: bool) -> None:
    p = TravellingSalesman(random_instance(9, 2), start_at_zero=False)
    other = tour[shift:] + tour[:shift]
    other = tuple(reversed(other)) if flip else other
    assert p.key(other) == p.key(tour) == canonical(tour)
    assert p.score(other) == pytest.approx(p.score(tour))


def test_random_control_runs_through_the_loop() -> None:
    result = Optimizer(PROBLEM, RandomProposer(), budget=Budget(max_steps=3)).run()
    assert result.counts["COMPLETE"] >= 20 and result.metrics["gap_pct"] is None  # no optimum given


def test_gap_and_optimum_step() -> None:
    inst = random_instance(5, 3)
    best = min(tour_length(inst.dist, (0, *rest)) for rest in itertools.permutations(range(1, 5)))
    p = TravellingSalesman(inst, optimum=best, optimum_proved=True)
    result = Optimizer(p, RandomProposer(), budget=Budget(max_steps=20)).run()
    assert result.stop_reason.value == "solved" and result.metrics["gap_pct"] == pytest.approx(0.0)
    assert result.metrics["optimum_step"] == result.solved_step


def test_instances_are_seeded_and_in_range() -> None:
    a, b = random_instance(30, 4), random_instance(30, 4)
    assert np.array_equal(a.coords, b.coords) and not np.array_equal(a.coords, random_instance(30, 5).coords)
    assert a.coords.min() >= -100 and a.coords.max() <= 100 and np.all(a.coords == np.round(a.coords))
    t = random_instance(2000, 0, truncate=True)  # int() truncation piles points on 0
    assert (t.coords == 0).mean() > 1.5 * (random_instance(2000, 0).coords == 0).mean()  # ~2x in expectation


@pytest.mark.parametrize("name, optimum", [("eil51", 426), ("berlin52", 7542)])
def test_tsplib_optimal_tours(name: str, optimum: int) -> None:
    inst = read_tsplib(DATA / f"{name}.tsp")
    assert tour_length(inst.dist, read_tour(DATA / f"{name}.opt.tour", inst.n)) == optimum


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "x.tsp"
    path.write_text(body)
    return path


def test_tsplib_explicit_and_other_metrics(tmp_path: Path) -> None:
    explicit = write(tmp_path, "NAME: t\nTYPE: TSP\nDIMENSION: 4\nEDGE_WEIGHT_TYPE: EXPLICIT\n"
                               "EDGE_WEIGHT_FORMAT: UPPER_ROW\nEDGE_WEIGHT_SECTION\n1 2 3\n4 5\n6\nEOF\n")
    inst = read_tsplib(explicit)
    assert inst.dist[0, 3] == 3 and inst.dist[3, 0] == 3 and inst.dist[2, 3] == 6 and inst.coords is None
    lower = write(tmp_path, "TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: EXPLICIT\nEDGE_WEIGHT_FORMAT: "
                            "LOWER_DIAG_ROW\nEDGE_WEIGHT_SECTION\n0 5 0 7 9 0\nEOF\n")
    assert read_tsplib(lower).dist.tolist() == [[0, 5, 7], [5, 0, 9], [7, 9, 0]]
    for kind in ("CEIL_2D", "ATT", "GEO"):
        body = f"TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: {kind}\nNODE_COORD_SECTION\n1 0 0\n2 3.5 4\n3 10 0\nEOF\n"
        d = read_tsplib(write(tmp_path, body)).dist
        assert np.all(d == np.round(d)) and np.all(d == d.T) and d[0, 1] > 0
    ceil = read_tsplib(write(tmp_path, "TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: CEIL_2D\nNODE_COORD_SECTION\n"
                                       "1 0 0\n2 3 4.1\n3 10 0\nEOF\n"))
    assert ceil.dist[0, 1] == 6


@pytest.mark.parametrize("body, message", [
    ("TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n1 0 0\n2 x 1\n3 1 1\nEOF\n", "x.tsp:6"),
    ("TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n1 0 0\n2 1 1\nEOF\n", "nodes 1..3"),
    ("TYPE: ATSP\nDIMENSION: 3\n", "only symmetric"),
    ("TYPE: TSP\nDIMENSION: many\n", "DIMENSION"),
    ("TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: MAN_3D\nNODE_COORD_SECTION\n1 0 0\n2 1 1\n3 2 2\n", "MAN_3D"),
    ("TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: EXPLICIT\nEDGE_WEIGHT_FORMAT: FULL_MATRIX\n"
     "EDGE_WEIGHT_SECTION\n0 1 2\n1 0\n", "has 5 numbers"),
    ("hello world\n", "x.tsp:1"),
])
def test_malformed_tsplib_names_the_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TSPLIBError, match=message.replace(".", r"\.")):
        read_tsplib(write(tmp_path, body))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_tsplib_reader_raises_only_its_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.tsp"
    path.write_text(text, encoding="utf-8", errors="replace")
    try:
        read_tsplib(path)
    except TSPLIBError:
        pass
