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

import importlib
from typing import TYPE_CHECKING, Any

from llmopt.testing.programs import InProcessCandidate
from llmopt.testing.scripted import Call, ScriptedLLM, ScriptExhausted

if TYPE_CHECKING:  # what the names below are (the import contract sees these imports too)
    from llmopt.testing import strategies
    from llmopt.testing.contract import ContractViolation, ProblemContract, check_problem
    from llmopt.testing.proposer_contract import ProposerCase, ProposerContract, check_proposer

#: names loaded on first use: the contracts and strategies import hypothesis (~0.4 s), which a
#: process that only wants a scripted model (every scripted child process of a test suite) never uses
_LAZY = {"strategies": "llmopt.testing.strategies", "ContractViolation": "llmopt.testing.strategies",
         "ProblemContract": "llmopt.testing.contract", "check_problem": "llmopt.testing.contract",
         "ProposerCase": "llmopt.testing.proposer_contract", "ProposerContract": "llmopt.testing.proposer_contract",
         "check_proposer": "llmopt.testing.proposer_contract"}


def __getattr__(name: str) -> Any:
    """``from llmopt.testing import check_problem`` etc.: the module that holds the name, imported now."""
    if name not in _LAZY:
        raise AttributeError(f"module 'llmopt.testing' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "strategies" else getattr(module, name)
    globals()[name] = value
    return value


__all__ = ["Call", "ContractViolation", "InProcessCandidate", "ProblemContract", "ProposerCase", "ProposerContract",
           "ScriptExhausted", "ScriptedLLM", "check_problem", "check_proposer", "strategies"]
