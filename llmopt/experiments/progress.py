"""Progress bars of the commands (tqdm, on stderr). The optimizer and the LLM door never import this.

On a terminal a bar redraws at most ten times a second. When stderr is not a terminal (a log
file, CI, a test's capture) every redraw is a new chunk of text, so the bar is drawn when it
opens and closes and at most every ``LOG_INTERVAL_S`` seconds in between: a long run leaves a
readable trace, a short one a line or two.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

from llmopt.optimizer import CallEvent, Optimizer

LOG_INTERVAL_S = 30.0
TTY_INTERVAL_S = 0.1


def is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


class Bar:
    """A tqdm bar on stderr (or nothing when disabled) with redraws rate-limited as above."""

    def __init__(self, total: int | None, unit: str, *, enabled: bool = True, desc: str | None = None,
                 stream: TextIO | None = None) -> None:
        self.bar: Any = None
        self.interval = TTY_INTERVAL_S
        self._last = 0.0
        if enabled:
            from tqdm import tqdm

            stream = stream or sys.stderr
            self.interval = TTY_INTERVAL_S if is_tty(stream) else LOG_INTERVAL_S
            self.bar = tqdm(total=total, unit=unit, desc=desc, file=stream, dynamic_ncols=True,
                            mininterval=self.interval)
            self._last = time.monotonic()

    def due(self) -> bool:
        """Whether a redraw now would respect the rate limit."""
        return self.bar is not None and time.monotonic() - self._last >= self.interval

    def show(self, *, n: int | None = None, postfix: str | None = None, force: bool = False) -> None:
        """Set the position and/or the text after it; redraw if ``force`` or due."""
        if self.bar is None:
            return
        if n is not None:
            self.bar.n = n
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        if force or self.due():
            self.bar.refresh()
            self._last = time.monotonic()

    def advance(self, k: int = 1, postfix: str | None = None) -> None:
        if self.bar is not None:
            self.show(n=self.bar.n + k, postfix=postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunProgress:
    """A bar over steps showing best value, calls, tokens, dollars and trials so far.

    It moves at each step's end and, within a step, as each LLM call completes, each trial is
    recorded and each scorer call is answered (the optimizer's callbacks; redraws rate-limited by
    :class:`llmopt.experiments.progress.Bar`), so a step of many calls is never a silent wait.
    """

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = Bar(total, "step", enabled=enabled)
        self._scoring = 0  # scorer calls answered for the trial being scored (not yet accounted)

    def attach(self, opt: Optimizer) -> None:
        """Follow ``opt`` call by call (nothing to follow when the bar is off)."""
        if self.bar.bar is None:
            return
        opt.register_callback("call", self._redraw)
        opt.register_callback("trial", self._trial)
        opt.register_callback("scoring", self._scorer_call)

    def _redraw(self, opt: Optimizer, event: Any = None) -> None:
        if self.bar.due():
            self.bar.show(postfix=self.postfix(opt))

    def _trial(self, opt: Optimizer, trial: Any) -> None:
        self._scoring = 0  # its scorer calls, if any, are in the usage now
        self._redraw(opt)

    def _scorer_call(self, opt: Optimizer, event: CallEvent) -> None:
        self._scoring += 1
        self._redraw(opt)

    def postfix(self, opt: Optimizer) -> str:
        best, u, c = opt.history.best(), opt.usage, opt.history.counts()
        gap_pct = None if best is None else opt.problem.gap_pct(best.value)
        gap = "" if gap_pct is None else f" gap={gap_pct:.2f}%"
        text = (f"best={'-' if best is None else f'{best.value:.6g}'}{gap} calls={u.calls} tokens={u.tokens} "
                f"cost={u.format_dollars()} valid={c['COMPLETE']} invalid={c['INVALID']} dup={c['DUPLICATE']}")
        if c["FAILED"]:
            text += f" failed={c['FAILED']}"
        if self._scoring:
            text += f" scoring={self._scoring}"
        return text

    def __call__(self, opt: Optimizer, force: bool = False) -> None:
        """At a step's end (the loop's ``on_step``), or at the start (``force``: drawn at once)."""
        self.bar.show(n=opt.step, postfix=self.postfix(opt), force=force)

    def close(self) -> None:
        self.bar.close()


class GridProgress:
    """One display for a grid whose cells run at once (``llmopt compare --jobs``), on stderr.

    Events (a cell starts, ends or fails) are lines. The grid's state (cells done, running, failed,
    waiting, and each running cell's step and best so far) is one more line: on a terminal it is
    redrawn in place under the events, at most twice a second; elsewhere (a log, a test's capture)
    it is printed every ``LOG_INTERVAL_S`` seconds while cells run, so that a log stays readable.
    The caller reads each running cell's state (from the store) only when :meth:`due` says so: the
    display never slows a run. ``states=False`` (``--quiet``): the event lines only."""

    def __init__(self, total: int, *, enabled: bool = True, states: bool = True, stream: TextIO | None = None,
                 interval_s: float | None = None) -> None:
        self.total, self.enabled, self.states = total, enabled, states
        self.stream = stream or sys.stderr
        self.tty = is_tty(self.stream)
        self.interval = interval_s if interval_s is not None else (0.5 if self.tty else LOG_INTERVAL_S)
        self._last = time.monotonic()
        self._shown = ""  # the status line drawn on the terminal (cleared before an event line)

    def line(self, text: str) -> None:
        """An event, as a line of its own (above the terminal's status line)."""
        if not self.enabled:
            return
        self._clear()
        print(text, file=self.stream, flush=True)
        if self._shown:
            self._draw(self._shown)
            self._last = 0.0  # the state line is stale now: redrawn at the next chance

    def due(self) -> bool:
        """Whether the grid's state line is due (never with ``states=False``: the events only)."""
        return self.enabled and self.states and time.monotonic() - self._last >= self.interval

    def status(self, done: int, failed: int, waiting: int, running: list[Any]) -> None:
        """The grid's state now; ``running``: ``(cell name, step, best)`` of each running cell."""
        if not self.enabled:
            return
        self._last = time.monotonic()
        text = self.text(done, failed, waiting, running)
        if self.tty:
            self._draw(text)
        else:
            print(text, file=self.stream, flush=True)

    def text(self, done: int, failed: int, waiting: int, running: list[Any]) -> str:
        cells = "; ".join(f"{name} step {'-' if step is None else step} best {'-' if best is None else f'{best:.6g}'}"
                          for name, step, best in running)
        return (f"grid: {done}/{self.total} done, {len(running)} running, {failed} failed, {waiting} waiting"
                + (f" | {cells}" if cells else ""))

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size((120, 20)).columns - 1
        self._clear()
        self._shown = text
        self.stream.write(text[:width])
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._shown:
            self._clear()
            print(self._shown, file=self.stream, flush=True)  # the last state stays on screen
            self._shown = ""
