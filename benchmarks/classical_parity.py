"""The classical controls at parity: optuna's TPE and CMA-ES through llmopt against the same
sampler driving itself (``study.optimize``), on standard continuous test functions.

    python benchmarks/classical_parity.py [--seeds 10] [--first-seed 0] [--evals 200] [--dims 2 5]
                                          [--functions sphere ellipsoid ...] [--samplers tpe cmaes]
                                          [--tpe-constant-liar true|false] [--tpe-multivariate true|false]

A control that is weaker through llmopt than in its own library flatters every LLM row beside it.
Each cell (function, dimension, sampler) runs ``--seeds`` seeds on both sides with exactly
``--evals`` evaluations each (asserted) on the same box:

- optuna: ``optuna.create_study(sampler=TPESampler(seed=s) | CmaEsSampler(seed=s))`` and
  ``study.optimize(f, n_trials=evals)``, the sampler at optuna's defaults;
- llmopt: ``llmopt.minimize(f, schema, proposer="optuna:<sampler>", seed=s)`` with a budget of
  ``max_evals=evals``, no starting solutions (``num_starts=0``: the llmopt run knows nothing the
  optuna run does not), 8 proposals a step unless the proposer sets its own step (see
  ``llmopt.proposers.classical``).

Final precision is the best value minus the function's optimum. Per cell: the medians, the
Mann-Whitney U test (two-sided, and one-sided "llmopt worse", Holm-corrected across the cells),
and the median wall time per evaluation of each side (the function itself costs microseconds, so
this is the library's own time). Prints a Markdown table and the verdict; exits 1 if a cell is
significantly worse through llmopt. The two ``--tpe-*`` flags measure the alternatives to llmopt's
TPE settings (docs/results/classical-parity.md).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.experiments.stats import ALPHA, holm  # noqa: E402

Objective = Callable[[np.ndarray], float]


# --- test functions ------------------------------------------------------------------------------
def sphere(x: np.ndarray) -> float:
    """Separable and well conditioned: the easiest case, where CMA-ES converges fastest."""
    return float(np.sum((x - 1.0) ** 2))


def ellipsoid(x: np.ndarray) -> float:
    """Separable, ill-conditioned (condition number 1e6): needs CMA-ES's covariance adaptation."""
    d = len(x)
    weights = 10.0 ** (6.0 * np.arange(d) / max(d - 1, 1))
    return float(np.sum(weights * (x - 1.0) ** 2))


def rosenbrock(x: np.ndarray) -> float:
    """Non-separable, a curved narrow valley; optimum at (1, ..., 1)."""
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def rastrigin(x: np.ndarray) -> float:
    """Multimodal (a regular grid of local minima), shifted so that the optimum is (1, ..., 1),
    not the box's centre, where CMA-ES starts."""
    z = x - 1.0
    return float(10.0 * len(z) + np.sum(z**2 - 10.0 * np.cos(2.0 * math.pi * z)))


def ackley(x: np.ndarray) -> float:
    """Multimodal with a nearly flat outer region; shifted like Rastrigin."""
    z = x - 1.0
    d = len(z)
    return float(-20.0 * math.exp(-0.2 * math.sqrt(np.sum(z**2) / d))
                 - math.exp(np.sum(np.cos(2.0 * math.pi * z)) / d) + 20.0 + math.e)


def styblinski_tang(x: np.ndarray) -> float:
    """Multimodal, 2^d local minima, the global one in a corner region (x_i = -2.9035...)."""
    return float(0.5 * np.sum(x**4 - 16.0 * x**2 + 5.0 * x))


#: Styblinski-Tang's minimizer in each coordinate: the smallest root of 4x^3 - 32x + 5 = 0.
ST_ARGMIN = float(min(np.roots([4.0, 0.0, -32.0, 5.0]).real))


@dataclass(frozen=True)
class TestFunction:
    """A test function, its box [low, high]^d, and where its optimum is (to measure precision)."""

    name: str
    f: Objective
    kind: str
    low: float = -5.0
    high: float = 5.0
    argmin: float = 1.0  # every coordinate of the minimizer

    def optimum_x(self, d: int) -> np.ndarray:
        return np.full(d, self.argmin)

    def optimum(self, d: int) -> float:
        return self.f(self.optimum_x(d))

    def precision(self, best: float, d: int) -> float:
        """Best value minus the optimum; clipped at 0 (a float's rounding can land a hair below)."""
        return max(0.0, best - self.optimum(d))


FUNCTIONS = {f.name: f for f in (
    TestFunction("sphere", sphere, "separable"),
    TestFunction("ellipsoid", ellipsoid, "ill-conditioned"),
    TestFunction("rosenbrock", rosenbrock, "non-separable valley"),
    TestFunction("rastrigin", rastrigin, "multimodal", low=-5.12, high=5.12),
    TestFunction("ackley", ackley, "multimodal"),
    TestFunction("styblinski-tang", styblinski_tang, "multimodal", argmin=ST_ARGMIN),
)}
SAMPLERS = ("tpe", "cmaes")


# --- one run on each side ----------------------------------------------------------------------
def names(d: int) -> list[str]:
    return [f"x{i}" for i in range(d)]


def schema(fn: TestFunction, d: int) -> dict[str, Any]:
    """The box as a JSON schema of ``d`` numbers (optuna float dimensions named ``/x0``, ...)."""
    props = {n: {"type": "number", "minimum": fn.low, "maximum": fn.high} for n in names(d)}
    return {"type": "object", "properties": props, "required": names(d), "additionalProperties": False}


@dataclass(frozen=True)
class Outcome:
    precision: float
    evaluations: int
    seconds: float

    @property
    def per_eval_ms(self) -> float:
        return 1e3 * self.seconds / self.evaluations


def sampler_seed(sampler: str, seed: int) -> int:
    """The seed llmopt gives the sampler of run ``seed``; optuna's own study gets the same one."""
    from llmopt.seeding import derive_seed

    return derive_seed(seed, "optuna", sampler)


def make_sampler(sampler: str, seed: int) -> Any:
    import optuna

    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed)


def run_optuna(fn: TestFunction, d: int, sampler: str, seed: int, evals: int) -> Outcome:
    """optuna driving itself: ``study.optimize`` with the sampler at its defaults."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keys = [f"/{n}" for n in names(d)]  # llmopt's dimension names: the same parameters, the same order

    def objective(trial: Any) -> float:
        return fn.f(np.array([trial.suggest_float(k, fn.low, fn.high) for k in keys]))

    started = time.perf_counter()
    study = optuna.create_study(sampler=make_sampler(sampler, sampler_seed(sampler, seed)))
    study.optimize(objective, n_trials=evals)
    seconds = time.perf_counter() - started
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return Outcome(fn.precision(min(t.value for t in done), d), len(done), seconds)


def run_llmopt_result(fn: TestFunction, d: int, sampler: str, seed: int, evals: int) -> Any:
    """The same sampler through llmopt: ``llmopt.minimize`` with a budget of ``evals`` evaluations and
    no starting solutions; the :class:`llmopt.RunResult`."""
    import llmopt

    def objective(value: dict[str, float]) -> float:
        return fn.f(np.array([value[n] for n in names(d)], dtype=float))

    return llmopt.minimize(objective, schema(fn, d), proposer=f"optuna:{sampler}", seed=seed, num_starts=0,
                           budget=llmopt.Budget(max_steps=None, max_evals=evals, stop_when_solved=False))


def run_llmopt(fn: TestFunction, d: int, sampler: str, seed: int, evals: int) -> Outcome:
    """:func:`run_llmopt_result`, timed."""
    started = time.perf_counter()
    result = run_llmopt_result(fn, d, sampler, seed, evals)
    seconds = time.perf_counter() - started
    return Outcome(fn.precision(result.best.value, d), result.evaluations, seconds)


# --- the statistics of a cell ------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One (function, dimension, sampler) cell: both sides' runs and the tests between them."""

    function: str
    d: int
    sampler: str
    optuna: tuple[Outcome, ...]
    llmopt: tuple[Outcome, ...]
    p_two_sided: float
    p_worse: float  # one-sided: llmopt's precision tends to be larger (worse) than optuna's
    p_worse_holm: float | None = None  # p_worse, Holm-adjusted across the table's cells

    @property
    def worse(self) -> bool:
        """Significantly worse through llmopt (Holm-adjusted when the table adjusted it)."""
        p = self.p_worse if self.p_worse_holm is None else self.p_worse_holm
        return p < ALPHA

    def median(self, side: str, what: str = "precision") -> float:
        return statistics.median(getattr(o, what) for o in getattr(self, side))


def rank_tests(llmopt_values: Sequence[float], optuna_values: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of llmopt's final precisions against optuna's: (two-sided p, one-sided p of
    "llmopt's tend to be larger", i.e. worse). Exact without ties (10 runs a side is small enough),
    else the normal approximation with the tie correction; identical samples give p = 1."""
    from scipy.stats import mannwhitneyu

    x, y = list(map(float, llmopt_values)), list(map(float, optuna_values))
    if sorted(x) == sorted(y):
        return 1.0, 1.0
    method = "exact" if len(set(x + y)) == len(x + y) else "asymptotic"
    two = float(mannwhitneyu(x, y, alternative="two-sided", method=method).pvalue)
    worse = float(mannwhitneyu(x, y, alternative="greater", method=method).pvalue)
    return two, worse


def make_cell(function: str, d: int, sampler: str, optuna_runs: Sequence[Outcome],
              llmopt_runs: Sequence[Outcome]) -> Cell:
    two, worse = rank_tests([o.precision for o in llmopt_runs], [o.precision for o in optuna_runs])
    return Cell(function, d, sampler, tuple(optuna_runs), tuple(llmopt_runs), two, worse)


def adjust(cells: Sequence[Cell]) -> list[Cell]:
    """The cells with their one-sided p-values Holm-corrected across the table (one family: "is
    llmopt worse anywhere?")."""
    adjusted = holm([c.p_worse for c in cells])
    return [Cell(c.function, c.d, c.sampler, c.optuna, c.llmopt, c.p_two_sided, c.p_worse, a)
            for c, a in zip(cells, adjusted)]


def time_ratio(cells: Sequence[Cell]) -> float:
    """llmopt's wall time per evaluation over optuna's, all runs of all cells together."""
    mine = sum(o.seconds for c in cells for o in c.llmopt) / sum(o.evaluations for c in cells for o in c.llmopt)
    theirs = sum(o.seconds for c in cells for o in c.optuna) / sum(o.evaluations for c in cells for o in c.optuna)
    return mine / theirs


# --- the table ---------------------------------------------------------------------------------
def measure(fn: TestFunction, d: int, sampler: str, seeds: Sequence[int], evals: int) -> Cell:
    """Both sides, seed by seed (interleaved, so a change in the machine's load hits both alike);
    each side must have scored exactly ``evals`` evaluations."""
    optuna_runs, llmopt_runs = [], []
    for seed in seeds:
        optuna_runs.append(run_optuna(fn, d, sampler, seed, evals))
        llmopt_runs.append(run_llmopt(fn, d, sampler, seed, evals))
        counts = (optuna_runs[-1].evaluations, llmopt_runs[-1].evaluations)
        assert counts == (evals, evals), f"{fn.name} {d}-D {sampler} seed {seed}: evaluations {counts} != {evals}"
    return make_cell(fn.name, d, sampler, optuna_runs, llmopt_runs)


def table(cells: Sequence[Cell]) -> str:
    from llmopt.experiments.report import markdown_table

    rows: list[list[Any]] = [["function", "d", "sampler", "optuna: median precision", "llmopt: median precision",
                              "p (two-sided)", "p (llmopt worse, Holm)", "verdict", "ms/eval optuna",
                              "ms/eval llmopt", "time ratio"]]
    for c in cells:
        verdict = "**worse**" if c.worse else "better" if c.p_two_sided < ALPHA and not c.p_worse < 0.5 else "parity"
        rows.append([c.function, c.d, c.sampler, f"{c.median('optuna'):.3g}", f"{c.median('llmopt'):.3g}",
                     f"{c.p_two_sided:.3f}", f"{c.p_worse_holm if c.p_worse_holm is not None else c.p_worse:.3f}",
                     verdict, f"{c.median('optuna', 'per_eval_ms'):.2f}", f"{c.median('llmopt', 'per_eval_ms'):.2f}",
                     f"{time_ratio([c]):.2f}"])
    return markdown_table(rows)


@contextlib.contextmanager
def tpe_variant(constant_liar: bool | None = None, multivariate: bool | None = None) -> Iterator[None]:
    """Measure another TPE than the default, to see why the default is what it is: llmopt's
    ``constant_liar`` for a step's batch (None: llmopt's choice), and ``multivariate`` on both sides
    (None: optuna's default; False is optuna 4's default), set for the duration of the block."""
    import optuna

    from llmopt.proposers import classical

    liar, base = classical.TPE_CONSTANT_LIAR, optuna.samplers.TPESampler
    if constant_liar is not None:
        classical.TPE_CONSTANT_LIAR = constant_liar
    if multivariate is not None:
        optuna.samplers.TPESampler = functools.partial(base, multivariate=multivariate)
    try:
        yield
    finally:
        classical.TPE_CONSTANT_LIAR, optuna.samplers.TPESampler = liar, base


def warm_up() -> None:
    """Imports and first-touch costs, outside the timed runs."""
    for sampler in SAMPLERS:
        run_optuna(FUNCTIONS["sphere"], 2, sampler, 0, 12)
        run_llmopt(FUNCTIONS["sphere"], 2, sampler, 0, 12)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ... (default 0)")
    ap.add_argument("--evals", type=int, default=200)
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 5])
    ap.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--tpe-constant-liar", choices=["true", "false"],
                    help="TPE's constant liar for llmopt's batches (default: llmopt's choice)")
    ap.add_argument("--tpe-multivariate", choices=["true", "false"],
                    help="TPE's multivariate option on both sides (default: optuna's; false is optuna 4's)")
    args = ap.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    flag = {None: None, "true": True, "false": False}
    cells = []
    with tpe_variant(flag[args.tpe_constant_liar], flag[args.tpe_multivariate]):
        warm_up()
        for sampler in args.samplers:
            for name in args.functions:
                for d in args.dims:
                    started = time.perf_counter()
                    cells.append(measure(FUNCTIONS[name], d, sampler, seeds, args.evals))
                    print(f"# {name} {d}-D {sampler}: {time.perf_counter() - started:.0f} s", file=sys.stderr,
                          flush=True)
    cells = adjust(cells)
    print(table(cells))
    worse = [f"{c.function} {c.d}-D {c.sampler}" for c in cells if c.worse]
    ratios = ", ".join(f"{s} {time_ratio([c for c in cells if c.sampler == s]):.2f}" for s in args.samplers)
    print(f"\n{args.evals} evaluations on each side of every run, {args.seeds} seeds a cell; "
          f"significantly worse through llmopt (Holm, alpha {ALPHA}): {', '.join(worse) or 'none'}; "
          f"llmopt's time per evaluation / optuna's: {time_ratio(cells):.2f} in all ({ratios})")
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
