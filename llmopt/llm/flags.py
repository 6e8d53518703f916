"""The model options of every command, written once: ``llmopt.cli.model_options.add_model_arguments``
adds them to an argparse group (argparse lives in ``llmopt.cli``) and :func:`llm_from_args` builds
the :class:`LLM` they describe, from any namespace of settings (the parsed command line, a grid cell).

One set of names serves every model a command talks to. With ``prefix=""`` (the optimizer):
``--model``, ``--api-base``, ``--router``, ``--api-key-env``, ``--temperature``,
``--max-output-tokens``, ``--concurrency``, ``--num-retries``, ``--timeout``; with
``prefix="scorer-"`` (prompt optimization's scorer): ``--scorer``, ``--scorer-api-base``,
``--scorer-router``, ``--scorer-api-key-env``, ``--scorer-max-output-tokens``,
``--scorer-concurrency``, ``--scorer-num-retries``, ``--scorer-timeout``. ``--local-threads`` is
never prefixed: it is the thread count of every embedded model the command builds.

A model whose temperature is fixed (the scorer samples at 0) omits ``--temperature``
(``temperature=None``) and passes the value to :func:`llm_from_args`. Options that concern what
is asked rather than the model (``--structured``, ``--no-cache``: the proposer's) are not here.
"""

from __future__ import annotations

import os
from typing import Any

from llmopt.llm.client import LLM
from llmopt.llm.embedded import is_embedded
from llmopt.llm.errors import LLMConfigError


def model_flag(prefix: str = "") -> str:
    """The flag naming the model: ``--model``, or the prefix's own name (``scorer-`` -> ``--scorer``)."""
    return f"--{prefix.rstrip('-')}" if prefix else "--model"


def dest(prefix: str, name: str) -> str:
    """The Namespace attribute of option ``name`` (``"api-base"``) under ``prefix``."""
    if name == "model":
        return model_flag(prefix)[2:].replace("-", "_")
    return f"{prefix}{name}".replace("-", "_")


def key_hint(prefix: str = "") -> str:
    """How to give the model an API key on the command line (for MissingCredentials' message)."""
    return f"--{prefix}api-key-env NAME"


def llm_from_args(args: Any, prefix: str = "", **fixed: Any) -> LLM:
    """The validated :class:`LLM` that the options under ``prefix`` describe.

    ``fixed``: settings the command decides, not the user (``temperature=0.0`` for the scorer);
    they override any option. The API key is read from ``--<prefix>api-key-env``'s variable;
    ``--<prefix>router`` builds a Router LLM. An embedded model's ``threads`` is ``--local-threads``
    (default 1). Bad settings raise :class:`LLMConfigError` (one line)."""

    def value(name: str, default: Any = None) -> Any:
        return getattr(args, dest(prefix, name), default)

    settings = {"temperature": value("temperature"), "max_tokens": value("max-output-tokens"),
                "concurrency": value("concurrency"), "num_retries": value("num-retries"),
                "timeout_s": value("timeout")}
    settings = {k: v for k, v in settings.items() if v is not None}
    if is_embedded(str(value("model"))):  # a setting of the model, recorded with the run (LLMConfig.threads)
        settings["threads"] = getattr(args, "local_threads", None) or 1
    settings.update(fixed)
    router, env = value("router"), value("api-key-env")
    if router and env:
        raise LLMConfigError(f"--{prefix}api-key-env does not apply with --{prefix}router: each deployment names "
                             "its key in the router file (api_key: os.environ/NAME)")
    if router:
        llm = LLM.from_router(router, value("model"), **settings)
    else:
        api_key = None
        if env:
            api_key = os.environ.get(env)
            if not api_key:
                raise LLMConfigError(f"--{prefix}api-key-env {env}: that environment variable is not set")
        llm = LLM.from_model(value("model"), api_key=api_key, api_base=value("api-base"), **settings)
    llm.validate()  # an unroutable model is refused before any store is created
    return llm
