"""The batch's progress line: count, rate, ETA and failures, on a terminal only."""

from __future__ import annotations

import time
from typing import IO

from ..output.control_chars import escape_control_chars

__all__ = ["Progress"]


class Progress:
    """Count, rate, ETA and failures on one line of a terminal; silent when not a terminal,
    save for ``message``."""

    def __init__(self, total: int, stream: IO[str] | None) -> None:
        self.total, self.stream = total, stream
        self.done = self.failed = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.enabled = bool(stream and stream.isatty())

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.1 or self.done == self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        eta = f"{int(left) // 60}:{int(left) % 60:02d}"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                          f"{rate:.1f}/s  ETA {eta}  failed {self.failed} ")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line above the bar; a name from a submission in it is shown, not obeyed."""
        if self.stream:
            text = escape_control_chars(text, multiline=True)
            self.stream.write(("\n" if self.enabled and self.done else "") + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            assert self.stream is not None
            self.stream.write("\n")
            self.stream.flush()
