"""llmopt's own proposers as registry specs, registered in the ``llmopt.proposers`` entry-point
group exactly as a plugin's would be (see :mod:`llmopt.proposers.registry`).

Each spec declares its options as data; the defaults are the papers' protocols (OPRO's meta-prompt
and one answer per reply; EvoPrompt's population, selection and temperature).
"""

from __future__ import annotations

from typing import Any, Mapping

from llmopt.llm.client import LLM
from llmopt.metaprompt import MetaPromptConfig
from llmopt.problem import Problem
from llmopt.proposers.base import Proposer
from llmopt.proposers.classical import OptunaProposer
from llmopt.proposers.evoprompt import DONORS, INITS, POPULATION, SELECTIONS, TEMPERATURE, EvoPromptDE, EvoPromptGA
from llmopt.proposers.map_elites import BINS, EXPLORATION, INSPIRATIONS, MIGRATE_EVERY, MapElites, choose_features
from llmopt.proposers.opro import STRUCTURED, LLMProposer, SamplingProposer
from llmopt.proposers.random import RandomProposer
from llmopt.proposers.registry import Option, ProposerSpec, non_negative, non_negative_int, positive_int

Options = Mapping[str, Any]

# --- the options, as data -------------------------------------------------------------------------
STRUCTURED_OPTION = Option(
    "structured", str, "auto", choices=STRUCTURED,
    help="structured output (the problem's JSON schema; a grammar for the embedded model): where supported (auto), "
         "always in OpenAI's json_schema style (on), in llama.cpp-server's json_object style, or never (off: the "
         "paper's free-text replies) (default auto)")
NO_CACHE = Option("no-cache", bool, False, help="do not serve replies from the store's cache")
COST = (
    Option("per-call", positive_int, 1, metavar="K",
           help="answers asked for in one reply: K proposals share one call and its prompt (default 1)"),
    Option("samples-per-request", positive_int, 1, metavar="N",
           help="choices asked of one request (OpenAI's and vLLM's n: the prompt billed once; a server that ignores "
                "n is asked the rest one call each) (default 1)"),
    Option("redraw-temperature", non_negative, None, metavar="T",
           help="temperature of a step's redraw rounds (the rounds that replace invalid and duplicate replies) "
                "(default: the model's --temperature)"),
    Option("prompt-cache", bool, False,
           help="mark the meta-prompt for the provider's prompt cache (Anthropic's cache_control; OpenAI caches "
                "prefixes by itself); cached prompt tokens are recorded and priced at the cached rate"),
)
SHOW = Option("show", non_negative_int, None, aliases=("shown",),
              help="past solutions shown (default: the paper's for the problem, 20 for linreg, 10 for tsp)")
METAPROMPT = (
    SHOW,
    Option("order", str, "worst_to_best", choices=("worst_to_best", "best_to_worst", "random"),
           help="order of the past solutions shown (default worst_to_best: the best last, as in the paper)"),
    Option("scores", str, None, choices=("exact", "rounded", "significant", "buckets", "hidden"),
           help="how their scores are shown: as computed, rounded to --decimals, to --score-digits significant digits "
                "of the shown scores' spread (more where two would print alike), as a bucket 1..--buckets, or not at "
                "all (default: the problem's: rounded to integers for linreg, tsp and prompt, as in the paper; "
                "significant for a function; rounded with --decimals)"),
    Option("decimals", non_negative_int, None, help="decimals for --scores rounded (default: 0, the paper's integers)"),
    Option("score-digits", positive_int, 3, help="significant digits for --scores significant (default 3)"),
    Option("buckets", positive_int, 10, help="buckets for --scores buckets (default 10)"),
    Option("instruction", str, None, help="replace the closing instruction of the meta-prompt"),
    Option("feedback", bool, False,
           help="show each past solution's feedback (its evaluation's text: the exception and its line, the check "
                "that failed) under its score (default off: the paper's meta-prompt, word for word)"),
    Option("metaprompt", lambda v: _metaprompt(v), None, cli=False,
           help="a whole MetaPromptConfig (Python only; instead of the options above)"),
)
EVOLUTION = (
    Option("population", positive_int, POPULATION,
           help=f"population size: children per generation (default {POPULATION})"),
    Option("init", str, "evoprompt", choices=INITS,
           help="initial population: the best half of the starting solutions and LLM paraphrases of them (step 1), "
                "or the starting solutions alone (default evoprompt)"),
    Option("evolution-temperature", non_negative, TEMPERATURE, metavar="T", aliases=("temperature",),
           help=f"temperature of the operators' calls (default {TEMPERATURE}, EvoPrompt's)"),
    NO_CACHE,
)
SELECTION = Option("selection", str, "wheel", choices=SELECTIONS,
                   help="GA parent selection: roulette wheel by score, tournament of two, or random (default wheel)")
DONOR = Option("donor", str, "best", choices=DONORS,
               help="DE's third donor: the population's best, or a random member (default best)")


def _names(value: Any) -> tuple[str, ...]:
    """Feature names: ``a,b`` (the command line) or a list of names (a grid file, Python)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(n).strip() for n in items if str(n).strip())
    if not names:
        raise ValueError(f"expected names of the problem's features (a,b), got {value!r}")
    return names


def _bins(value: Any) -> tuple[int, ...]:
    """Bins per feature: one number for every feature, or one per feature (``10,5``)."""
    items = str(value).split(",") if isinstance(value, (str, int)) else list(value)
    out = tuple(positive_int(str(v).strip()) for v in items)
    if any(b > 1000 for b in out):
        raise ValueError(f"must be at most 1000 cells per feature, got {value}")
    return out


def _share(value: Any) -> float:
    out = float(value)
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"must be in [0, 1], got {value}")
    return out


MAP_ELITES_OPTIONS = (
    Option("features", _names, None, metavar="A,B",
           help="the problem's features the archive's grid uses, by name (default: its first two; an unknown name is "
                "refused with the list of the problem's)"),
    Option("bins", _bins, (BINS,), metavar="N",
           help=f"cells per feature: one number, or one per feature (N,M) (default {BINS})"),
    Option("exploration", _share, EXPLORATION, metavar="R",
           help=f"share of parents drawn uniformly from the occupied cells; the rest from the best 10%% of them "
                f"(default {EXPLORATION})"),
    Option("inspirations", non_negative_int, INSPIRATIONS, metavar="K",
           help=f"elites of other cells shown beside the parent (default {INSPIRATIONS})"),
    Option("islands", positive_int, 1, metavar="K", help="separate archives, trial n on island n %% K (default 1: none)"),
    Option("migrate-every", positive_int, MIGRATE_EVERY, metavar="M",
           help=f"with islands: every M steps each island's best joins the next island (default {MIGRATE_EVERY})"),
    STRUCTURED_OPTION, NO_CACHE,
)


def _metaprompt(value: Any) -> MetaPromptConfig:
    if not isinstance(value, MetaPromptConfig):
        raise ValueError(f"expected a MetaPromptConfig, got {type(value).__name__}")
    return value


# --- the factories --------------------------------------------------------------------------------
def _cost(o: Options) -> dict[str, Any]:
    return dict(use_store_cache=not o["no_cache"], structured=o["structured"], per_call=o["per_call"],
                samples_per_request=o["samples_per_request"], redraw_temperature=o["redraw_temperature"],
                prompt_cache=o["prompt_cache"])


def _meta(o: Options, problem: Problem) -> MetaPromptConfig:
    """The meta-prompt the options describe (``metaprompt``: a whole one given from Python)."""
    if o["metaprompt"] is not None:
        return o["metaprompt"]  # type: ignore[no-any-return]
    shown = problem.default_shown if o["show"] is None else o["show"]
    scores = o["scores"] or ("rounded" if o["decimals"] is not None else "auto")  # auto: the problem's
    return MetaPromptConfig(max_shown=shown, order=o["order"], scores=scores, decimals=o["decimals"] or 0,
                            digits=o["score_digits"], buckets=o["buckets"], instruction=o["instruction"],
                            feedback=o["feedback"])


def opro(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return LLMProposer(llm, _meta(o, problem), **_cost(o))


def independent(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return SamplingProposer(llm, shown=0, **_cost(o))


def conditioned(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return SamplingProposer(llm, shown=problem.default_shown if o["show"] is None else o["show"], **_cost(o))


def _evolution(o: Options) -> dict[str, Any]:
    return dict(population=o["population"], init=o["init"], temperature=o["evolution_temperature"],
                use_store_cache=not o["no_cache"])


def genetic(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return EvoPromptGA(llm, selection=o["selection"], **_evolution(o))


def differential(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return EvoPromptDE(llm, donor=o["donor"], **_evolution(o))


def _check_features(o: Options, problem: Problem) -> None:
    """An unknown feature name: one line, before the model is built."""
    choose_features(problem, o["features"])


def map_elites(o: Options, llm: LLM | None, problem: Problem) -> Proposer:
    assert llm is not None
    return MapElites(llm, features=o["features"], bins=o["bins"], exploration=o["exploration"],
                     inspirations=o["inspirations"], islands=o["islands"], migrate_every=o["migrate_every"],
                     structured=o["structured"], use_store_cache=not o["no_cache"])


# --- the specs (the entry points of pyproject.toml name these) -------------------------------------
LLM_OPRO = ProposerSpec(
    "llm", opro, uses_llm=True, options=(STRUCTURED_OPTION, NO_CACHE, *COST, *METAPROMPT),
    help="OPRO (the best solutions so far shown with their scores)")
LLM_IID = ProposerSpec(
    "llm-iid", independent, uses_llm=True, options=(STRUCTURED_OPTION, NO_CACHE, *COST),
    hints={key: "llm-iid shows no solutions (llm-scs shows the latest --show)" for key in ("show", "shown")},
    help="the LLM control: independent samples, nothing shown")
LLM_SCS = ProposerSpec(
    "llm-scs", conditioned, uses_llm=True, options=(STRUCTURED_OPTION, NO_CACHE, *COST, SHOW),
    help="the latest --show solutions shown without scores")
RANDOM = ProposerSpec(
    "random", lambda o, llm, problem: RandomProposer(), help="the random-search control")
TPE = ProposerSpec(
    "optuna:tpe", lambda o, llm, problem: OptunaProposer("tpe"),
    help="optuna's TPE on a bounded search space (pip install -e '.[classical]')")
CMAES = ProposerSpec(
    "optuna:cmaes", lambda o, llm, problem: OptunaProposer("cmaes"), help="optuna's CMA-ES, a generation per step")
EVOPROMPT_GA = ProposerSpec(
    "evoprompt-ga", genetic, uses_llm=True, options=(*EVOLUTION, SELECTION),
    decides={"temperature": "its calls sample at --evolution-temperature"},
    help="EvoPrompt's GA, the model as operators, a generation per step")
EVOPROMPT_DE = ProposerSpec(
    "evoprompt-de", differential, uses_llm=True, options=(*EVOLUTION, DONOR),
    decides={"temperature": "its calls sample at --evolution-temperature"},
    help="EvoPrompt's DE, the model as operators, a generation per step")
MAP_ELITES = ProposerSpec(
    "map-elites", map_elites, uses_llm=True, options=MAP_ELITES_OPTIONS,
    check=_check_features,
    help="MAP-Elites over the problem's features")
