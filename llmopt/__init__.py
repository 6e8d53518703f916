"""llmopt: black-box optimization with a large language model as the proposal operator (OPRO).

Yang et al., "Large Language Models as Optimizers", arXiv 2309.03409.
"""

from __future__ import annotations

from .export import load
from .history import SolutionHistory, Trial, TrialState
from .llm import LLM, Completion, LLMConfig, LLMConfigError
from .metaprompt import MetaPromptConfig, build_meta_prompt
from .optimizer import Budget, Candidate, Optimizer, RunResult, StopReason
from .problem import Direction, ParseError, Problem
from .proposers import LLMProposer, Proposal, Proposer, RandomProposer
from .storage import RunStore, StoreError, Usage

__version__ = "0.1.0"

__all__ = [
    "Budget", "Candidate", "Completion", "Direction", "LLM", "LLMConfig", "LLMConfigError", "LLMProposer",
    "MetaPromptConfig", "Optimizer", "ParseError", "Problem", "Proposal", "Proposer", "RandomProposer",
    "RunResult", "RunStore", "SolutionHistory", "StopReason", "StoreError", "Trial", "TrialState", "Usage",
    "build_meta_prompt", "load",
]
