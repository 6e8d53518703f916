"""``llmopt run linreg``: the entry point the command line discovers (group ``llmopt.problems``)."""

from __future__ import annotations

from typing import Any

from problems.linear_regression.problem import LinearRegression


class CLI:
    """``llmopt run linreg``: the entry point the command line discovers."""

    HELP = "linear regression from scores alone (the paper's Section 3.1)"

    @staticmethod
    def add_arguments(group: Any) -> None:
        group.add_argument("--w-true", type=int, default=15, help="true slope (default 15)")
        group.add_argument("--b-true", type=int, default=14, help="true intercept (default 14)")
        group.add_argument("--num-points", type=int, default=50, help="data points x = 1..N (default 50)")
        group.add_argument("--start-range", type=int, nargs=2, default=(10, 20), metavar=("LOW", "HIGH"),
                           help="box of the 5 starting pairs (default 10 20)")
        group.add_argument("--random-range", type=int, nargs=2, metavar=("LOW", "HIGH"),
                           help="box of the random control (default: the start box)")

    @staticmethod
    def from_args(args: Any) -> LinearRegression:
        return LinearRegression(w_true=args.w_true, b_true=args.b_true, num_points=args.num_points, seed=args.seed,
                                start_range=tuple(args.start_range),
                                random_range=tuple(args.random_range) if args.random_range else None)
