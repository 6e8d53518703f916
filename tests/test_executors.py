"""Scoring on threads, processes and a Dask LocalCluster gives the run scoring in the loop gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import scripted_llm

from llmopt import Budget, LLMProposer, Optimizer, RandomProposer
from llmopt.cli import main
from llmopt.executors import open_executor
from problems.tsp.instances import random_instance
from problems.tsp.problem import TravellingSalesman


def tours(prompt: str, seed: int) -> str:
    """A scripted optimizer: a tour of 9 cities from 0, ordered by bits of the seed."""
    return "<trace>" + ",".join(map(str, [0] + sorted(range(1, 9), key=lambda c: (seed >> c) & 7))) + "</trace>"


def run(executor, proposer) -> list[tuple]:
    problem = TravellingSalesman(random_instance(9, 3))
    result = Optimizer(problem, proposer, seed=3, budget=Budget(max_steps=3, stop_when_solved=False)).run(
        executor=executor)
    return [(t.number, t.state.value, t.text, t.value) for t in result.history]


@pytest.fixture(scope="module")
def sequential() -> list[tuple]:
    return run(None, RandomProposer())


@pytest.mark.parametrize("kind", ["threads", "processes", "dask"])
def test_executors_reproduce_the_sequential_run(kind: str, sequential: list[tuple]) -> None:
    if kind == "dask":
        pytest.importorskip("dask.distributed")
    with open_executor(kind, workers=2) as executor:
        assert run(executor, RandomProposer()) == sequential
        with_llm = run(executor, LLMProposer(scripted_llm(tours)[0], structured="off"))
    assert with_llm == run(None, LLMProposer(scripted_llm(tours)[0], structured="off"))


def test_executor_flag(tmp_path: Path, capsys) -> None:
    for kind in ("none", "processes"):
        assert main(["run", "tsp", "--n", "8", "--proposer", "random", "--steps", "2", "--executor", kind,
                     "--workers", "2", "--store", str(tmp_path / f"{kind}.db"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("stopped by") == 2
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        with open_executor("gpu"):
            pass
