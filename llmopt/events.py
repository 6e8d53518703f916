"""What a run reports while it runs: :class:`CallEvent` and the callbacks of
:meth:`llmopt.Optimizer.register_callback` (one mechanism for progress bars, logs and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class CallEvent:
    """One LLM call, reported to the ``"call"`` callbacks as soon as it is accounted.

    A proposal's call is reported the moment it completes, while the rest of its round is still
    being asked; a scorer's calls when the solution they scored is told (with its trial number),
    and, to the ``"scoring"`` callbacks, already as each is answered (see :data:`CALLBACKS`).
    """

    number: int  # the trial the call belongs to
    step: int
    role: str  # "optimizer" (a proposal), "scorer", or "validation" (scoring it on the validation split)
    model: str
    completion: Any  # llmopt.llm.Completion


#: Callback names of :meth:`Optimizer.register_callback`: ``"call"`` gets a :class:`CallEvent`
#: after each LLM call is accounted; ``"trial"`` gets each :class:`Trial` as it is recorded;
#: ``"scoring"`` gets a :class:`CallEvent` as each call of a problem's scorer model is answered
#: while a solution is scored in the loop (not yet accounted: it is, and reported as a ``"call"``,
#: when the solution is told; scoring on an executor reports no ``"scoring"`` events).
CALLBACKS = ("call", "trial", "scoring")

Callback = Callable[[Any, Any], None]  # callback(optimizer, event)


class Callbacks:
    """The registered callbacks, by name (one of :data:`CALLBACKS`)."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Callback]] = {name: [] for name in CALLBACKS}

    def register(self, name: str, callback: Callback) -> None:
        if name not in self._by_name:
            raise ValueError(f"unknown callback {name!r} (expected one of {', '.join(CALLBACKS)})")
        self._by_name[name].append(callback)

    def wanted(self, name: str) -> bool:
        """Whether any callback listens to ``name`` (so reporting it is worth its cost)."""
        return bool(self._by_name[name])

    def emit(self, optimizer: Any, name: str, event: Any) -> None:
        for callback in self._by_name[name]:
            callback(optimizer, event)
