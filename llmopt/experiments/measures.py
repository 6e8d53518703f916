"""What a run's trials measure, counted one way for every table that publishes it.

The benchmarks and ``llmopt compare`` read stored trials and publish counts from them: proposals
by state, evaluations until the problem is solved, proposals per step. Each was once counted
inline, a little differently in each script; here each is one small function with a test on
runs whose answers are known by hand (tests/test_benchmark_numbers.py), so a number in the docs
and the code behind it meet in one place. Budget checks raise :class:`BudgetMismatch`: a table
that claims equal budgets refuses to print when a run's budget differs, rather than publish an
unequal comparison.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from llmopt.history import Trial, TrialState


class BudgetMismatch(ValueError):
    """A run did not spend the budget a benchmark claims every run of its table spent."""


@dataclass(frozen=True)
class ProposalCounts:
    """A run's proposals (every trial but the starting solutions) by what became of them."""

    proposed: int
    complete: int  # new and valid: scored
    duplicate: int
    invalid: int
    failed: int

    def share_pct(self, count: int) -> float | None:
        """``count`` as a percentage of the proposals (None: nothing was proposed)."""
        return 100.0 * count / self.proposed if self.proposed else None


def proposal_counts(trials: Iterable[Trial]) -> ProposalCounts:
    """Proposals by state; starting solutions are the problem's, not a proposer's, so they are left out."""
    states = Counter(t.state for t in trials if t.source != "start")
    return ProposalCounts(proposed=sum(states.values()), complete=states[TrialState.COMPLETE],
                          duplicate=states[TrialState.DUPLICATE], invalid=states[TrialState.INVALID],
                          failed=states[TrialState.FAILED])


def evals_until(trials: Iterable[Trial], reached: Callable[[Trial], bool]) -> int | None:
    """Scored solutions (starting ones included, COCO's runtime) in trial-number order up to and
    including the first one ``reached`` accepts; None when none does."""
    count = 0
    for t in sorted(trials, key=lambda t: t.number):
        if t.state is TrialState.COMPLETE:
            count += 1
            if reached(t):
                return count
    return None


def proposals_per_step(trials: Iterable[Trial]) -> dict[int, int]:
    """How many proposals each step drew (every state; step 0's starting solutions are not proposals)."""
    return dict(sorted(Counter(t.step for t in trials if t.source != "start").items()))


def check_proposals_per_step(label: str, trials: Iterable[Trial], per_step: int, steps: int | None = None,
                             solved: bool = False) -> None:
    """Raise :class:`BudgetMismatch` unless every step drew exactly ``per_step`` proposals and, when
    ``steps`` is given, the run took that many steps (fewer only if it stopped ``solved``): the
    "every method gets the same proposals" a one-round benchmark claims."""
    counts = proposals_per_step(trials)
    off = {step: n for step, n in counts.items() if n != per_step}
    if off:
        raise BudgetMismatch(f"{label}: steps {off} drew a number of proposals other than {per_step}")
    taken = max(counts, default=0)
    if steps is not None and (taken > steps or (taken < steps and not solved)):
        raise BudgetMismatch(f"{label}: {taken} steps, not the {steps} every run of the table is given "
                             "(fewer only when it solved the problem)")


def check_equal(what: str, by_run: Mapping[str, float], expected: float | None = None) -> None:
    """Raise :class:`BudgetMismatch` unless every run spent the same ``what`` (``expected``, if given),
    naming each run that differs."""
    if not by_run:
        return
    want = expected if expected is not None else Counter(by_run.values()).most_common(1)[0][0]
    off = {name: value for name, value in by_run.items() if value != want}
    if off:
        listed = ", ".join(f"{name}: {value:g}" for name, value in off.items())
        raise BudgetMismatch(f"unequal {what}: {want:g} expected, but {listed}")
