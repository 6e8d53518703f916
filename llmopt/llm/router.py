"""Many deployments of one model: a litellm Router configuration, checked and recorded.

The file is litellm's own proxy-config shape (``model_list``, ``router_settings``) in YAML, JSON
or TOML, so a litellm proxy config can be reused as is. litellm does the balancing, rpm/tpm
limits, cooldowns and fallbacks; llmopt checks the file before any call (one-line errors naming
the file and the field), builds one Router per model, and records the deployments without keys.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from llmopt.llm._litellm import import_litellm
from llmopt.llm.errors import LLMConfigError

ENV_REF = "os.environ/"  # litellm's reference to an environment variable, resolved by litellm at call time
FALLBACK_SETTINGS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
RECORDED_DEPLOYMENT = ("model", "api_base", "rpm", "tpm", "weight", "order", "max_parallel_requests")
RECORDED_SETTINGS = (*FALLBACK_SETTINGS, "default_fallbacks", "max_fallbacks", "routing_strategy",
                     "routing_strategy_args", "allowed_fails", "cooldown_time", "disable_cooldowns", "retry_after",
                     "enable_pre_call_checks", "enable_weighted_failover", "default_max_parallel_requests")
PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")  # a deployment's own price, per token
SECRET_WORDS = ("key", "secret", "token", "password", "credential")


@dataclass(frozen=True)
class RouterSpec:
    """A litellm Router configuration, checked: litellm's own ``model_list`` and ``router_settings``.

    It holds whatever API keys the file holds, for litellm; :meth:`record` (what a run stores)
    never does. ``num_retries`` and ``timeout`` come from :class:`LLMConfig`, not from here.
    """

    source: str
    model_list: tuple[dict[str, Any], ...] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.model_list:
            raise LLMConfigError(f"{self.source}: model_list is missing or empty (the Router's deployments)")
        for i, d in enumerate(self.model_list):
            _check_deployment(self.source, i, d)
        groups = self.groups
        for name in FALLBACK_SETTINGS:
            for i, entry in enumerate(self.settings.get(name) or []):
                _check_fallback(self.source, f"router_settings.{name}[{i}]", entry, groups)
        for i, target in enumerate(self.settings.get("default_fallbacks") or []):
            _check_group(self.source, f"router_settings.default_fallbacks[{i}]", target, groups)

    @classmethod
    def load(cls, config: RouterSpec | Mapping[str, Any] | str | os.PathLike[str]) -> RouterSpec:
        """From a file (.yaml/.yml, .json, .toml) or a mapping, in litellm's proxy-config shape."""
        if isinstance(config, RouterSpec):
            return config
        source, data = ("<router config>", config) if isinstance(config, Mapping) else _read_config(Path(config))
        if not isinstance(data, Mapping):
            raise LLMConfigError(f"{source}: a router configuration is a mapping with model_list and router_settings")
        settings = data.get("router_settings") or {}
        if not isinstance(settings, Mapping):
            raise LLMConfigError(f"{source}: router_settings must be a mapping")
        extra = data.get("litellm_settings")
        if isinstance(extra, Mapping) and any(name in extra for name in FALLBACK_SETTINGS):
            raise LLMConfigError(f"{source}: litellm_settings: put fallbacks under router_settings "
                                 "(llmopt reads model_list and router_settings)")
        model_list = data.get("model_list") or []
        if not isinstance(model_list, list):
            raise LLMConfigError(f"{source}: model_list must be a list of deployments")
        return cls(source, tuple(copy.deepcopy(d) for d in model_list), copy.deepcopy(dict(settings)))

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d["model_name"] for d in self.model_list))

    def models(self, group: str) -> tuple[str, ...]:
        """The litellm model strings behind a group (what its replies are, whichever server sends them)."""
        return tuple(sorted({d["litellm_params"]["model"] for d in self.model_list if d["model_name"] == group}))

    def prices(self, group: str) -> tuple[tuple[str, dict[str, float] | None], ...]:
        """(model, its own price) of each deployment of a group: the deployment's
        ``input_cost_per_token`` and ``output_cost_per_token`` (in ``litellm_params`` or
        ``model_info``, as the Router reads them), or None where it names none (litellm's price
        map then)."""
        out = []
        for d in self.model_list:
            if d["model_name"] != group:
                continue
            given = {**(d.get("model_info") or {}), **d["litellm_params"]}
            own = {k: float(given[k]) for k in PRICE_KEYS if given.get(k) is not None}
            out.append((d["litellm_params"]["model"], own or None))
        return tuple(out)

    def check_group(self, group: str) -> None:
        _check_group(self.source, "model (the model group)", group, self.groups)

    def env_refs(self) -> list[tuple[str, str]]:
        """(where, variable) for every ``os.environ/VAR`` value of the deployments."""
        return [(f"model_list[{i}].litellm_params.{k}", v[len(ENV_REF):])
                for i, d in enumerate(self.model_list) for k, v in d["litellm_params"].items()
                if isinstance(v, str) and v.startswith(ENV_REF)]

    def secrets(self) -> list[str]:
        """Key-like values of the deployments (resolved where they name a variable): to scrub errors."""
        values = [v for d in self.model_list for k, v in d["litellm_params"].items()
                  if isinstance(v, str) and any(w in k.lower() for w in SECRET_WORDS)]
        return [os.environ.get(v[len(ENV_REF):], "") if v.startswith(ENV_REF) else v for v in values]

    def record(self) -> dict[str, Any]:
        """What a run records: deployments and routing, never a key (not even a variable's name)."""
        deployments = []
        for d in self.model_list:
            merged = {**d["litellm_params"], **{k: d[k] for k in ("rpm", "tpm") if k in d}}
            deployments.append({"model_name": d["model_name"],
                                **{k: merged[k] for k in RECORDED_DEPLOYMENT if k in merged}})
        settings = {k: self.settings[k] for k in RECORDED_SETTINGS if k in self.settings}
        return {"deployments": deployments, "settings": settings}

    def build(self, num_retries: int, timeout_s: float) -> Any:
        """A new ``litellm.Router`` (given copies: litellm changes the lists it gets).

        litellm (1.110) enters each deployment's model into its global price map, at $0 where it
        knows no price. Those entries are taken out again, so calls to such a model stay unpriced
        (None), never $0, through the Router and everywhere else in the process.
        """
        litellm = import_litellm()
        # A failed call is recorded with its error (fallbacks tried included); the Router's log
        # would print each one again over the progress bar.
        logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)
        known = set(litellm.model_cost)
        settings = {**copy.deepcopy(self.settings), "num_retries": num_retries, "timeout": timeout_s}
        router = litellm.Router(model_list=[copy.deepcopy(d) for d in self.model_list], **settings)
        unpriced = {d["litellm_params"]["model"] for d in self.model_list if not _has_price(d)}
        for name in (set(litellm.model_cost) - known) & unpriced:
            del litellm.model_cost[name]
        return router


def _has_price(deployment: Mapping[str, Any]) -> bool:
    """Does the deployment price itself (``input_cost_per_token`` and the like)?"""
    keys = {*deployment["litellm_params"], *(deployment.get("model_info") or {})}
    return any("cost_per" in k for k in keys)


def _check_deployment(source: str, i: int, d: Any) -> None:
    params = d.get("litellm_params") if isinstance(d, Mapping) else None
    name, model = (d.get("model_name"), params.get("model")) if isinstance(params, Mapping) else (None, None)
    if not (isinstance(name, str) and name.strip() and isinstance(model, str) and model.strip()):
        raise LLMConfigError(f"{source}: model_list[{i}] needs a model_name (the model group) and "
                             "litellm_params.model (a litellm model string)")
    for where, limits in ((f"model_list[{i}]", d), (f"model_list[{i}].litellm_params", params)):
        for k in ("rpm", "tpm"):
            value = limits.get(k)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise LLMConfigError(f"{source}: {where}.{k} must be a positive integer, got {value!r}")


def _check_fallback(source: str, where: str, entry: Any, groups: Sequence[str]) -> None:
    if not isinstance(entry, Mapping) or not all(isinstance(v, list) for v in entry.values()):
        raise LLMConfigError(f"{source}: {where}: a fallback is {{group: [fallback groups]}}, got {entry!r}")
    for group, targets in entry.items():
        for name in (group, *targets):
            _check_group(source, where, name, groups)


def _check_group(source: str, where: str, name: Any, groups: Sequence[str]) -> None:
    if name not in groups:
        raise LLMConfigError(f"{source}: {where}: unknown model group {name!r} "
                             f"(the model_names of model_list: {', '.join(groups)})")


def _read_config(path: Path) -> tuple[str, Any]:
    """(source, parsed data) of a router configuration file; one-line errors naming the file."""
    suffix, source = path.suffix.lower(), str(path)
    if suffix not in (".yaml", ".yml", ".json", ".toml"):
        raise LLMConfigError(f"{source}: a router configuration is a .yaml, .yml, .json or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LLMConfigError(f"{source}: cannot read the router configuration: {reason}") from None
    try:
        return source, _parse(suffix, text)
    except ImportError as exc:
        raise LLMConfigError(f"{source}: reading {suffix} files needs the module {exc.name!r}") from None
    except Exception as exc:  # json/toml raise ValueError, PyYAML its own YAMLError
        detail = " ".join(str(exc).split())[:200]
        raise LLMConfigError(f"{source}: not valid {suffix[1:].upper()}: {detail}") from None


def _parse(suffix: str, text: str) -> Any:
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return tomllib.loads(text)
    import yaml  # PyYAML: a dependency of litellm

    return yaml.safe_load(text)


