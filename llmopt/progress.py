"""Progress bars of the commands (tqdm, on stderr). The optimizer and the LLM door never import this.

On a terminal a bar redraws at most ten times a second. When stderr is not a terminal (a log
file, CI, a test's capture) every redraw is a new chunk of text, so the bar is drawn when it
opens and closes and at most every ``LOG_INTERVAL_S`` seconds in between: a long run leaves a
readable trace, a short one a line or two.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

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
