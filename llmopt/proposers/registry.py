"""The registry of proposers: ``--proposer NAME`` -> a :class:`ProposerSpec`.

A spec is what a run needs to know about a proposer before it exists: its factory, its own
options (plain :class:`Option` records, so the command line, grid files and
``llmopt.minimize(proposer_options=...)`` read the same declaration and none of them has to know
the proposer), and whether it calls a model. Specs come from the ``llmopt.proposers`` entry-point
group, as problems come from ``llmopt.problems``: llmopt registers its own proposers there
(:mod:`llmopt.proposers.builtin`), so an installed package adds ``--proposer NAME`` with no change
in llmopt. What a proposer records with its run is its own :meth:`Proposer.config`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from llmopt import plugins
from llmopt.proposers.base import Proposer

if TYPE_CHECKING:
    from llmopt.llm.client import LLM
    from llmopt.problem import Problem

#: The entry-point group that names every proposer.
GROUP = "llmopt.proposers"
#: The proposer a run gets when none is named.
DEFAULT = "llm"


def positive_int(text: Any) -> int:
    """An integer >= 1 (a count where 0 means nothing)."""
    value = int(text)
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: Any) -> int:
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def non_negative(text: Any) -> float:
    """A number >= 0 (a temperature)."""
    value = float(text)
    if not value >= 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


@dataclass(frozen=True)
class Option:
    """One option of a proposer, as data: ``--NAME`` on the command line, ``NAME`` in a grid file,
    ``NAME`` (``-`` or ``_``) in ``proposer_options``. ``type`` turns a word (or a Python value)
    into the value and raises ValueError on a bad one; ``type=bool`` is a switch (given: True)."""

    name: str
    type: Callable[[Any], Any]
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    #: Further keywords ``proposer_options`` accepts for it (names of earlier releases: ``shown``).
    aliases: tuple[str, ...] = ()
    #: False: a Python-only option (a :class:`MetaPromptConfig`), not on the command line.
    cli: bool = True

    @property
    def key(self) -> str:
        """The keyword the factory receives (``per-call`` -> ``per_call``)."""
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def switch(self) -> bool:
        return self.type is bool

    def convert(self, value: Any) -> Any:
        """``value`` (a word or a Python value) as this option's value; ValueError, one line, if bad."""
        if self.switch:
            if not isinstance(value, bool):
                raise ValueError(f"{self.flag}: a switch: true or false, got {value!r}")
            return value
        if value is None and self.default is None:
            return None  # left to the proposer (the problem's default)
        try:
            out = self.type(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.flag}: {exc}") from None
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"{self.flag}: expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        return out


#: ``factory(options, llm, problem)``: the options (every option's key, given or default), the
#: model (None for a proposer that calls none) and the problem the run solves.
Factory = Callable[[Mapping[str, Any], "LLM | None", "Problem"], Proposer]


@dataclass(frozen=True)
class ProposerSpec:
    """A proposer as the registry knows it: build it with :meth:`build`."""

    name: str
    factory: Factory
    help: str
    options: tuple[Option, ...] = ()
    uses_llm: bool = False
    #: Why an option of another proposer does not apply here, where a user may expect it to
    #: (``show`` for llm-iid): said instead of the generic refusal.
    hints: Mapping[str, str] = field(default_factory=dict)
    #: Model settings this proposer decides itself (EvoPrompt's temperature), each with why: a user's
    #: value for one is refused in one line (:meth:`check_model_settings`), never silently replaced.
    decides: Mapping[str, str] = field(default_factory=dict)
    #: ``check(options, problem)``: refuse options that do not fit the problem (MAP-Elites' feature names)
    #: in one line, before the model is built or asked anything (:meth:`check_options`).
    check: Callable[[Mapping[str, Any], "Problem"], None] | None = None

    def option(self, name: str) -> Option | None:
        key = name.replace("_", "-")
        return next((o for o in self.options if o.name == key or key in (a.replace("_", "-") for a in o.aliases)),
                    None)

    def resolve(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every option's value by key: ``given`` (names with ``-`` or ``_``) over the defaults. An
        option this proposer does not have is refused in one line naming it and the proposer."""
        out = {o.key: o.default for o in self.options}
        for name, value in (given or {}).items():
            opt = self.option(name)
            if opt is None:
                raise ValueError(unused_message(name, self, value))
            out[opt.key] = opt.convert(value)
        return out

    def check_model_settings(self, given: Iterable[str], flag: Callable[[str], str]) -> None:
        """Refuse a model setting the user gave (``given``: their names) that this proposer decides
        itself; ``flag`` names it in the caller's words (``--temperature``, ``llm_settings temperature``)."""
        for name in given:
            if name in self.decides:
                raise ValueError(f"{flag(name)} does not apply to {self.name}: {self.decides[name]}")

    def check_options(self, options: Mapping[str, Any] | None, problem: Problem) -> None:
        """Refuse, in one line (ValueError), options the proposer does not have or that do not fit
        ``problem``; callers run it before building the model (whose check may take seconds)."""
        resolved = self.resolve(options)
        if self.check is not None:
            self.check(resolved, problem)

    def build(self, options: Mapping[str, Any] | None, llm: LLM | None, problem: Problem) -> Proposer:
        """The proposer, from ``options`` (see :meth:`resolve`); ``llm`` is needed iff :attr:`uses_llm`."""
        if self.uses_llm and llm is None:
            raise ValueError(f"proposer {self.name!r} needs a model")
        return self.factory(self.resolve(options), llm if self.uses_llm else None, problem)


def unused_message(name: str, spec: ProposerSpec, value: Any = None) -> str:
    """The one line that refuses an option ``spec`` does not have (``value``: as given, if any)."""
    key = name.replace("_", "-").lstrip("-")
    flag = f"--{key}" + ("" if value is None or value is True else f" {value}")
    if key in spec.hints:
        return f"{flag}: {spec.hints[key]}"
    own = ", ".join(o.flag for o in spec.options if o.cli) or "none"
    return f"{flag}: not an option of --proposer {spec.name} (its options: {own})"


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return plugins.entry_points(GROUP)


def names() -> list[str]:
    """Every registered proposer, the default first, then llmopt's and plugins' in name order."""
    found = sorted(entry_points())
    return ([DEFAULT] if DEFAULT in found else []) + [n for n in found if n != DEFAULT]


def get(name: str) -> ProposerSpec:
    """The spec registered as ``name``; ValueError (one line, listing the names) if there is none."""
    ep = entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown proposer {name!r}: a proposer must be one of {', '.join(names())} "
                         f"(the {GROUP} entry points), or a Proposer from Python")
    try:
        spec = ep.load()
    except Exception as exc:  # a broken plugin: said in one line, naming it
        raise ValueError(f"proposer {name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not isinstance(spec, ProposerSpec):
        raise ValueError(f"proposer {name!r}: entry point {ep.value} is not a ProposerSpec")
    return spec if spec.name == name else replace(spec, name=name)  # the registered name is the name


def all_specs() -> dict[str, ProposerSpec]:
    """Every registered spec that loads, by name (the command line lists them, and refuses the other
    proposers' options with them): a broken plugin does not take the command line down with it;
    naming it (:func:`get`) says why it cannot be used."""
    out = {}
    for name in names():
        try:
            out[name] = get(name)
        except ValueError:
            continue
    return out
