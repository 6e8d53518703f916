"""The statistics of a comparison table: summaries with intervals, a test against the control, aRT.

Every test, interval and resample is scipy's (``scipy.stats``): the Mann-Whitney U test, the
Wilcoxon signed-rank test, the distribution-free interval of a median (``quantile_test``), the
bootstrap band of a median curve and the Wilson interval of ``binomtest``. The one thing
written here is Holm's step-down correction (scipy has none; it is a sort and a running maximum,
checked in the tests against Holm's worked example), and COCO's average runtime, which is a sum
divided by a count.

An interval printed beside a number is that number's interval: a table cell's median carries the
confidence interval of the median (never of the mean, which for skewed values need not even
contain the median). Everything is deterministic: the bootstrap resamples with a fixed seed, so the
same runs always print the same table and figure.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from llmopt.problem import Direction

CONFIDENCE = 0.95
ALPHA = 0.05
SMALL_N = 10  # below this many runs a table says that n is small
_SEED = 20230907  # the bootstrap's fixed seed (any constant: the tables must not change from call to call)


@dataclass(frozen=True)
class Summary:
    """A column's numbers over runs: the median with its interquartile range and the confidence
    interval of the median (:func:`median_ci`); the mean for those who want it, with no interval."""

    n: int
    median: float
    q1: float
    q3: float
    mean: float
    ci_low: float | None  # the median's interval; None: too few values for one at CONFIDENCE
    ci_high: float | None


def finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the median: the order statistics whose binomial
    coverage is at least ``confidence`` (scipy's ``quantile_test(...).confidence_interval``). Being
    two order statistics around the middle, it always contains the sample median, whatever the
    skew. None when no such interval exists (fewer than 6 values at 95%: even the smallest and the
    largest cover the median with less than 95% probability)."""
    from scipy import stats  # here, not at import: scipy.stats costs a second on every llmopt command

    xs = np.sort(np.asarray(finite(values), dtype=float))
    if len(xs) < 2:
        return None
    ci = stats.quantile_test(xs, q=float(np.median(xs)), p=0.5).confidence_interval(confidence_level=confidence)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None
    return float(ci.low), float(ci.high)


def summarize(values: Sequence[float | None]) -> Summary | None:
    """None when no value is a finite number."""
    xs = finite(values)
    if not xs:
        return None
    q1, median, q3 = (float(q) for q in np.percentile(xs, [25, 50, 75]))
    ci = median_ci(xs)
    return Summary(len(xs), median, q1, q3, float(np.mean(xs)), *(ci or (None, None)))


def median_band(curves: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise median of curves (rows: runs, columns: x) and a percentile-bootstrap band of the
    median (scipy, vectorized over the columns); with one run the band is the line."""
    from scipy import stats  # here, not at import: scipy.stats costs a second on every llmopt command

    median = np.median(curves, axis=0)
    if curves.shape[0] < 2:
        return median, median.copy(), median.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # columns where every run agrees have a degenerate distribution
        ci = stats.bootstrap((curves,), np.median, axis=0, confidence_level=confidence, n_resamples=999,
                             method="percentile", rng=np.random.default_rng(_SEED)).confidence_interval
    low = np.where(np.isfinite(ci.low), ci.low, median)
    high = np.where(np.isfinite(ci.high), ci.high, median)
    return median, low, high


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of a success rate (scipy's ``binomtest``); None for no trials."""
    from scipy import stats  # here, not at import: scipy.stats costs a second on every llmopt command

    if n <= 0:
        return None
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def average_runtime(runs: Sequence[tuple[int | None, int]]) -> float | None:
    """COCO's aRT: evaluations summed over all runs, each successful run counted up to its first
    success and each unsuccessful one in full, divided by the number of successful runs. ``runs``:
    (evaluations to the target or None, evaluations the run made). inf when no run succeeded,
    None for no runs."""
    if not runs:
        return None
    successes = sum(1 for hit, _ in runs if hit is not None)
    spent = sum(hit if hit is not None else total for hit, total in runs)
    return spent / successes if successes else math.inf


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: the i-th smallest p is multiplied
    by (m - i), i from 0, and made monotone with a running maximum, capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """A configuration's final values against the control's."""

    test: str  # "Mann-Whitney U" or "Wilcoxon signed-rank"
    n: int
    n_control: int
    pvalue: float
    sign: int  # +1: the configuration tends better than the control, -1 worse, 0 no tendency
    adjusted: float | None = None  # Holm-adjusted p across a table's rows

    def verdict(self, alpha: float = ALPHA) -> str:
        p = self.pvalue if self.adjusted is None else self.adjusted
        if p < alpha and self.sign > 0:
            return "better"
        if p < alpha and self.sign < 0:
            return "worse"
        return "no significant difference"


def compare_to_control(values: Sequence[float], control: Sequence[float], direction: Direction | str,
                       paired: bool = False) -> Comparison | None:
    """A two-sided test of ``values`` against ``control``: Wilcoxon signed-rank on the differences
    when the runs are paired (the same seeds, hence the same instances and starting points, in the
    same order), else Mann-Whitney U. None when either side has no value (or, paired, the lengths
    differ). Identical samples give p = 1."""
    from scipy import stats  # here, not at import: scipy.stats costs a second on every llmopt command

    x, y = np.asarray(values, dtype=float), np.asarray(control, dtype=float)
    if len(x) == 0 or len(y) == 0 or (paired and len(x) != len(y)):
        return None
    better_sign = -1.0 if Direction(direction) is Direction.MINIMIZE else 1.0
    if paired:
        diff = x - y
        if np.all(diff == 0):
            return Comparison("Wilcoxon signed-rank", len(x), len(y), 1.0, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns when it falls back from the exact distribution
            p = float(stats.wilcoxon(diff, alternative="two-sided").pvalue)
        lean = float(np.median(diff)) or float(np.mean(diff))
        return Comparison("Wilcoxon signed-rank", len(x), len(y), p, int(np.sign(lean * better_sign)))
    result = stats.mannwhitneyu(x, y, alternative="two-sided")
    lean = float(result.statistic) - len(x) * len(y) / 2.0  # U of x above its null mean: x tends larger
    p = 1.0 if math.isnan(result.pvalue) else float(result.pvalue)
    return Comparison("Mann-Whitney U", len(x), len(y), p, int(np.sign(lean * better_sign)))
