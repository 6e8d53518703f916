"""Linear regression from scores alone (the paper's Section 3.1): ``problem`` and its ``cli`` glue."""

from __future__ import annotations

from problems.linear_regression.problem import LinearRegression, Pair

__all__ = ["LinearRegression", "Pair"]
