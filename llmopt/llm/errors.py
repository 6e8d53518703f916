"""Errors of the LLM door: bad model settings, raised before any call is made."""

from __future__ import annotations

from typing import Sequence


class LLMConfigError(ValueError):
    """The model settings are unusable (unknown provider, bad numbers); raised before any call."""


class MissingCredentials(LLMConfigError):
    """A hosted model's API key is not in the environment (``variables``: what litellm looks for)."""

    def __init__(self, message: str, variables: Sequence[str]) -> None:
        super().__init__(message)
        self.variables = tuple(variables)
