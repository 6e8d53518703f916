"""llmopt: black-box optimization with a large language model as the proposal operator (OPRO).

Yang et al., "Large Language Models as Optimizers", arXiv 2309.03409.
"""

from __future__ import annotations

from llmopt.budget import Budget, StopReason
from llmopt.cli.compare import Comparison, compare
from llmopt.experiments.functions import maximize, minimize
from llmopt.experiments.programs import evolve
from llmopt.function_problem import FunctionProblem
from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm import LLM, Completion, LLMConfig, LLMConfigError, Usage
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.optimizer import CallEvent, Candidate, Optimizer, RunResult
from llmopt.problem import Direction, Evaluation, ParseError, Problem
from llmopt.programs.problem import ProgramProblem, Stage
from llmopt.proposers import LLMProposer, OptunaProposer, Proposal, Proposer, RandomProposer, SamplingProposer
from llmopt.store import RunStore, StoreError, load

__version__ = "0.1.0"

__all__ = [
    "Budget", "CallEvent", "Candidate", "Comparison", "Completion", "Direction", "Evaluation", "FunctionProblem", "LLM",
    "LLMConfig", "LLMConfigError", "LLMProposer", "MetaPromptConfig", "Optimizer", "OptunaProposer", "ParseError",
    "Problem", "ProgramProblem", "Proposal", "Proposer", "RandomProposer", "SamplingProposer", "Stage",
    "RunResult", "RunStore", "SolutionHistory", "StopReason", "StoreError", "Trial", "TrialState", "Usage",
    "build_meta_prompt", "compare", "evolve", "load", "maximize", "minimize",
]
