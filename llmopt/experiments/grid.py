"""Experiment grids: problem x configuration x seed, described in TOML.

A grid file names problems and configurations by label; every value is an ``llmopt run``
option (the flag without its dashes), so anything a single run can do, a grid can compare::

    name = "demo"                 # prefix of the run names in the store (default: the file's stem)
    store = "demo.db"             # default store, beside the grid file (--store overrides)
    seeds = 10                    # 0..9 (the default); or a list such as [0, 5, 7]

    [defaults]                    # every run
    steps = 10

    [problems.linreg]             # label; `problem` is the `llmopt run` sub-command (default: the label)
    [problems.tsp10]
    problem = "tsp"
    n = 10

    [configs.opro]                # one row of the tables; {} is the defaults
    [configs.random]
    proposer = "random"

    [configs.random-start-box]    # `problems`: a configuration for some problems only (its options are theirs)
    proposer = "random"
    random-range = [10, 20]
    problems = ["linreg"]

    [sweep]                       # one configuration per value: an ablation in one line
    base = "opro"                 # the configuration each value changes (default: the defaults alone)
    temperature = [0.0, 1.0, 2.0]

Options merge as defaults < problem < configuration. The grid owns ``seed``, ``name``,
``store`` and ``resume``. Relative paths in a grid file (its ``store``, a function's ``schema``
and ``objective``) are read from the grid file's directory (:mod:`llmopt.experiments.paths`), and
an option's error names its key (``grid.toml: problems.fn.objective``), not a flag. A run's name
is ``<grid>/<problem>/<config>/seed<S>``, so the store knows which runs are done and an
interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OWNED = ("seed", "name", "store", "resume")
DEFAULT_SEEDS = 10  # what black-box benchmarking expects of a comparison (the LLM-optimizer papers ran 3 to 5)
TOP_LEVEL = ("name", "store", "seeds", "defaults", "problems", "configs", "sweep")


class GridError(ValueError):
    """The grid description is unusable; the message names the file and the field."""


def _key(key: str) -> str:
    return key.strip().replace("_", "-")


def _label(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    grid: str
    problem: str  # the problem's label in the grid
    config: str  # the configuration's label
    seed: int
    command: str  # the `llmopt run` sub-command
    options: dict[str, Any] = field(hash=False)
    #: option -> the grid key that set it (``problems.fn``, ``configs.opro``, ``defaults``, ``--set``)
    origins: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    base: str | None = None  # the grid file's directory: relative paths in its options are read from it

    @property
    def name(self) -> str:
        """``<grid>/<problem>/<config>/seed<S>``; a ``/`` in the configuration's label (a model's, as in
        ``opro local/smollm2``) is stored as ``:``, as run names always had it."""
        return f"{self.grid}/{self.problem}/{self.config.replace('/', ':')}/seed{self.seed}"


@dataclass(frozen=True)
class Grid:
    name: str
    seeds: tuple[int, ...]
    problems: dict[str, dict[str, Any]]  # label -> options, with "problem" = the sub-command
    configs: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)
    store: str | None = None
    source: str = "flags"
    #: configuration label -> the problem labels it runs on (a configuration not in it runs on all)
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    base: str | None = None  # the grid file's directory (None: a grid from flags)
    overridden: tuple[str, ...] = ()  # defaults given with --set

    def __post_init__(self) -> None:
        where = self.source
        if not self.seeds:
            raise GridError(f"{where}: seeds: no seeds")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise GridError(f"{where}: seeds: must be distinct integers >= 0, got {list(self.seeds)}")
        if not self.problems:
            raise GridError(f"{where}: problems: no problem")
        if not self.configs:
            raise GridError(f"{where}: configs: no configuration")
        for label in [self.name, *self.problems]:
            if not label or "/" in label:
                raise GridError(f"{where}: label {label!r}: must be non-empty and without '/'")
        stored: dict[str, str] = {}
        for label in self.configs:  # a configuration may name a model (opro local/smollm2)
            if not label or stored.setdefault(label.replace("/", ":"), label) != label:
                raise GridError(f"{where}: configuration {label!r}: must be non-empty and differ from "
                                f"{stored.get(label.replace('/', ':'))!r} in more than '/' against ':'")
        for section, table in [("defaults", self.defaults), *((f"problems.{k}", v) for k, v in self.problems.items()),
                               *((f"configs.{k}", v) for k, v in self.configs.items())]:
            owned = sorted(set(table) & set(OWNED))
            if owned:
                raise GridError(f"{where}: {section}: {', '.join(owned)} is set by the grid, not per run "
                                "(use seeds = ... and --store)")
        for label, scope in self.scopes.items():
            unknown = [p for p in scope if p not in self.problems]
            if label not in self.configs or unknown or not scope:
                raise GridError(f"{where}: configs.{label}.problems: {list(scope)} must name problems of the grid "
                                f"(have: {', '.join(self.problems)})")

    def cells(self) -> list[Cell]:
        """Every run, seed by seed: an interrupted grid has comparable seeds for every row."""
        out = []
        for seed in self.seeds:
            for plabel, poptions in self.problems.items():
                for clabel, coptions in self.configs.items():
                    if plabel not in self.scopes.get(clabel, (plabel,)):
                        continue
                    options = {**self.defaults, **poptions, **coptions}
                    origins = {**{k: "--set" if k in self.overridden else "defaults" for k in self.defaults},
                               **{k: f"problems.{plabel}" for k in poptions}, **{k: f"configs.{clabel}" for k in coptions}}
                    command = str(options.pop("problem", plabel))
                    out.append(Cell(self.name, plabel, clabel, seed, command, options, origins, self.base))
        return out

    def with_overrides(self, *, seeds: tuple[int, ...] | None = None, defaults: dict[str, Any] | None = None,
                       store: str | None = None) -> "Grid":
        return Grid(name=self.name, seeds=seeds or self.seeds, problems=self.problems, configs=self.configs,
                    defaults={**self.defaults, **(defaults or {})}, store=store or self.store, source=self.source,
                    scopes=self.scopes, base=self.base, overridden=(*self.overridden, *(defaults or {})))

    def key(self, cell: Cell, option: str) -> str:
        """Where ``option`` of ``cell`` was set, as its key in the grid: ``grid.toml: problems.fn.objective``."""
        origin = cell.origins.get(option)
        if origin is None:
            return f"{self.source}: {cell.problem}/{cell.config}: --{option}"
        if origin == "--set":
            return f"--set {option}"
        return f"{self.source}: {origin}.{option}"


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{where}: must be a table of options, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict):
            raise GridError(f"{where}.{k}: an option value cannot be a table")
        out[_key(k)] = v
    return out


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise GridError(f"{where}: seeds: a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise GridError(f"{where}: seeds: a count must be >= 1, got {value}")
        return tuple(range(value))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise GridError(f"{where}: seeds: a count or a list of integers, got {value!r}")
    return tuple(value)


def sweep_configs(sweep: dict[str, Any], configs: dict[str, dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """``{option: [v1, v2]}`` -> one configuration per value, labelled ``option=value``: the
    configuration named by ``base`` (or the defaults alone) with that one option changed."""
    sweep = dict(sweep)
    base_label = sweep.pop("base", None)
    if base_label is not None and base_label not in configs:
        raise GridError(f"{where}: sweep.base: no configuration {base_label!r} (have: {', '.join(configs) or 'none'})")
    base = configs.get(base_label, {}) if base_label is not None else {}
    out: dict[str, dict[str, Any]] = {}
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}: sweep.{key}: a non-empty list of values, got {values!r}")
        for value in values:
            out[f"{_key(key)}={_label(value)}"] = {**base, _key(key): value}
    return out


def grid_from_dict(data: dict[str, Any], *, name: str, source: str) -> Grid:
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise GridError(f"{source}: unknown key {unknown[0]!r} (expected {', '.join(TOP_LEVEL)})")
    problems = data.get("problems")
    if not isinstance(problems, dict) or not problems:
        raise GridError(f"{source}: problems: at least one [problems.<label>] table is needed")
    configs = {label: _table(v, f"{source}: configs.{label}") for label, v in (data.get("configs") or {}).items()}
    sweep = _table(data.get("sweep"), f"{source}: sweep")
    for label, options in sweep_configs(sweep, configs, source).items():
        if label in configs:
            raise GridError(f"{source}: sweep: configuration {label!r} is also in [configs]")
        configs[label] = options
    if not configs:
        configs = {"default": {}}
    scopes = {label: _scope(options.pop("problems"), f"{source}: configs.{label}.problems")
              for label, options in configs.items() if "problems" in options}
    store = data.get("store")
    if store is not None and not isinstance(store, str):
        raise GridError(f"{source}: store: a path, got {store!r}")
    return Grid(name=str(data.get("name", name)), seeds=parse_seeds(data.get("seeds", DEFAULT_SEEDS), source),
                problems={label: _table(v, f"{source}: problems.{label}") for label, v in problems.items()},
                configs=configs, defaults=_table(data.get("defaults"), f"{source}: defaults"), store=store,
                source=source, scopes=scopes)


def _scope(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GridError(f"{where}: a list of problem labels, got {value!r}")
    return tuple(value)


def load_grid(path: str | Path) -> Grid:
    """A grid file; its relative paths (``store``, and the runs' files such as a function's
    ``schema`` and ``objective``) are read from the file's directory, whatever the current one."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError(f"{path}: no such grid file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML: {exc}") from None
    grid = grid_from_dict(data, name=path.stem, source=str(path))
    # a relative store path is the grid file's neighbour; an absolute one, or a URL (postgresql://), is as given
    relative = grid.store is not None and "://" not in grid.store and not Path(grid.store).is_absolute()
    store = str(path.parent / grid.store) if relative else None  # type: ignore[operator]
    return replace(grid, base=str(path.parent), store=store or grid.store)
