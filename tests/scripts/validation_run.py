"""Run the overfitting toy (tests/validation_toy.py) with validation on, optionally killing itself.

``--kill-at N`` sends SIGKILL to this process at the N-th write to the store (trial, call, step
boundary or validation row), as tests/scripts/fake_run.py does for the loop itself.
"""

from __future__ import annotations

import argparse
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]  # tests/validation_toy.py; this checkout's llmopt

from harness import arm_kill  # noqa: E402
from validation_toy import optimizer_llm, toy_problem  # noqa: E402

from llmopt import Budget, LLMProposer, Optimizer, RunStore  # noqa: E402


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
        arm_kill(args.kill_at, RunStore)
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
