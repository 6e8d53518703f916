"""The model options of every command as argparse options, written once (see
:mod:`llmopt.llm.flags` for the names and for :func:`~llmopt.llm.flags.llm_from_args`, which
builds the model they describe): the optimizer's model, and any problem's own (a scorer, under a
prefix), with the argparse types of counts and limits."""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

from llmopt.llm.embedded import DEFAULT_MODEL
from llmopt.llm.flags import dest, model_flag


def positive_int(text: str) -> int:
    """An integer >= 1: counts where 0 means nothing (concurrency, tokens, threads, proposals)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0: seeds, retries, and limits where 0 makes sense."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_model_arguments(group: Any, prefix: str = "", default_model: str = DEFAULT_MODEL, *,
                        role: str = "", model_aliases: Sequence[str] = (), temperature: float | None = 1.0,
                        max_output_tokens: int = 512, concurrency: int = 8, num_retries: int = 3,
                        timeout: float = 120.0, local_threads: bool = True,
                        hidden_aliases: Mapping[str, Sequence[str]] | None = None) -> None:
    """Add the model options under ``prefix`` to ``group`` (an argparse parser or argument group).

    ``role`` names the model in the help texts (``"scorer"``); ``model_aliases`` are further
    visible names of the model flag (``--optimizer``); ``temperature=None`` omits
    ``--temperature`` (fixed by the caller); ``local_threads`` adds ``--local-threads`` (add it
    once per command). ``hidden_aliases`` maps an option's name (``"num-retries"``) to old flags
    that still work and are not shown (``["--scorer-retries"]``), so existing commands and grids
    do not break.
    """
    of = f" of the {role}" if role else ""
    calls = f"{role} calls" if role else "LLM calls"
    added: dict[str, argparse.Action] = {}
    added["model"] = group.add_argument(
        model_flag(prefix), *model_aliases, dest=dest(prefix, "model"), default=default_model,
        help=f"{role + ' model: ' if role else ''}litellm model string (default {default_model}, the embedded "
             "offline model), e.g. openai/gpt-4o-mini, ollama/llama3, openai/<name> with "
             f"--{prefix}api-base for any OpenAI-compatible server, local//path/to/model.gguf")
    if local_threads:
        group.add_argument("--local-threads", type=positive_int, default=1,
                           help="CPU threads of the embedded model (default 1, the robust choice on 2 shared cores)")
    endpoint = group.add_mutually_exclusive_group()
    added["api-base"] = endpoint.add_argument(
        f"--{prefix}api-base", dest=dest(prefix, "api-base"),
        help=f"endpoint of an OpenAI-compatible server{of}, e.g. http://127.0.0.1:8080/v1")
    added["router"] = endpoint.add_argument(
        f"--{prefix}router", dest=dest(prefix, "router"), metavar="FILE",
        help=f"a litellm Router configuration{of} (.yaml, .json or .toml: model_list, router_settings) spreading "
             f"calls over several deployments; {model_flag(prefix)} then names its model group")
    added["api-key-env"] = group.add_argument(
        f"--{prefix}api-key-env", dest=dest(prefix, "api-key-env"), metavar="NAME",
        help=f"read the API key{of} from this environment variable "
             "(default: the provider's usual variable, e.g. OPENAI_API_KEY)")
    if temperature is not None:
        added["temperature"] = group.add_argument(
            f"--{prefix}temperature", dest=dest(prefix, "temperature"), type=float, default=temperature,
            help=f"sampling temperature{of} (default {temperature})")
    added["max-output-tokens"] = group.add_argument(
        f"--{prefix}max-output-tokens", dest=dest(prefix, "max-output-tokens"), type=positive_int,
        default=max_output_tokens, help=f"max tokens per reply{of} (default {max_output_tokens})")
    added["concurrency"] = group.add_argument(
        f"--{prefix}concurrency", dest=dest(prefix, "concurrency"), type=positive_int, default=concurrency,
        help=f"concurrent {calls} (default {concurrency})")
    added["num-retries"] = group.add_argument(
        f"--{prefix}num-retries", dest=dest(prefix, "num-retries"), type=non_negative_int, default=num_retries,
        help=f"retries per {calls[:-1]}, with backoff (default {num_retries})")
    added["timeout"] = group.add_argument(
        f"--{prefix}timeout", dest=dest(prefix, "timeout"), type=non_negative, default=timeout,
        help=f"seconds per {calls[:-1]} attempt (default {timeout:g})")
    for name, flags in (hidden_aliases or {}).items():
        if name not in added:
            raise ValueError(f"no option {name!r} to alias (options: {', '.join(added)})")
        action = added[name]
        for flag in flags:  # the same option under an old name; its default is the option's own
            group.add_argument(flag, dest=action.dest, type=action.type, metavar=action.metavar,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
