"""Run the overfitting toy (tests/validation_toy.py) with validation on, optionally killing itself.

``--kill-at N`` sends SIGKILL to this process at the N-th write to the store (trial, call, step
boundary or validation row), as tests/scripts/fake_run.py does for the loop itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]  # tests/validation_toy.py; this checkout's llmopt

from validation_toy import optimizer_llm, toy_problem  # noqa: E402

from llmopt import Budget, LLMProposer, Optimizer, RunStore  # noqa: E402

WRITES = ("add_trial", "add_call", "begin_step", "finish_step", "add_validation")


def arm_kill(at: str) -> None:
    """``N``: die at the N-th write of any kind; ``METHOD:N``: at the N-th call of that one (e.g.
    ``finish_step:3``, the write that finishes step 2), after the write."""
    method_name, _, count = at.rpartition(":")
    limit = int(count)
    writes = {"n": 0}

    def wrap(name, method):
        def inner(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            if not method_name or name == method_name:
                writes["n"] += 1
                if writes["n"] == limit:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out
        return inner

    for name in WRITES:
        setattr(RunStore, name, wrap(name, getattr(RunStore, name)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--kill-at", help="N (the N-th write) or METHOD:N (its N-th call)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    if args.kill_at:
        arm_kill(args.kill_at)
    problem, _ = toy_problem()
    store = RunStore(args.store)
    opt = Optimizer(problem, LLMProposer(optimizer_llm(), structured="off"), seed=0, store=store, name="run",
                    resume=args.resume, proposals_per_step=2, max_rounds=1, budget=Budget(max_steps=args.steps),
                    validate_every=args.every, validate_top=args.top)
    result = opt.run()
    by_role = {role: used.calls for role, used in sorted(result.usage_by_role.items())}
    print(result.stop_reason.value, result.steps, len(result.validations), result.usage.calls, result.usage.tokens,
          by_role, result.chosen.number if result.chosen else None)


if __name__ == "__main__":
    main()
