"""The words of EvoPrompt's operators (Guo et al., 2023, "Connecting Large Language Models with
Evolutionary Algorithms Yields Powerful Prompt Optimizers"), written anew for llmopt.

Each operator is one request to the LLM, answered with the child bracketed in tags:

* GA (:func:`ga_prompt`): cross two parents over, then mutate the result;
* DE (:func:`de_prompt`): find where two donors differ, mutate those parts, put them into a third
  (the best, by default), then cross that with the member being replaced;
* the initial population's paraphrase (:func:`paraphrase_prompt`): a variation that keeps the meaning.

Two styles. ``"prompt"`` (prompt optimization) speaks of prompts as EvoPrompt's templates do, and
the GA and DE requests show one worked example first (EvoPrompt's one-shot form; our own example).
``"generic"`` (every other problem: linear regression's pairs, TSP's traces, a user's function)
speaks of the problem's own nouns, shows the solutions in the problem's own encoding and opens
with the problem's :meth:`~llmopt.problem.Problem.operator_context` (the task and what a solution
means; by default its description) and which way is better, as LMEA did for TSP; it has no worked
example (one would have to be invented for each problem). The child is read from the last
``<tag>...</tag>`` of the reply (``<prompt>`` or ``<answer>``), else from the whole reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmopt.problem import Direction, Problem

#: The prompt-optimization style's worked examples (no digits: GSM8K's filter forbids them).
GA_EXAMPLE = """Please follow the instruction step-by-step to generate a better prompt.
1. Cross over the following prompts and generate a new prompt:
Prompt 1: Work out the answer to the question.
Prompt 2: Read the problem slowly, note every quantity, and reason before answering.
2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.

1. Crossover Prompt: Read the question slowly, note every quantity, and work out the answer.
2. <prompt>Go through the question carefully, keep track of each quantity, and reason your way to the answer.</prompt>

"""

DE_EXAMPLE = """Please follow the instruction step-by-step to generate a better prompt.
1. Identify the different parts between Prompt 1 and Prompt 2:
Prompt 1: Answer the question.
Prompt 2: Think about the question and explain your answer.
2. Randomly mutate the different parts.
3. Combine the different parts with Prompt 3, selectively replace its parts with the different parts from step 2, \
and generate a new prompt.
Prompt 3: Read the question carefully and solve it one step at a time.
4. Cross over the prompt from step 3 with the following basic prompt and generate a final prompt bracketed with \
<prompt> and </prompt>:
Basic Prompt: Let's solve the problem.

1. Identifying the different parts between Prompt 1 and Prompt 2:
Different parts:
"Answer" vs "Think about"
"the question" vs "the question and explain your answer"

2. Randomly mutating the different parts:
"Answer" -> "Respond to"
"Think about" -> "Reflect on"
"explain your answer" -> "justify each step"

3. Combining the different parts with Prompt 3:
New Prompt: Reflect on the question carefully and solve it one step at a time, justifying each step.

4. Crossing over the prompt from step 3 with the basic prompt:
Final Prompt: <prompt>Let's reflect on the problem and solve it one step at a time, justifying each step.</prompt>

"""


@dataclass(frozen=True)
class Words:
    """How an operator speaks of a problem's solutions."""

    noun: str  # "prompt", "(w, b) pair", "trace"
    plural: str
    tag: str  # the child is bracketed with <tag> and </tag>
    context: str  # what opens every request ("" for prompts: EvoPrompt's requests have none)
    closing: str  # after the request: how to write the child (the problem's answer format)
    examples: bool  # show the one-shot worked examples


def words(problem: Problem) -> Words:
    """The operators' words for ``problem`` (its ``operator_style``)."""
    if problem.operator_style == "prompt":
        return Words("prompt", "prompts", "prompt", "", "", True)
    closing = (f"Inside the tags, write the {problem.solution_noun} in the same form as the {problem.solution_plural} "
               f"above. {problem.answer_format()}")
    lower = problem.direction is Direction.MINIMIZE
    context = (f"{problem.operator_context().strip()}\nA better {problem.solution_noun} has a "
               f"{'lower' if lower else 'higher'} {problem.value_noun}.\n\n")
    return Words(problem.solution_noun, problem.solution_plural, "answer", context, closing, False)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _finish(w: Words, body: str) -> str:
    return w.context + body + (f"\n{w.closing}" if w.closing else "")


def ga_prompt(w: Words, first: str, second: str) -> str:
    """Cross ``first`` and ``second`` (encoded solutions) over, then mutate the child."""
    body = (f"Please follow the instruction step-by-step to generate a better {w.noun}.\n"
            f"1. Cross over the following {w.plural} and generate a new {w.noun}:\n"
            f"{_cap(w.noun)} 1: {first}\n{_cap(w.noun)} 2: {second}\n"
            f"2. Mutate the {w.noun} generated in Step 1 and generate a final {w.noun} bracketed with <{w.tag}> and "
            f"</{w.tag}>.\n")
    return (GA_EXAMPLE if w.examples else "") + _finish(w, body) + ("\n1. " if w.examples else "")


def de_prompt(w: Words, member: str, first: str, second: str, third: str) -> str:
    """Mutate where ``first`` and ``second`` differ, combine with ``third``, cross with ``member``."""
    n = _cap(w.noun)
    body = (f"Please follow the instruction step-by-step to generate a better {w.noun}.\n"
            f"1. Identify the different parts between {n} 1 and {n} 2:\n"
            f"{n} 1: {first}\n{n} 2: {second}\n"
            f"2. Randomly mutate the different parts.\n"
            f"3. Combine the different parts with {n} 3, selectively replace its parts with the different parts "
            f"from step 2, and generate a new {w.noun}.\n"
            f"{n} 3: {third}\n"
            f"4. Cross over the {w.noun} from step 3 with the following basic {w.noun} and generate a final "
            f"{w.noun} bracketed with <{w.tag}> and </{w.tag}>:\n"
            f"Basic {n}: {member}\n")
    return (DE_EXAMPLE if w.examples else "") + _finish(w, body) + ("\n1. " if w.examples else "")


def paraphrase_prompt(w: Words, parent: str) -> str:
    """A variation of ``parent`` that keeps its meaning (EvoPrompt's initial population)."""
    if w.examples:  # EvoPrompt's own request, asking for the tags its other operators use
        return ("Generate a variation of the following instruction while keeping the semantic meaning. Bracket the "
                f"variation with <{w.tag}> and </{w.tag}>.\nInput: {parent}\nOutput:")
    body = (f"Generate a variation of the following {w.noun}: a new {w.noun} close to it, but different.\n"
            f"{_cap(w.noun)}: {parent}\n"
            f"Write the new {w.noun} bracketed with <{w.tag}> and </{w.tag}>.\n")
    return _finish(w, body)


def child_text(w: Words, reply: str) -> str:
    """The child in a reply: the text of its last ``<tag>...</tag>`` (EvoPrompt's rule), else the
    reply without a dangling opening tag, stripped (the problem's decoder reads it either way)."""
    found = re.findall(rf"<{w.tag}>(.*?)</{w.tag}>", reply, re.DOTALL | re.IGNORECASE)
    if found:
        return found[-1].strip()
    opened = re.split(rf"<{w.tag}>", reply, flags=re.IGNORECASE)
    return opened[-1].strip()
