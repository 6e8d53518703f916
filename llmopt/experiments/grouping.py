"""A store's runs that no grid describes (``llmopt run``, the Python API), grouped the way a grid's
are: by problem (the problem's name and recorded settings, seed aside) and by configuration
(proposer, model, meta-prompt, proposals per step; seed and budget aside). Each run is read by
:func:`llmopt.experiments.stored.read_run`: nothing is rebuilt or run."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from llmopt.experiments.compare import Collected, Outcome, Reference, budget_text
from llmopt.experiments.grid import Cell, Grid
from llmopt.experiments.report import proposer_name
from llmopt.experiments.stored import read_run
from llmopt.store import RunRecord, RunStore

_GRID_RUN = re.compile(r"^(?P<grid>[^/]+)/(?P<problem>[^/]+)/(?P<config>[^/]+)/seed\d+$")


def _experiment(run: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's (problem, configuration) settings, without what differs from seed to seed: the seed,
    the problem's seed and optimum, the seed in a generated instance's name, the meta-prompt's
    shuffle seed (the run's seed); the budget is left out too (a longer run is the same experiment)."""
    recorded = json.loads(json.dumps(run.config))
    seed_tag = re.compile(rf"(?<![0-9])seed{recorded.get('seed')}(?![0-9])")
    problem = {k: seed_tag.sub("seedS", v) if isinstance(v, str) else v
               for k, v in recorded.get("problem", {}).items() if k != "seed" and not k.startswith("optimum")}
    problem["direction"] = recorded.get("direction")
    config = {k: v for k, v in recorded.items() if k not in ("seed", "budget", "problem", "direction")}
    (config.get("proposer", {}).get("metaprompt") or {}).pop("shuffle_seed", None)
    (config.get("proposer", {}).get("sampling") or {}).pop("context_seed", None)  # the run's seed too
    return problem, config


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v)
    return out


def _labels(items: Sequence[tuple[str, dict[str, Any]]], slash: str = ":") -> list[str]:
    """A label per (base label, settings): the base, and where one base covers different settings,
    the settings that differ (``random proposals_per_step=4``); a ``/`` becomes ``slash`` (a problem's
    label names files; a configuration's keeps its model's ``/``)."""
    keys = [json.dumps(settings, sort_keys=True) for _, settings in items]
    variants: dict[str, dict[str, dict[str, str]]] = {}
    for (base, settings), key in zip(items, keys):
        variants.setdefault(base, {})[key] = _flat(settings)
    named: dict[tuple[str, str], str] = {}
    for base, flats in variants.items():
        if len(flats) == 1:
            named[(base, next(iter(flats)))] = base
            continue
        differing = sorted((f for f in {f for flat in flats.values() for f in flat}
                            if len({flat.get(f) for flat in flats.values()}) > 1),
                           key=lambda f: (max(len(flat.get(f, "")) for flat in flats.values()) > 12, f))
        fields: list[str] = []  # the fewest that tell the variants apart, short values first
        for f in differing:
            if len({tuple(flat.get(g) for g in fields) for flat in flats.values()}) == len(flats):
                break
            before = len({tuple(flat.get(g) for g in fields) for flat in flats.values()})
            if len({tuple(flat.get(g) for g in (*fields, f)) for flat in flats.values()}) > before:
                fields.append(f)
        short = {f: f.rsplit(".", 1)[-1] for f in fields}
        if len(set(short.values())) < len(fields):
            short = {f: f for f in fields}
        for key, flat in flats.items():
            named[(base, key)] = base + " " + ", ".join(f"{short[f]}={flat.get(f, '-')}" for f in fields)
    return [named[(base, key)].replace("/", slash) for (base, _), key in zip(items, keys)]


def _config_base(config: dict[str, Any]) -> str:
    """What a stored run ran, in words: its proposer and model (a table's "ran" column, and the label
    of a run that no grid named), as ``llmopt show`` names it (:func:`proposer_name`)."""
    return proposer_name(config)


def _grid_label(label: str, config: dict[str, Any]) -> str:
    """A configuration label read back from a grid run's name, with its model as written: a run name
    cannot hold a ``/``, so ``opro local/smollm2`` was stored as ``opro local:smollm2``."""
    base = _config_base(config)
    stored = base.replace("/", ":")
    return base + label[len(stored):] if stored != base and label.startswith(stored) else label



def _group_labels(runs: Sequence[RunRecord]) -> tuple[list[str], list[str]]:
    """Each run's (problem label, configuration label); runs named as a grid names them keep the grid's."""
    settings = [_experiment(r) for r in runs]
    matches = [_GRID_RUN.match(r.name) for r in runs]
    several_grids = len({m["grid"] for m in matches if m}) > 1
    problems = _labels([((f"{m['grid']} {m['problem']}" if several_grids else m["problem"]) if m else r.problem, s[0])
                        for r, m, s in zip(runs, matches, settings)])
    configs = [""] * len(runs)
    for label in dict.fromkeys(problems):  # configurations are told apart within each problem
        mine = [i for i, p in enumerate(problems) if p == label]
        bases = [_grid_label(matches[i]["config"], settings[i][1]) if matches[i] else _config_base(settings[i][1])
                 for i in mine]
        for i, config in zip(mine, _labels([(base, settings[i][1]) for i, base in zip(mine, bases)], slash="/")):
            configs[i] = config
    return problems, configs


def collect_runs(store: RunStore, names: Sequence[str] = (), seeds: Sequence[int] | None = None, *,
                 with_references: bool = True) -> Collected:
    """Every run of a store (or the named ones), grouped into problems and configurations as a
    grid's runs are; runs named as a grid names them (``<grid>/<problem>/<config>/seed<S>``) keep
    the grid's labels. Nothing is rebuilt or run; the references are those recorded with the runs
    (a grid's), else the recorded optimum."""
    runs = [store.get_run(name) for name in names] if names else store.runs()
    if seeds is not None:
        runs = [r for r in runs if r.config.get("seed") in seeds]
    if not runs:
        raise ValueError(f"no runs to plot in {store.path}" + (f" with seeds {list(seeds)}" if seeds is not None else ""))
    problems, configs = _group_labels(runs)
    grid = Grid(name=re.sub(r"[/\s]+", "_", store.path.stem) or "store",
                seeds=tuple(sorted({int(r.config.get("seed", 0)) for r in runs})),
                problems={p: {} for p in problems}, configs={c: {} for c in configs}, source=str(store.path))
    out = Collected(grid, [], {})
    for run, plabel, clabel in zip(runs, problems, configs):
        seed, stored = int(run.config.get("seed", 0)), read_run(store, run)
        out.outcomes.append(Outcome(Cell(grid.name, plabel, clabel, seed, run.problem, {}), stored.facts,
                                    stored.result, finished=run.status == "finished", spend=stored.spend,
                                    ran=_config_base(run.config), budget=budget_text(stored.budget), record=run))
        refs = out.references.setdefault(plabel, {}).setdefault(seed, [])
        if with_references and not refs:
            refs += stored.references or ([Reference("optimum", run.optimum)] if run.optimum is not None else [])
    return out
