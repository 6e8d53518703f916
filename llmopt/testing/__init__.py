"""What users test their own problems with (as ``optuna.testing`` ships suites for samplers).

    from llmopt.testing import ProblemContract, ScriptedLLM, check_problem, strategies

    check_problem(MyProblem())                      # every property; AssertionError names the broken one
    class TestMyProblem(ProblemContract):           # or in pytest, one test per property
        problem = MyProblem()
    llm = ScriptedLLM(["[3]", "no idea", "[7]"])    # a scripted model for Optimizer(..., LLMProposer(llm))
    replies = strategies.replies(MyProblem())       # hostile LLM replies, for your own @given tests
    my_eval.evaluate(InProcessCandidate(source))    # a program evaluator's unit test, without the sandbox
    check_proposer(make_my_proposer)                # the proposer contract: make_my_proposer(llm) -> Proposer
    class TestMyProposer(ProposerContract):         # or in pytest, one test per property
        proposer = make_my_proposer
"""

from __future__ import annotations

from llmopt.testing import strategies
from llmopt.testing.contract import ContractViolation, ProblemContract, check_problem
from llmopt.testing.programs import InProcessCandidate
from llmopt.testing.proposer_contract import ProposerCase, ProposerContract, check_proposer
from llmopt.testing.scripted import Call, ScriptedLLM, ScriptExhausted

__all__ = ["Call", "ContractViolation", "InProcessCandidate", "ProblemContract", "ProposerCase", "ProposerContract",
           "ScriptExhausted", "ScriptedLLM", "check_problem", "check_proposer", "strategies"]
