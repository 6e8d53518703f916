"""EvoPrompt's genetic algorithm and differential evolution, with the LLM as their operators.

The method is EvoPrompt's (Guo et al., 2023; its code, beeevita/EvoPrompt, read for this and
written anew), on llmopt's ask/tell loop, where one step is one generation:

* **initial population** (``init="evoprompt"``, the default): the problem's starting solutions are
  scored (step 0), the best half of the population size (at least one) are kept, and step 1 asks
  the LLM for paraphrases of them, in turn, until the population holds ``population`` members.
  ``init="starts"``: the best ``population`` starting solutions are the population; evolution
  begins at step 1. Where there is nothing to start from (no starting solution scored), the
  first step draws the problem's random solutions instead.
* **GA** (:class:`EvoPromptGA`): each generation makes ``population`` children. Parents are picked
  by roulette wheel (EvoPrompt's default: a wheel of ``population`` draws in proportion to fitness,
  then two distinct draws from it per child), by tournament (the better of two random members,
  twice) or at random; the LLM crosses the two over and mutates the result in one reply. Survival
  is (μ+λ): the next population is the best ``population`` of members and children, duplicates
  never admitted (the optimizer records a repeated solution as DUPLICATE and never scores it).
* **DE** (:class:`EvoPromptDE`): each generation makes one child per member: three donors are drawn
  from the other members and the third is replaced by the population's best (``donor="best"``,
  EvoPrompt's default; ``"random"`` keeps it); the LLM mutates where the first two differ,
  combines that with the third and crosses the result with the member. The child replaces the
  member only if it scores strictly better.

Differences from EvoPrompt's code, forced by a batched loop: a generation's children are all
asked before any is scored (EvoPrompt's DE updates its best donor as children are scored, one by
one), and a child that does not decode or repeats a known solution is lost (no redraw), where
EvoPrompt scores whatever text it extracted.

Fitness for the wheel: the scores themselves where the problem maximizes a non-negative score
(accuracy, as in EvoPrompt); otherwise (a loss, a tour length) how much better than the worst
member each is, plus the population's spread divided by its size, so the worst keeps a chance.

Everything a generation draws comes from ``stream(seed, "evoprompt", step)`` and the population is
rebuilt from the history (the parents recorded with each trial), so a resumed run proposes the
same children with the same seeds, served from the cache. Every request is recorded with its call
(its own prompt) and every trial with its parents' numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmopt.history import SolutionHistory, Trial
from llmopt.llm.client import LLM, Completion
from llmopt.problem import CallCost, Direction, Problem
from llmopt.proposers.base import CallHook, ModelProposer, Proposal, decode_reply
from llmopt.proposers.evoprompt_templates import Words, child_text, de_prompt, ga_prompt, paraphrase_prompt, words
from llmopt.seeding import derive_seed, stream

Init = Literal["evoprompt", "starts"]
INITS = ("evoprompt", "starts")
SELECTIONS = ("wheel", "tournament", "random")
DONORS = ("best", "random")

#: EvoPrompt's evolution temperature and population size.
TEMPERATURE = 0.5
POPULATION = 10


@dataclass(frozen=True)
class _Child:
    """One planned request: the operator's prompt and the numbers of the trials it uses (no prompt
    and ``random``: a random solution instead, where there is nothing to start from)."""

    prompt: str | None
    parents: tuple[int, ...]
    random: bool = False


def _paraphrases(w: Words, parents: list[Trial], size: int) -> list[_Child]:
    """``size`` paraphrase requests, of ``parents`` in turn."""
    return [_Child(paraphrase_prompt(w, str(parents[i % len(parents)].text)), (parents[i % len(parents)].number,))
            for i in range(size)]


class EvolutionProposer(ModelProposer):
    """What EvoPrompt's GA and DE share: the population, the initial paraphrases, the calls."""

    kind = "evoprompt"
    redraws = False  # a generation is one child per slot; a child that fails is lost
    minimum = 2  # members an operator needs

    def __init__(self, llm: LLM, *, population: int = POPULATION, init: Init = "evoprompt",
                 temperature: float | None = TEMPERATURE, system_prompt: str | None = None,
                 use_store_cache: bool = True) -> None:
        if not self.minimum <= population <= 1000:
            raise ValueError(f"population must be in {self.minimum}..1000 for {self.kind}, got {population}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if temperature is not None and not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature}")
        self.llm = llm if temperature is None else llm.with_settings(temperature=temperature)
        self.population, self.init, self.temperature = population, init, temperature
        self.system_prompt, self.use_store_cache = system_prompt, use_store_cache
        self._members: list[Trial] = []  # the population at the start of the step begun last
        self._kept: list[Trial] = []  # the starting solutions kept (init "evoprompt")
        self._paraphrase = False  # the step begun last is the initial paraphrase step
        self._step = 0
        self._size = population

    # --- the Proposer protocol -------------------------------------------------------------
    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}"

    def describe(self, problem: Problem) -> str:
        return f"{self.kind} {self.llm.model}"

    @property
    def label(self) -> str:
        return self.kind

    def step_cost(self, problem: Problem, proposals: int, max_rounds: int) -> CallCost | None:
        """One operator request per child (``population`` a generation, no redraws), each as long as
        this proposer's longest operator prompt over the problem's typical solutions."""
        prompt = self.operator_prompt(words(problem), problem.typical_text())
        calls = self.population
        return CallCost("optimizer", self.llm, calls, calls * self.llm.count_tokens(prompt),
                        calls * self.llm.config.max_tokens)

    def operator_prompt(self, w: Words, text: str) -> str:
        """The operator's prompt over solutions like ``text`` (GA's crossover and mutation)."""
        return ga_prompt(w, text, text)

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Rebuild the population from the trials of the steps before ``step``; plan its size."""
        self._step = step
        earlier = [t for t in history if t.step < step]
        starts = [t for t in earlier if t.step == 0 and t.ok]
        ranked = SolutionHistory(problem.direction, starts).top_k(len(starts))[::-1]  # best first
        if self.init == "evoprompt":
            self._kept = ranked[:max(1, self.population // 2)]
        else:
            self._kept = ranked[:self.population]
        self._paraphrase = self.init == "evoprompt" and step == 1
        evolved = sorted((t for t in earlier if t.step >= 1), key=lambda t: t.number)
        self._members = self._survivors(problem, self._kept, evolved)
        if self._paraphrase or not self._members:
            self._size = self.population - len(self._kept) if self._kept else self.population
            return (f"EvoPrompt initial population, step {step}: paraphrases of the starting solutions "
                    f"{_numbers(self._kept)}" if self._kept else
                    f"EvoPrompt initial population, step {step}: random solutions (no starting solution was scored)")
        self._size = self.children()
        return f"{self.kind} generation {step}: population {_numbers(self._members)}"

    def step_size(self, requested: int) -> int:
        return max(self._size, 0)

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return self.propose_round(problem, prompt, numbers, numbers, seed, on_call)

    def propose_round(self, problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: CallHook | None = None, *, attempt: int = 0) -> list[Proposal]:
        """The step's i-th number is its plan's i-th child (the plan drawn from (seed, step))."""
        w = words(problem)
        rng = stream(seed, "evoprompt", self._step)
        if self._paraphrase or not self._members:
            plan = self._initial_plan(w, len(numbers))
        else:
            plan = self.plan(problem, w, rng, len(numbers))
        if plan and len(plan) < len(numbers):  # ask(n) beyond a DE generation: members get a second child
            plan = [plan[i % len(plan)] for i in range(len(numbers))]
        wanted = set(todo)
        jobs = [(n, child) for n, child in zip(numbers, plan) if n in wanted]
        out: dict[int, Proposal] = {}
        for n, child in jobs:
            if child.random:
                solution = problem.random_solution(stream(seed, "evoprompt-random", n))
                out[n] = Proposal(n, "random", solution=solution)
        asked = [(n, child) for n, child in jobs if not child.random]
        requests = [(self._messages(child.prompt or ""), (derive_seed(seed, "llm", n),)) for n, child in asked]
        llm = self.llm

        def hook(i: int, completion: Completion) -> None:
            if on_call is not None:
                on_call(asked[i][0], llm.model, completion, prompt=asked[i][1].prompt)

        completions = llm.complete_requests(requests, hook) if requests else []
        for (n, child), c in zip(asked, completions):
            out[n] = self._decode(problem, w, n, child.parents, c)
        return [out[n] for n in todo if n in out]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "llm": self.llm.config.to_dict(), "population": self.population,
                "init": self.init, "temperature": self.temperature, "system_prompt": self.system_prompt}

    # --- what GA and DE say ------------------------------------------------------------------
    def children(self) -> int:
        """Children of one generation."""
        return self.population

    def plan(self, problem: Problem, w: Words, rng: np.random.Generator, size: int) -> list[_Child]:
        """The generation's requests, in slot order."""
        raise NotImplementedError

    def _survivors(self, problem: Problem, kept: list[Trial], evolved: list[Trial]) -> list[Trial]:
        """The population after the steps of ``evolved`` (every trial of steps 1.., by number)."""
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------------
    def _initial_plan(self, w: Words, size: int) -> list[_Child]:
        if not self._kept:
            return [_Child(None, (), random=True) for _ in range(size)]
        return _paraphrases(w, self._kept, size)

    def _first_generation(self, kept: list[Trial]) -> int:
        """The step evolution starts at: 2 after an initial step (paraphrases, or random solutions
        where no start was kept), else 1."""
        return 2 if (self.init == "evoprompt" or not kept) else 1

    def _initial_members(self, kept: list[Trial], evolved: list[Trial]) -> list[Trial]:
        """The population EvoPrompt starts evolving: the kept starting solutions, then the initial
        step's scored paraphrases (or random solutions), at most ``population``."""
        first = [t for t in evolved if t.step == 1 and t.ok] if self._first_generation(kept) == 2 else []
        return (kept + first)[:self.population]

    def _messages(self, prompt: str) -> list[dict[str, Any]]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return out + [{"role": "user", "content": prompt}]

    def _decode(self, problem: Problem, w: Words, number: int, parents: tuple[int, ...], c: Completion) -> Proposal:
        if c.text is None:
            return Proposal(number, self.source, error=c.error, call_failed=True, parents=parents)
        p = decode_reply(problem, number, self.source, child_text(w, c.text))
        return Proposal(number, self.source, solution=p.solution, raw=c.text, error=p.error, parents=parents)


class EvoPromptGA(EvolutionProposer):
    """EvoPrompt's GA: roulette-wheel (or tournament, or random) parents, LLM crossover and
    mutation in one reply, (μ+λ) survival of the best ``population``. See the module docstring."""

    kind = "evoprompt-ga"

    def __init__(self, llm: LLM, *, selection: str = "wheel", **options: Any) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        super().__init__(llm, **options)
        self.selection = selection

    def config(self) -> dict[str, Any]:
        return {**super().config(), "selection": self.selection}

    def _survivors(self, problem: Problem, kept: list[Trial], evolved: list[Trial]) -> list[Trial]:
        start = self._first_generation(kept)
        pool = self._initial_members(kept, evolved) + [t for t in evolved if t.step >= start and t.ok]
        return SolutionHistory(problem.direction, pool).top_k(self.population)[::-1]  # best first

    def plan(self, problem: Problem, w: Words, rng: np.random.Generator, size: int) -> list[_Child]:
        members = self._members
        if len(members) < 2:  # a population of one cannot cross over: it is paraphrased instead
            return _paraphrases(w, members, size)
        values = np.array([float(t.value) for t in members])  # type: ignore[arg-type]
        wheel: list[int] = []
        if self.selection == "wheel":
            wheel = [int(i) for i in rng.choice(len(members), size=len(members), replace=True,
                                                 p=fitness(values, problem.direction))]
        out = []
        for _ in range(size):
            if self.selection == "wheel":
                a, b = (wheel[int(i)] for i in rng.choice(len(wheel), size=2, replace=False))
            elif self.selection == "tournament":
                a, b = (self._better(problem, [int(i) for i in rng.choice(len(members), size=2, replace=False)])
                        for _ in range(2))
            else:
                a, b = (int(i) for i in rng.choice(len(members), size=2, replace=False))
            first, second = members[a], members[b]
            out.append(_Child(ga_prompt(w, str(first.text), str(second.text)), (first.number, second.number)))
        return out

    def _better(self, problem: Problem, picks: list[int]) -> int:
        a, b = picks
        va, vb = float(self._members[a].value), float(self._members[b].value)  # type: ignore[arg-type]
        return b if problem.direction.better(vb, va) else a


class EvoPromptDE(EvolutionProposer):
    """EvoPrompt's DE: for each member, donors a, b, c (c the best by default), the LLM's
    differential mutation and crossover with the member; the child replaces the member only if
    it scores better. See the module docstring."""

    kind = "evoprompt-de"
    minimum = 4  # the member and three other members to draw donors from

    def __init__(self, llm: LLM, *, donor: str = "best", **options: Any) -> None:
        if donor not in DONORS:
            raise ValueError(f"donor must be one of {', '.join(DONORS)}, got {donor!r}")
        super().__init__(llm, **options)
        self.donor = donor

    def config(self) -> dict[str, Any]:
        return {**super().config(), "donor": self.donor}

    def operator_prompt(self, w: Words, text: str) -> str:
        return de_prompt(w, text, text, text, text)

    def children(self) -> int:
        members = len(self._members)
        return members if members >= self.minimum else self.population - members

    def _survivors(self, problem: Problem, kept: list[Trial], evolved: list[Trial]) -> list[Trial]:
        members = self._initial_members(kept, evolved)
        start = self._first_generation(kept)
        for step in sorted({t.step for t in evolved if t.step >= start}):  # in order: later generations last
            kids = [t for t in evolved if t.step == step]
            if len(members) < self.minimum:  # that step filled the population up (see plan)
                members = (members + [t for t in kids if t.ok])[:self.population]
                continue
            slot = {t.number: i for i, t in enumerate(members)}
            for child in kids:
                if not child.ok or not child.parents or child.parents[0] not in slot:
                    continue
                i = slot[child.parents[0]]
                if problem.direction.better(float(child.value), float(members[i].value)):  # type: ignore[arg-type]
                    members[i] = child
        return members

    def plan(self, problem: Problem, w: Words, rng: np.random.Generator, size: int) -> list[_Child]:
        members = self._members
        if len(members) < self.minimum:  # too few to draw three donors: paraphrases fill the population up
            return _paraphrases(w, members, size)
        best = SolutionHistory(problem.direction, members).best()
        assert best is not None
        out = []
        for j, member in enumerate(members[:size]):
            others = [t for k, t in enumerate(members) if k != j]
            a, b, c = (others[int(i)] for i in rng.choice(len(others), size=3, replace=False))
            if self.donor == "best":
                c = best
            text = de_prompt(w, str(member.text), str(a.text), str(b.text), str(c.text))
            out.append(_Child(text, (member.number, a.number, b.number, c.number)))
        return out


def fitness(values: np.ndarray, direction: Direction) -> np.ndarray:
    """Roulette-wheel probabilities of members scored ``values`` (see the module docstring)."""
    if direction is Direction.MAXIMIZE and (values >= 0).all() and values.sum() > 0:
        return values / values.sum()
    worst = values.min() if direction is Direction.MAXIMIZE else values.max()
    spread = float(np.ptp(values))
    if spread == 0:
        return np.full(len(values), 1.0 / len(values))
    weights = np.abs(values - worst) + spread / len(values)
    return weights / weights.sum()


def _numbers(trials: list[Trial]) -> str:
    return ", ".join(f"#{t.number}" for t in trials) or "(none)"


PROPOSERS = {"evoprompt-ga": EvoPromptGA, "evoprompt-de": EvoPromptDE}
