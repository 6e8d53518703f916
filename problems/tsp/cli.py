"""``llmopt run tsp``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from typing import Any

from problems.data import tsplib_file
from problems.tsp.exact import optimum
from problems.tsp.instances import random_instance, read_tsplib
from problems.tsp.problem import TravellingSalesman


class CLI:
    """``llmopt run tsp``: a generated instance (--n, --seed) or a TSPLIB file (--tsplib)."""

    HELP = "travelling salesman: LLM tours against the exact optimum (the paper's Section 3.2)"

    @staticmethod
    def add_arguments(group: Any) -> None:
        group.add_argument("--n", type=int, default=10, help="cities of a generated instance (default 10)")
        group.add_argument("--tsplib", help="a TSPLIB file instead of a generated instance, or the name of one "
                           "in tsplib/ of $LLMOPT_DATA or the package's data (eil51, berlin52)")
        group.add_argument("--truncate", action="store_true",
                           help="coordinates as the official code draws them (uniform reals cut by int())")
        group.add_argument("--num-starts", type=int, default=5, help="random starting traces (default 5)")
        group.add_argument("--any-start", action="store_true", help="accept traces that do not start at city 0")
        group.add_argument("--exact-time", type=float, default=60.0,
                           help="seconds for proving the optimum before the run, else the best known tour (default 60)")

    @staticmethod
    def from_args(args: Any) -> TravellingSalesman:
        instance = read_tsplib(tsplib_file(args.tsplib)) if args.tsplib else random_instance(args.n, args.seed,
                                                                                            truncate=args.truncate)
        best = optimum(instance, args.exact_time)
        return TravellingSalesman(instance, optimum=best.length, optimum_proved=best.proved_optimal,
                                  num_starts=args.num_starts, start_at_zero=not args.any_start)
