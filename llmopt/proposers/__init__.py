"""Proposers: where candidate solutions come from.

:class:`LLMProposer` is OPRO: one meta-prompt per step, one sample per proposal, each with its
own seed. :class:`SamplingProposer` is the LLM control beside it: the same model with no search
history (independent samples, ``llm-iid``) or with the latest solutions and no scores
(``llm-scs``). :class:`RandomProposer` is the control every LLM result must be judged against.
:class:`OptunaProposer` runs optuna's TPE or CMA-ES sampler on a problem's search space: the
classical black-box baselines on the same loop. :class:`EvoPromptGA` and :class:`EvoPromptDE` are
EvoPrompt's genetic algorithm and differential evolution with the LLM as their operators;
:class:`Islands` is FunSearch's programs database (islands, score-clustered best-shot prompts);
:class:`MapElites` keeps the best solution per cell of the problem's features and improves parents
drawn from the occupied cells.
All number their proposals with the trial numbers
the optimizer hands them, so a resumed run proposes exactly what the original did.
"""

from __future__ import annotations

from llmopt.proposers.base import CallHook, ModelProposer, Proposal, Proposer, answer_format, decode_reply
from llmopt.proposers.classical import ALGORITHMS, OptunaProposer
from llmopt.proposers.evoprompt import EvolutionProposer, EvoPromptDE, EvoPromptGA
from llmopt.proposers.islands import Islands
from llmopt.proposers.map_elites import MapElites
from llmopt.proposers.opro import STRUCTURED, LLMProposer, SamplingProposer, Structured
from llmopt.proposers.random import RandomProposer

__all__ = ["ALGORITHMS", "STRUCTURED", "CallHook", "EvoPromptDE", "EvoPromptGA", "EvolutionProposer", "Islands",
           "LLMProposer", "MapElites", "ModelProposer", "OptunaProposer", "Proposal", "Proposer", "RandomProposer",
           "SamplingProposer", "Structured", "answer_format", "decode_reply"]
