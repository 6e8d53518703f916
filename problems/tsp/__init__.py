"""The travelling salesman (the paper's Section 3.2): ``problem``, ``instances`` (generator,
TSPLIB reader), ``exact`` (the proved optimum) and its ``cli`` glue."""

from __future__ import annotations

from problems.tsp.instances import TSPInstance, random_instance, read_tour, read_tsplib, tour_length
from problems.tsp.problem import TravellingSalesman

__all__ = ["TSPInstance", "TravellingSalesman", "random_instance", "read_tour", "read_tsplib", "tour_length"]
