"""Run OPRO on linear regression with the scripted LLM, optionally killing itself mid-run.

Used by the resume and reproducibility tests: ``--kill-at N`` sends SIGKILL to this process at
the N-th write to the store (trial, call, or step boundary), the harshest interruption there is.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fakes import evo_script, linreg_script, many_script, scripted_llm  # noqa: E402
from harness import arm_kill  # noqa: E402

from llmopt import Budget, LLMProposer, Optimizer, RandomProposer, RunStore  # noqa: E402
from llmopt.proposers import EvoPromptDE, EvoPromptGA, Islands  # noqa: E402
from llmopt.proposers.map_elites import MapElites  # noqa: E402
from problems.linear_regression.problem import LinearRegression  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--name", default="run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--proposer", default="llm")
    ap.add_argument("--kill-at", type=int)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--latency", type=float, default=0.001, help="seconds per scripted call")
    ap.add_argument("--per-call", type=int, default=1)
    ap.add_argument("--samples-per-request", type=int, default=1)
    ap.add_argument("--redraw-temperature", type=float)
    args = ap.parse_args()
    if args.kill_at:
        arm_kill(args.kill_at, RunStore, ("add_trial", "add_call", "begin_step", "finish_step"))
    script = evo_script if args.proposer.startswith("evoprompt") else many_script if args.per_call > 1 else linreg_script
    llm, _ = scripted_llm(script, latency_s=args.latency)
    cost = dict(per_call=args.per_call, samples_per_request=args.samples_per_request,
                redraw_temperature=args.redraw_temperature)
    evolution = {"evoprompt-ga": EvoPromptGA, "evoprompt-de": EvoPromptDE}
    if args.proposer in evolution:
        proposer = evolution[args.proposer](llm, population=6)
    elif args.proposer == "islands":  # through a reset (after step 2), two replies a prompt
        proposer = Islands(llm, islands=3, reset_every=2, samples_per_prompt=2, score_scale="normalized")
    elif args.proposer == "map-elites":
        proposer = MapElites(llm)
    else:
        proposer = LLMProposer(llm, **cost) if args.proposer == "llm" else RandomProposer()
    store = RunStore(args.store)
    opt = Optimizer(LinearRegression(seed=args.seed), proposer, seed=args.seed, store=store, name=args.name,
                    resume=args.resume, budget=Budget(max_steps=args.steps, stop_when_solved=False))
    result = opt.run()
    print(result.stop_reason.value, result.steps, len(result.history))


if __name__ == "__main__":
    main()
