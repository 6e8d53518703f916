"""Run the overfitting toy (tests/validation_toy.py) with validation on, optionally killing itself.

``--kill-at N`` sends SIGKILL to this process at the N-th write to the store (trial, call, step
boundary or validation row), as tests/scripts/fake_run.py does for the loop itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from validation_toy import optimizer_llm, toy_problem  # noqa: E402

from llmopt import Budget, LLMProposer, Optimizer, RunStore  # noqa: E402

WRITES = ("add_trial", "add_call", "begin_step", "finish_step", "add_validation")


def arm_kill(at: int) -> None:
    writes = {"n": 0}

    def wrap(method):
        def inner(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            writes["n"] += 1
            if writes["n"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return inner

    for name in WRITES:
        setattr(RunStore, name, wrap(getattr(RunStore, name)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--kill-at", type=int)
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
    print(result.stop_reason.value, result.steps, len(result.validations))


if __name__ == "__main__":
    main()
