"""MAP-Elites with the model as its mutation: an archive of the best solution in each cell of a grid
over the problem's features, parents drawn from the occupied cells, one request per child.

The method is MAP-Elites (Mouret & Clune, 2015) as OpenEvolve runs it on programs (its
``database.py`` read for this and written anew), on llmopt's ask/tell loop, for any problem:

* **features**: the problem's :meth:`~llmopt.problem.Problem.features` (a program's lines and
  branches, a tour's crossings and neighbour rank, an instruction's words and sentences, a
  function's first numeric variables, or the user's ``features=``), the first two unless
  ``features`` names others. Each feature's declared range is cut into ``bins`` equal cells; a
  value outside it sits in the edge cell. OpenEvolve rescales its bins as values arrive, so a
  cell's meaning drifts with the run; here the ranges are fixed and recorded with the run.
* **the archive** (:mod:`llmopt.proposers.archive`): every scored trial of the steps before the
  current one, by number; a trial takes its cell if it is empty or it scores strictly better.
  It is rebuilt from the history at each step (features cached by trial number), so a resumed
  run rebuilds exactly the archive the uninterrupted one had.
* **parents**: for trial number ``n``, from ``stream(seed, "map-elites", n)``: with probability
  ``exploration`` (default 0.3) a cell drawn uniformly from the occupied ones, otherwise
  (exploitation) one drawn uniformly from the elite cells, the best :data:`ELITE_SHARE` (10 %, at
  least one) of the occupied cells by score. OpenEvolve's defaults are 0.2 exploration (its
  island's programs), 0.7 exploitation (its elite archive) and 0.1 any program; our archive
  holds elites only, so its "any program" is our exploration.
* **the prompt**: the problem's task (its ``operator_context``), up to ``inspirations`` (default
  2) elites of other cells (the best one, then drawn uniformly) with their scores and features,
  worst to best, then the parent, "the solution to improve", and a request for a better one in
  the problem's answer format. A program's SEARCH/REPLACE edits apply to the parent
  (:func:`~llmopt.proposers.base.decode_reply` with ``parent``).
* **islands** (``islands=K``, off by default): trial ``n`` belongs to island ``n % K``; each island
  has its own archive (an island still empty draws from all of them), and every ``migrate_every``
  steps each island's best elite enters the next island's archive (a ring, as OpenEvolve migrates).

What each trial records (its proposal's ``origin``, kept in the store as ``metrics["origin"]``;
all JSON): ``cell``, the parent's cell (absent when the archive was empty); ``child_cell`` and
``features``, the child's own (the grid's features only, 6 significant digits; absent when the
reply gave no solution); ``island`` when ``islands > 1``. The grid is in the run's proposer
config (``features``, ``ranges``, ``bins``), so coverage and QD-score come from stored trials
alone (:func:`llmopt.proposers.archive.stored_archive`); the starting solutions carry no origin.
The trial's ``parents`` are the parent, then the inspirations shown.

pyribs' ``GridArchive`` was considered for the archive and not used: the archive here is a dict
and 30 lines; pyribs (0.12) would bring numba, pandas, scikit-learn and scipy, stores numeric
solution arrays (text needs its object dtype), samples elites from one generator of its own
(our draws are per trial number, so a resumed run draws the same), offers no selection by score
rank, and maximizes only. Its binning rule is the one used here, so archives agree cell for cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.llm.client import LLM, Completion
from llmopt.metaprompt import MetaPromptConfig, format_value, significant_decimals
from llmopt.problem import CallCost, Direction, Problem
from llmopt.proposers import archive as grid_archive
from llmopt.proposers.archive import Cell, Grid
from llmopt.proposers.base import CallHook, ModelProposer, Proposal, answer_format, decode_reply
from llmopt.seeding import derive_seed, stream

#: Share of the occupied cells (the best by score, at least one) that exploitation draws from.
ELITE_SHARE = 0.1
EXPLORATION = 0.3
BINS = 10
INSPIRATIONS = 2
MIGRATE_EVERY = 10
STRUCTURED = ("auto", "on", "json_schema", "json_object", "off")


def choose_features(problem: Problem, wanted: Sequence[str] | None) -> tuple[str, ...]:
    """The features a grid uses: ``wanted`` (names of the problem's), else its first two; a name the
    problem does not have is refused in one line that lists the names it has."""
    names, ranges = tuple(problem.feature_names()), tuple(problem.feature_ranges())
    if len(names) != len(ranges) or not names:
        raise ValueError(f"problem {problem.name!r} declares {len(names)} feature names and {len(ranges)} ranges")
    chosen = tuple(wanted) if wanted else names[:2]
    unknown = [n for n in chosen if n not in names]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"--features: {', '.join(unknown) or 'a feature named twice'}: not features of problem "
                         f"{problem.name!r} (its features: {', '.join(names)})")
    return chosen


@dataclass(frozen=True)
class _Child:
    """One planned request: its parent (None: the archive was empty), inspirations, island, prompt."""

    parent: Trial | None
    inspirations: tuple[Trial, ...]
    island: int
    prompt: str


class MapElites(ModelProposer):
    """MAP-Elites on the problem's features with the model as mutation; see the module docstring."""

    kind = "map-elites"

    def __init__(self, llm: LLM, *, features: Sequence[str] | None = None, bins: int | Sequence[int] = BINS,
                 exploration: float = EXPLORATION, inspirations: int = INSPIRATIONS, islands: int = 1,
                 migrate_every: int = MIGRATE_EVERY, structured: str = "auto", system_prompt: str | None = None,
                 use_store_cache: bool = True) -> None:
        self.bins = (int(bins),) if isinstance(bins, int) else tuple(int(b) for b in bins)
        if not self.bins or any(b < 1 or b > 1000 for b in self.bins):
            raise ValueError(f"bins must be in 1..1000 (cells per feature), got {bins}")
        if not 0.0 <= exploration <= 1.0:
            raise ValueError(f"exploration must be in [0, 1] (the share of parents drawn uniformly), got {exploration}")
        if not 0 <= inspirations <= 20:
            raise ValueError(f"inspirations must be in 0..20 (elites of other cells shown), got {inspirations}")
        if not 1 <= islands <= 100:
            raise ValueError(f"islands must be in 1..100, got {islands}")
        if migrate_every < 1:
            raise ValueError(f"migrate_every must be >= 1 (steps between migrations), got {migrate_every}")
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {', '.join(STRUCTURED)}, got {structured!r}")
        self.llm, self.wanted = llm, tuple(features) if features is not None else None
        self.exploration, self.inspirations = float(exploration), int(inspirations)
        self.islands, self.migrate_every = int(islands), int(migrate_every)
        self.structured, self.system_prompt, self.use_store_cache = structured, system_prompt, use_store_cache
        self.grid: Grid | None = None  # decided in prepare(), from the problem's features
        self._index: tuple[int, ...] = ()  # the chosen features' places in the problem's
        self._format: dict[str, Any] | None = None
        self._features: dict[int, tuple[float, ...] | None] = {}  # by trial number (pure: a cache)
        self._archives: list[dict[Cell, Trial]] = [{}]
        self._direction = Direction.MINIMIZE
        self._step = 0

    # --- the Proposer protocol -------------------------------------------------------------------
    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}"

    def describe(self, problem: Problem) -> str:
        grid = self.grid
        shape = "" if grid is None else f" ({' x '.join(f'{n}/{b}' for n, b in zip(grid.names, grid.bins))})"
        isl = f", {self.islands} islands" if self.islands > 1 else ""
        return f"map-elites {self.llm.model}{shape}{isl}"

    def prepare(self, problem: Problem) -> None:
        """Choose the features and make the grid (one-line errors before anything is spent); decide
        structured output as OPRO does."""
        wanted = choose_features(problem, self.wanted)
        names, ranges = tuple(problem.feature_names()), tuple(problem.feature_ranges())
        if len(self.bins) not in (1, len(wanted)):
            raise ValueError(f"--bins: give one number, or one per feature ({len(wanted)}), got {list(self.bins)}")
        self._index = tuple(names.index(n) for n in wanted)
        self._direction, self._features = problem.direction, {}  # a new problem: nothing cached holds
        bins = self.bins * len(wanted) if len(self.bins) == 1 else self.bins
        self.grid = Grid(tuple(wanted), tuple((float(ranges[i][0]), float(ranges[i][1])) for i in self._index), bins)
        self._format = answer_format(problem.answer_schema(), self.llm, self.structured)

    def begin_step(self, problem: Problem, history: SolutionHistory, step: int) -> str | None:
        """Rebuild the islands' archives from the trials of the steps before ``step``."""
        self._step = step
        self._archives = self._replay(problem, [t for t in history if t.step < step], step)
        grid = self._grid()
        sizes = [len(a) for a in self._archives]
        where = f" (islands: {', '.join(map(str, sizes))})" if self.islands > 1 else ""
        return (f"map-elites step {step}: {len(self._union())} of {grid.cells} cells occupied{where}; features "
                f"{', '.join(grid.names)}")

    def step_cost(self, problem: Problem, proposals: int, max_rounds: int) -> CallCost | None:
        """One request per proposal and redraw, each showing ``inspirations`` + 1 typical solutions."""
        text = problem.typical_text()
        shown = [Trial(number=i, step=0, state=TrialState.COMPLETE, source="estimate", text=text, key=i,
                       value=float(i)) for i in range(self.inspirations + 1)]
        names = self.grid.names if self.grid is not None else ("feature",)
        values = {t.number: tuple(0.0 for _ in names) for t in shown}
        prompt = self._prompt(problem, shown[-1], tuple(shown[:-1]), values, names)
        return self.request_cost(prompt, max_rounds * proposals)

    def propose(self, problem: Problem, prompt: str | None, numbers: list[int], seed: int,
                on_call: CallHook | None = None) -> list[Proposal]:
        return self.propose_round(problem, prompt, numbers, numbers, seed, on_call)

    def propose_round(self, problem: Problem, prompt: str | None, numbers: list[int], todo: list[int], seed: int,
                      on_call: CallHook | None = None, *, attempt: int = 0) -> list[Proposal]:
        """Each number of ``todo`` its own parent (drawn from (seed, number)) and request."""
        plans = [(n, self._plan(problem, n, seed)) for n in todo]
        requests = [(self._messages(child.prompt), (derive_seed(seed, "llm", n),)) for n, child in plans]
        llm = self.llm

        def hook(i: int, completion: Completion) -> None:
            if on_call is not None:
                on_call(plans[i][0], llm.model, completion, prompt=plans[i][1].prompt)

        completions = llm.complete_requests(requests, hook, response_format=self._format) if requests else []
        return [self._decode(problem, n, child, c) for (n, child), c in zip(plans, completions)]

    def config(self) -> dict[str, Any]:
        grid = self.grid.to_config() if self.grid is not None else {"features": self.wanted, "bins": list(self.bins)}
        out = {"kind": self.kind, "llm": self.llm.config.to_dict(), **grid, "exploration": self.exploration,
               "elite_share": ELITE_SHARE, "inspirations": self.inspirations, "islands": self.islands,
               "structured": self.structured, "response_format": self._format, "system_prompt": self.system_prompt}
        if self.islands > 1:
            out["migrate_every"] = self.migrate_every
        return out

    # --- the archive ---------------------------------------------------------------------------------
    def _grid(self) -> Grid:
        if self.grid is None:
            raise RuntimeError("MapElites is not bound to a problem (Proposer.bind)")
        return self.grid

    def features_of(self, problem: Problem, number: int, solution: Any) -> tuple[float, ...] | None:
        """The chosen features of trial ``number``'s solution (None: the problem's features() failed
        or gave a non-finite number: the trial stays out of the archive)."""
        if number not in self._features:
            try:
                every = tuple(float(v) for v in problem.features(solution))
                values: tuple[float, ...] | None = tuple(every[i] for i in self._index)
            except Exception:  # a user's features() bug must not kill a paid-for run: the trial stays out
                values = None
            self._features[number] = values if values is not None and all(map(math.isfinite, values)) else None
        return self._features[number]

    def _cell(self, problem: Problem, trial: Trial) -> Cell | None:
        values = self.features_of(problem, trial.number, trial.solution)
        return None if values is None else self._grid().cell(values)

    def _island(self, trial: Trial) -> int:
        island = (trial.origin or {}).get("island")
        return island if isinstance(island, int) and 0 <= island < self.islands else trial.number % self.islands

    def _replay(self, problem: Problem, trials: list[Trial], step: int) -> list[dict[Cell, Trial]]:
        """The islands' archives after ``trials`` (those of the steps before ``step``), with the
        migrations of every ``migrate_every``-th step boundary on the way."""
        archives: list[dict[Cell, Trial]] = [{} for _ in range(self.islands)]
        by_step: dict[int, list[Trial]] = {}
        for t in sorted((t for t in trials if t.ok), key=lambda t: t.number):
            by_step.setdefault(t.step, []).append(t)
        for boundary in range(1, step + 1):
            for t in by_step.get(boundary - 1, []):
                cell = self._cell(problem, t)
                if cell is not None:
                    grid_archive.add(archives[self._island(t) if self.islands > 1 else 0], cell, t, problem.direction)
            if self.islands > 1 and boundary % self.migrate_every == 0:
                self._migrate(problem, archives)
        return archives

    def _migrate(self, problem: Problem, archives: list[dict[Cell, Trial]]) -> None:
        """Each island's best elite enters the next island's archive (its cell, if better there)."""
        best = [grid_archive.ranked(a, problem.direction)[0] if a else None for a in archives]
        for i, top in enumerate(best):
            if top is not None:
                grid_archive.add(archives[(i + 1) % len(archives)], top[0], top[1], problem.direction)

    def _union(self) -> dict[Cell, Trial]:
        """Every island's elites in one archive (the best per cell; a tie: the lower island's)."""
        out: dict[Cell, Trial] = {}
        for a in self._archives:
            for cell, t in a.items():
                grid_archive.add(out, cell, t, self._direction)
        return out

    # --- a child's plan, prompt and decoding -----------------------------------------------------------
    def _plan(self, problem: Problem, number: int, seed: int) -> _Child:
        """Trial ``number``'s island, parent and inspirations, drawn from ``stream(seed, "map-elites", number)``."""
        rng = stream(seed, "map-elites", number)
        island = number % self.islands
        pool = self._archives[island] or self._union()
        cells = sorted(pool)
        if not cells:
            return _Child(None, (), island, self._prompt(problem, None, (), {}, self._grid().names))
        if rng.random() < self.exploration:
            parent_cell = cells[int(rng.integers(len(cells)))]
        else:
            elites = [c for c, _ in grid_archive.ranked(pool, problem.direction)]
            top = elites[:max(1, math.ceil(ELITE_SHARE * len(elites)))]
            parent_cell = top[int(rng.integers(len(top)))]
        others = [c for c, _ in grid_archive.ranked(pool, problem.direction) if c != parent_cell]
        shown = others[:1] if self.inspirations else []
        rest = sorted(c for c in others[1:])
        extra = min(self.inspirations - len(shown), len(rest))
        if extra > 0:
            shown += [rest[int(i)] for i in rng.choice(len(rest), size=extra, replace=False)]
        inspirations = tuple(sorted((pool[c] for c in shown), key=lambda t: self._worst_first(t)))
        parent = pool[parent_cell]
        values = {t.number: self.features_of(problem, t.number, t.solution) or () for t in (*inspirations, parent)}
        return _Child(parent, inspirations, island, self._prompt(problem, parent, inspirations, values,
                                                                 self._grid().names))

    def _worst_first(self, trial: Trial) -> tuple[float, int]:
        sign = -1.0 if self._direction is Direction.MINIMIZE else 1.0
        return sign * float(trial.value), trial.number  # type: ignore[arg-type]

    def _prompt(self, problem: Problem, parent: Trial | None, inspirations: tuple[Trial, ...],
                values: dict[int, tuple[float, ...]], names: Sequence[str]) -> str:
        """The request: the task, the inspirations worst to best, the parent, what to do, the answer format."""
        answer = problem.structured_answer_format() if self._format is not None else problem.answer_format()
        better = "lower" if problem.direction is Direction.MINIMIZE else "higher"
        noun, plural = problem.solution_noun, problem.solution_plural
        if parent is None:
            return (f"{problem.operator_context()}\n\nGive me a new {noun} with a {problem.value_noun} as {better[:-2]} "
                    f"as you can.\n{answer}")
        shown = (*inspirations, parent)
        config = MetaPromptConfig().for_problem(problem)
        scores = [float(t.value) for t in shown]  # type: ignore[arg-type]
        decimals = significant_decimals(scores, config.digits)

        def item(t: Trial) -> str:
            where = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values.get(t.number, ())))
            value = format_value(float(t.value), config, min(scores), max(scores), decimals)  # type: ignore[arg-type]
            return f"{problem.render(str(t.text), value)}\n(features: {where})"

        parts = [problem.operator_context(), ""]
        if inspirations:
            parts += [f"Below are {plural} from other regions of the space of {plural} (by {', '.join(names)}), each "
                      f"the best found in its region, with its {problem.value_noun} ({better} is better), worst first:",
                      ""]
            parts += [item(t) + "\n" for t in inspirations]
        parts += [f"The {noun} to improve:", item(parent), ""]
        edits = (f" If you write edits, they apply to the {noun} to improve." if type(problem).revise
                 is not Problem.revise else "")
        target = format_value(float(parent.value), config, min(scores), max(scores), decimals)  # type: ignore[arg-type]
        parts.append(f"Give me a new {noun} that improves on the {noun} to improve: different from every {noun} "
                     f"above, with a {problem.value_noun} {better} than {target}.{edits}\n{answer}")
        return "\n".join(parts)

    def _messages(self, prompt: str) -> list[dict[str, Any]]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return out + [{"role": "user", "content": prompt}]

    def _decode(self, problem: Problem, number: int, child: _Child, c: Completion) -> Proposal:
        """The child's proposal, its parents (the parent, then the inspirations) and its origin."""
        origin: dict[str, Any] = {}
        parents: tuple[int, ...] = ()
        if child.parent is not None:
            origin["cell"] = list(self._cell(problem, child.parent) or ())
            parents = (child.parent.number, *(t.number for t in child.inspirations))
        if self.islands > 1:
            origin["island"] = child.island
        if c.text is None:
            return Proposal(number, self.source, error=c.error, call_failed=True, parents=parents,
                            origin=origin or None)
        p = decode_reply(problem, number, self.source, c.text, child.parent)
        if p.solution is not None and p.error is None:
            values = self.features_of(problem, number, p.solution)
            if values is not None:
                origin["child_cell"] = list(self._grid().cell(values))
                origin["features"] = [float(f"{v:.6g}") for v in values]
        return Proposal(number, self.source, solution=p.solution, raw=c.text, error=p.error, parents=parents,
                        origin=origin or None)
