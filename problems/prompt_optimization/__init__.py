"""Prompt optimization: datasets, answer grading, the scorer, and the OPRO problem."""

from problems.prompt_optimization.data import DataError, Example, Task, load_task
from problems.prompt_optimization.grading import grade, infer_kind
from problems.prompt_optimization.problem import PromptOptimization
from problems.prompt_optimization.scorer import Scorer, scorer_prompt

__all__ = ["DataError", "Example", "PromptOptimization", "Scorer", "Task", "grade", "infer_kind", "load_task",
           "scorer_prompt"]
