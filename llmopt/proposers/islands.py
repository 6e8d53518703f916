"""Islands: FunSearch's programs database as a proposer, for any problem.

The rules are FunSearch's (Romera-Paredes et al., Nature 2023; its code, google-deepmind/funsearch,
``implementation/programs_database.py`` and ``sampler.py``, read for this and written anew), on
llmopt's ask/tell loop:

* **islands**: ``islands`` sub-populations (FunSearch: 10). The starting solutions belong to every
  island; a new solution joins the island its prompt came from.
* **a prompt**: an island drawn uniformly; within it the solutions are clustered by score (FunSearch's
  signature, here the one score); ``shown`` clusters (FunSearch's ``functions_per_prompt``, 2) are
  drawn, with replacement, by a softmax over the cluster scores at a temperature that falls with the
  island's number of solutions, ``temperature * (1 - (n % period) / period)`` (FunSearch: 0.1 and
  30 000), and one solution of each cluster, shorter ones favoured (softmax of minus the lengths,
  normalised by the longest). They are shown ordered by score, worst first, named as versions
  (``version 0``, ``version 1``, ... as FunSearch's ``priority_v0``, ``priority_v1``), and the model
  is asked for the next version. ``samples_per_prompt`` replies are drawn from one prompt
  (FunSearch: 4), each with its own seed.
* **resets**: every ``reset_every`` steps (FunSearch: every 4 hours) the worse half of the islands,
  ranked by their best score with ties broken at random, is emptied and each is seeded with the
  best solution of a random surviving island.

How a step maps to prompts: a round's trial numbers are cut into groups of ``samples_per_prompt``
consecutive numbers; a group's island and the solutions its prompt shows are drawn from
``stream(seed, "islands", first number of the group)``, and each reply's seed derives from its own
number. The database a step samples from is a pure function of the trials of the steps before
it (each trial's ``origin["island"]``; a solution with no island, a starting one, belongs to all)
and of the step number (resets at steps ``R, 2R, ...``, drawn from ``stream(seed, "islands-reset",
step)``), so a resumed run rebuilds it and makes exactly the calls of the uninterrupted run.

Differences from FunSearch, forced by the batched loop or by problems that are not programs: a
step's prompts are all drawn before any of its replies is scored (FunSearch is asynchronous);
the reset period counts steps, not hours; a repeated solution is not scored again (the optimizer
records it as DUPLICATE; its island gains the first copy); a solution drawn twice for one prompt is
shown once; ``score_scale="normalized"`` (not the default) maps an island's cluster scores to
[0, 1] before the softmax, so the temperature means the same on any problem's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm.client import LLM, Completion
from llmopt.metaprompt import MetaPromptConfig, format_value, significant_decimals
from llmopt.problem import CallCost, Direction, Problem
from llmopt.proposers.base import CallHook, ModelProposer, Proposal, Proposer, answer_format, decode_reply
from llmopt.proposers.builtin import NO_CACHE, STRUCTURED_OPTION
from llmopt.proposers.registry import Option, ProposerSpec, non_negative, non_negative_int, positive_int
from llmopt.seeding import derive_seed, stream

#: FunSearch's defaults (``implementation/config.py``): islands, functions per prompt, the cluster
#: sampling temperature and its period (in solutions of an island), samples per prompt.
NUM_ISLANDS = 10
SHOWN = 2
TEMPERATURE = 0.1
PERIOD = 30_000
SAMPLES_PER_PROMPT = 4
#: Steps between resets. FunSearch resets every 4 hours of a run that makes thousands of programs an
#: hour; a run of llmopt makes tens of steps of 8: every 25 steps resets a 50-200 step run 2-8 times.
RESET_EVERY = 25
SCORE_SCALES = ("raw", "normalized")
ScoreScale = Literal["raw", "normalized"]
STRUCTURED = ("auto", "on", "json_schema", "json_object", "off")


# --- the database: a pure function of the history ----------------------------------------------------
@dataclass
class Island:
    """One island: its members' trial numbers in the order they joined, and how many joined since it
    was last (re)made (FunSearch's ``num_programs``, which drives the temperature)."""

    members: list[int]
    joined: int = 0
    seen: set[int] = field(default_factory=set, repr=False)  # the members, for a constant-time test

    def __post_init__(self) -> None:
        self.seen = set(self.members)

    def add(self, number: int) -> None:
        if number not in self.seen:
            self.seen.add(number)
            self.members.append(number)
            self.joined += 1


def goodness(trial: Trial, direction: Direction) -> float:
    """A trial's score with higher better (FunSearch maximizes)."""
    value = float(trial.value)  # type: ignore[arg-type]
    return value if direction is Direction.MAXIMIZE else -value


def best_member(island: Island, trials: dict[int, Trial], direction: Direction) -> Trial | None:
    """The island's best solution; of equal ones the first to join (FunSearch keeps the first)."""
    best: Trial | None = None
    for n in island.members:
        t = trials[n]
        if best is None or goodness(t, direction) > goodness(best, direction):
            best = t
    return best


def _island_of(trial: Trial, count: int) -> int | None:
    """The island a trial was proposed from (None: none, or one this database does not have)."""
    island = (trial.origin or {}).get("island")
    return island if isinstance(island, int) and not isinstance(island, bool) and 0 <= island < count else None


def _admit(islands: list[Island], trial: Trial, trials: dict[int, Trial]) -> None:
    """A trial joins its island: a scored one itself (every island if it has none: a starting or
    suggested solution); a DUPLICATE proposed from an island brings its scored first copy there."""
    island = _island_of(trial, len(islands))
    if trial.state is TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
        for i in (range(len(islands)) if island is None else (island,)):
            islands[i].add(trial.number)
    elif trial.state is TrialState.DUPLICATE and island is not None and trial.duplicate_of in trials:
        first = trials[trial.duplicate_of]
        if first.state is TrialState.COMPLETE and first.value is not None and math.isfinite(first.value):
            islands[island].add(first.number)


@dataclass(frozen=True)
class Reset:
    """One reset: the islands emptied, each with the island whose best seeded it."""

    step: int
    seeded: tuple[tuple[int, int], ...]  # (reset island, founder's island)


def reset(islands: list[Island], trials: dict[int, Trial], direction: Direction, rng: np.random.Generator,
          step: int) -> Reset:
    """Empty the worse half of ``islands`` (by best score; ties in ``rng``'s random order) and seed
    each with the best solution of a random surviving island (FunSearch's ``reset_islands``)."""
    bests = [best_member(island, trials, direction) for island in islands]
    scores = np.array([-math.inf if b is None else goodness(b, direction) for b in bests])
    shuffled = rng.permutation(len(islands))
    ranked = shuffled[np.argsort(scores[shuffled], kind="stable")]  # worst first, ties in random order
    half = len(islands) // 2
    losers, keepers = [int(i) for i in ranked[:half]], [int(i) for i in ranked[half:]]
    seeded = []
    for i in losers:
        founder = keepers[int(rng.integers(len(keepers)))]
        islands[i] = Island([])
        if bests[founder] is not None:
            islands[i].add(bests[founder].number)  # type: ignore[union-attr]
        seeded.append((i, founder))
    return Reset(step, tuple(seeded))


def build_islands(history: SolutionHistory, step: int, count: int, reset_every: int, seed: int,
                  observe: Callable[[int, list[Island]], None] | None = None) -> tuple[list[Island], list[Reset]]:
    """The islands as step ``step`` begins: the trials of steps before it, replayed step by step,
    with a reset after every ``reset_every``-th step (0: never). Pure: a resumed run rebuilds them.
    ``observe(s, islands)``, if given, sees the islands as each step ``s`` ends (after its reset)."""
    trials = {t.number: t for t in history}
    by_step: dict[int, list[Trial]] = {}
    for t in history:
        if t.step < step:
            by_step.setdefault(t.step, []).append(t)
    islands = [Island([]) for _ in range(count)]
    resets = []
    for s in range(step):
        for t in sorted(by_step.get(s, []), key=lambda t: t.number):
            _admit(islands, t, trials)
        if reset_every and s >= 1 and s % reset_every == 0 and count >= 2:
            resets.append(reset(islands, trials, history.direction, stream(seed, "islands-reset", s), s))
        if observe is not None:
            observe(s, islands)
    return islands, resets


# --- sampling one prompt's solutions -------------------------------------------------------------------
def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Tempered softmax, stable for any scale (temperature 0: uniform over the largest)."""
    logits = np.asarray(logits, dtype=float)
    if temperature <= 0:
        top = (logits == logits.max()).astype(float)
        return top / top.sum()
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    return p / p.sum()


def temperature_at(initial: float, period: int, joined: int) -> float:
    """FunSearch's schedule: falls linearly from ``initial`` over ``period`` solutions, then starts over."""
    return initial * (1 - (joined % period) / period)


def sample_cluster(members: Sequence[Trial], rng: np.random.Generator) -> Trial:
    """One solution of a cluster, shorter ones favoured (FunSearch's ``Cluster.sample_program``)."""
    lengths = np.array([len(t.text or "") for t in members], dtype=float)
    normalized = (lengths - lengths.min()) / (lengths.max() + 1e-6)
    return members[int(rng.choice(len(members), p=softmax(-normalized, 1.0)))]


def sample_shown(island: Island, trials: dict[int, Trial], direction: Direction, shown: int,
                 temperature: float, period: int, scale: str, rng: np.random.Generator) -> list[Trial]:
    """The solutions one prompt shows, worst first: ``shown`` clusters (by score) drawn with
    replacement by the tempered softmax of their scores, one solution of each; a solution drawn twice
    is shown once."""
    clusters: dict[float, list[Trial]] = {}
    for n in island.members:
        clusters.setdefault(goodness(trials[n], direction), []).append(trials[n])
    if not clusters:
        return []
    scores = np.array(list(clusters))
    logits = scores
    if scale == "normalized":
        spread = float(scores.max() - scores.min())
        logits = (scores - scores.min()) / spread if spread > 0 else np.zeros(len(scores))
    p = softmax(logits, temperature_at(temperature, period, island.joined))
    picks = rng.choice(len(scores), size=min(len(scores), shown), p=p)
    chosen = [sample_cluster(clusters[float(scores[i])], rng) for i in picks]
    order = np.argsort([goodness(t, direction) for t in chosen], kind="stable")
    out: list[Trial] = []
    for i in order:
        if all(t.number != chosen[i].number for t in out):
            out.append(chosen[i])
    return out


@dataclass(frozen=True)
class _Prompt:
    """One prompt of a step: the island it samples, the solutions it shows (worst first), its text."""

    island: int
    shown: tuple[Trial, ...]
    text: str


def versions_prompt(problem: Problem, shown: Sequence[Trial], config: MetaPromptConfig, context: str | None) -> str:
    """A best-shot prompt: the task, the ``shown`` solutions as versions 0, 1, ... (worst first) with
    their scores in the problem's own form (:meth:`Problem.render`), and the request for the next
    version, in the problem's answer format."""
    noun, value = problem.solution_noun, problem.value_noun
    better = "lower" if problem.direction is Direction.MINIMIZE else "higher"
    parts = [problem.operator_context().strip()]
    if shown:
        values = [float(t.value) for t in shown]  # type: ignore[arg-type]
        low, high = min(values), max(values)
        decimals = significant_decimals(values, config.digits) if config.scores == "significant" else None
        parts.append(f"Below are versions of {_a(noun)}, from the worst to the best, each with its {value} "
                     f"({better} is better).")
        parts += [f"version {i}:\n" + problem.render(t.text or "", format_value(v, config, low, high, decimals))
                  for i, (t, v) in enumerate(zip(shown, values))]
        k = len(shown)
        ask = (f"Write version {k}, an improved version of version {k - 1}: a new {noun}, different from the "
               f"versions above, with a {value} {better} than theirs.")
    else:
        ask = f"Write version 0: {_a(noun)} whose {value} is as {'low' if better == 'lower' else 'high'} as possible."
    if context:
        parts.append(context)
    fmt = problem.structured_answer_format() if config.structured else problem.answer_format()
    parts.append(f"{ask} {fmt}".strip())
    return "\n\n".join(p for p in parts if p)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article (an instruction, a trace)."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _check(islands: int, shown: int, reset_every: int, temperature: float, period: int, samples_per_prompt: int,
           score_scale: str, structured: str) -> None:
    """Bad settings, in one line each, before anything is spent."""
    checks = [
        (1 <= islands <= 1000, f"islands must be in 1..1000, got {islands}"),
        (1 <= shown <= 100, f"shown must be in 1..100 (solutions per prompt), got {shown}"),
        (0 <= reset_every <= 1_000_000, f"reset_every must be in 0..1000000 steps (0: never), got {reset_every}"),
        (0 <= temperature <= 1000, f"temperature must be in [0, 1000] (cluster sampling), got {temperature}"),
        (1 <= period <= 10**9, f"period must be in 1..10^9 (solutions), got {period}"),
        (1 <= samples_per_prompt <= 64, f"samples_per_prompt must be in 1..64, got {samples_per_prompt}"),
        (score_scale in SCORE_SCALES, f"score_scale must be one of {', '.join(SCORE_SCALES)}, got {score_scale!r}"),
        (structured in STRUCTURED, f"structured must be one of {', '.join(STRUCTURED)}, got {structured!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class Islands(ModelProposer):
    """FunSearch's islands on any problem (see the module docstring): ``islands`` sub-populations,
    best-shot prompts of ``shown`` solutions sampled by score cluster at ``temperature`` (falling over
    ``period`` solutions of an island), ``samples_per_prompt`` replies per prompt, the worse half of
    the islands reset every ``reset_every`` steps."""

    kind = "islands"

    def __init__(self, llm: LLM, *, islands: int = NUM_ISLANDS, shown: int = SHOWN, reset_every: int = RESET_EVERY,
                 temperature: float = TEMPERATURE, period: int = PERIOD, samples_per_prompt: int = SAMPLES_PER_PROMPT,
                 score_scale: ScoreScale = "raw", structured: str = "auto", system_prompt: str | None = None,
                 use_store_cache: bool = True) -> None:
        _check(islands, shown, reset_every, temperature, period, samples_per_prompt, score_scale, structured)
        self.llm, self.islands, self.shown, self.reset_every = llm, islands, shown, reset_every
        self.temperature, self.period, self.samples_per_prompt = float(temperature), period, samples_per_prompt
        self.score_scale, self.structured, self.system_prompt = score_scale, structured, system_prompt
        self.use_store_cache = use_store_cache
        self._format: dict[str, Any] | None = None
        self._meta = MetaPromptConfig()
        self._db: list[Island] = [Island([]) for _ in range(islands)]
        self._trials: dict[int, Trial] = {}

    # --- the Proposer protocol ------------------------------------------------------------------
    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}"

    def describe(self, problem: Problem) -> str:
        """``islands <model>``, with the settings that differ from FunSearch's defaults (ours for the
        reset period), so that a table's row says what ran: ``islands m (4 islands, reset every 5)``."""
        settings = [(self.islands, NUM_ISLANDS, f"{self.islands} islands"), (self.shown, SHOWN, f"{self.shown} shown"),
                    (self.reset_every, RESET_EVERY, f"reset every {self.reset_every}" if self.reset_every
                     else "no resets"),
                    (self.temperature, TEMPERATURE, f"cluster temperature {self.temperature:g}"),
                    (self.period, PERIOD, f"period {self.period}"),
                    (self.samples_per_prompt, SAMPLES_PER_PROMPT, f"{self.samples_per_prompt} samples per prompt"),
                    (self.score_scale, "raw", f"{self.score_scale} scores")]
        changed = [words for value, default, words in settings if value != default]
        return f"islands {self.llm.model}" + (f" ({', '.join(changed)})" if changed else "")

    def prepare(self, problem: Problem) -> None:
        """Structured output where the problem has a schema and the model supports it (as OPRO's);
        scores shown as the problem shows them in OPRO's meta-prompt."""
        self._format = answer_format(problem.answer_schema(), self.llm, self.structured)
        self._meta = MetaPromptConfig(structured=self._format is not None).for_problem(problem)

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Rebuild the islands from the trials of the steps before ``step``; the step's record says
        what they hold (each call records its own prompt)."""
        self._db, resets = build_islands(history, step, self.islands, self.reset_every, self.seed or 0)
        self._trials = {t.number: t for t in history}
        bests = [best_member(island, self._trials, problem.direction) for island in self._db]
        lines = [f"islands step {step}: {self.islands} islands (best, solutions): " + ", ".join(
            f"{i}: {'-' if b is None else f'{b.value:.6g}'} ({len(island.members)})"
            for i, (island, b) in enumerate(zip(self._db, bests)))]
        last = resets[-1] if resets else None
        if last is not None and last.step == step - 1:
            lines.append(f"reset after step {last.step}: " + ", ".join(
                f"island {i} from island {j}" for i, j in last.seeded))
        return "\n".join(lines)

    def step_cost(self, problem: Problem, proposals: int, max_rounds: int) -> CallCost | None:
        """One request per proposal, every round; the prompt shows ``shown`` typical solutions."""
        text = problem.typical_text()
        shown = [Trial(number=i, step=0, state=TrialState.COMPLETE, source="estimate", text=text, value=float(i))
                 for i in range(self.shown)]
        prompt = versions_prompt(problem, shown, self._meta, None)
        return self.request_cost(prompt, max_rounds * proposals)

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return self.propose_round(problem, prompt, numbers, numbers, seed, on_call)

    def propose_round(self, problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: CallHook | None = None, *, attempt: int = 0) -> list[Proposal]:
        """Cut ``numbers`` into groups of ``samples_per_prompt``; each group's prompt is drawn from
        (seed, its first number); ask one request per number of ``todo``, each with its own seed."""
        wanted = set(todo)
        jobs: list[tuple[int, _Prompt]] = []
        for start in range(0, len(numbers), self.samples_per_prompt):
            group = numbers[start:start + self.samples_per_prompt]
            if any(n in wanted for n in group):
                made = self.prompt_for(problem, group[0], seed)
                jobs += [(n, made) for n in group if n in wanted]
        llm = self.llm

        def hook(i: int, completion: Completion) -> None:
            if on_call is not None:
                on_call(jobs[i][0], llm.model, completion, prompt=jobs[i][1].text)

        requests = [(self._messages(p.text), (derive_seed(seed, "llm", n),)) for n, p in jobs]
        completions = llm.complete_requests(requests, hook, response_format=self._format) if requests else []
        out = {n: self._decode(problem, n, p, c) for (n, p), c in zip(jobs, completions)}
        return [out[n] for n in todo if n in out]

    def prompt_for(self, problem: Problem, first: int, seed: int) -> _Prompt:
        """The prompt of the group whose first trial number is ``first``: its island, its solutions."""
        rng = stream(seed, "islands", first)
        island = int(rng.integers(self.islands))
        shown = sample_shown(self._db[island], self._trials, problem.direction, self.shown, self.temperature,
                             self.period, self.score_scale, rng)
        text = versions_prompt(problem, shown, self._meta, problem.context(rng))
        return _Prompt(island, tuple(shown), text)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "llm": self.llm.config.to_dict(), "islands": self.islands, "shown": self.shown,
                "reset_every": self.reset_every, "temperature": self.temperature, "period": self.period,
                "samples_per_prompt": self.samples_per_prompt, "score_scale": self.score_scale,
                "structured": self.structured, "response_format": self._format, "system_prompt": self.system_prompt,
                "scores": self._meta.scores}

    # --- helpers -----------------------------------------------------------------------------------
    def _messages(self, prompt: str) -> list[dict[str, Any]]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return out + [{"role": "user", "content": prompt}]

    def _decode(self, problem: Problem, number: int, made: _Prompt, c: Completion) -> Proposal:
        """The reply as a proposal: parents the solutions shown, origin the island. A problem whose
        replies may be edits (a program's) applies them to the best version shown, the last."""
        parents, origin = tuple(t.number for t in made.shown), {"island": made.island}
        if c.text is None:
            return Proposal(number, self.source, error=c.error, call_failed=True, parents=parents, origin=origin)
        edits = type(problem).revise is not Problem.revise and bool(made.shown)
        p = decode_reply(problem, number, self.source, c.text, made.shown[-1] if edits else None)
        return Proposal(number, self.source, solution=p.solution, raw=c.text, error=p.error, parents=parents,
                        origin=origin)


# --- the registry's spec (``--proposer islands``; the entry point in pyproject.toml names it) ---------
def _build(o: Mapping[str, Any], llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return Islands(llm, islands=o["islands"], shown=o["shown"], reset_every=o["reset_every"],
                   temperature=o["cluster_temperature"], period=o["temperature_period"],
                   samples_per_prompt=o["samples_per_prompt"], score_scale=o["cluster_scores"],
                   structured=o["structured"], use_store_cache=not o["no_cache"])


def _spec() -> ProposerSpec:
    options = (
        Option("islands", positive_int, NUM_ISLANDS, metavar="K",
               help=f"number of islands (default {NUM_ISLANDS}, FunSearch's)"),
        Option("shown", positive_int, SHOWN, metavar="N", aliases=("functions-per-prompt",),
               help=f"solutions shown per prompt, as versions worst to best (default {SHOWN}, FunSearch's "
                    "functions_per_prompt)"),
        Option("reset-every", non_negative_int, RESET_EVERY, metavar="R",
               help=f"every R steps reset the worse half of the islands from the best of the others (0: never) "
                    f"(default {RESET_EVERY}; FunSearch: every 4 hours)"),
        Option("cluster-temperature", non_negative, TEMPERATURE, metavar="T",
               help=f"temperature of the softmax over an island's score clusters (default {TEMPERATURE}, FunSearch's)"),
        Option("temperature-period", positive_int, PERIOD, metavar="P",
               help=f"the cluster temperature falls linearly to 0 over P solutions of an island, then starts over "
                    f"(default {PERIOD}, FunSearch's)"),
        Option("samples-per-prompt", positive_int, SAMPLES_PER_PROMPT, metavar="S",
               help=f"replies drawn from one prompt (one island), each with its own seed (default "
                    f"{SAMPLES_PER_PROMPT}, FunSearch's; 1: every proposal from an island of its own)"),
        Option("cluster-scores", str, "raw", choices=SCORE_SCALES,
               help="cluster scores in the softmax: as they are (raw, FunSearch's) or mapped to [0, 1] per island "
                    "(normalized: the temperature means the same on any scale) (default raw)"),
        STRUCTURED_OPTION,
        NO_CACHE,
    )
    return ProposerSpec("islands", _build, uses_llm=True, options=options,
                        hints={"show": "islands shows --shown N solutions per prompt (default 2)"},
                        help="FunSearch's islands")


ISLANDS = _spec()
