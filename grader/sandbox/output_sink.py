"""What a sandboxed child prints: its stdout and stderr, drained from their pipe as they come, the
first bytes kept up to the output limit and the rest counted."""

from __future__ import annotations

import os
import select
import threading

__all__ = ["OutputSink"]


class OutputSink(threading.Thread):
    """Drains the child's stdout+stderr, keeping the first ``cap`` bytes and counting the rest.

    ``finish()`` ends it without waiting for the pipe to close: a stopped child has written
    (and flushed, before its last reply) everything it will, and its exit may take a while."""

    def __init__(self, fd: int, cap: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.kept = bytearray()
        self.dropped = 0
        self._wake_r, self._wake_w = os.pipe()

    def _take(self, chunk: bytes) -> None:
        room = max(self.cap - len(self.kept), 0)
        self.kept += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self.fd, self._wake_r], [], [])
                if self.fd in ready:
                    chunk = os.read(self.fd, 1 << 20)
                    if not chunk:
                        return
                    self._take(chunk)
                elif self._wake_r in ready:       # finish(): take what is there, then stop
                    os.set_blocking(self.fd, False)
                    while chunk := os.read(self.fd, 1 << 20):
                        self._take(chunk)
                    return
        except OSError:     # BlockingIOError included: nothing more to take
            return
        finally:
            for fd in (self.fd, self._wake_r, self._wake_w):
                os.close(fd)

    def finish(self) -> None:
        if self.is_alive():
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        self.join(timeout=2.0)

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n... ({self.dropped:,} more bytes of output dropped (limit: output bytes))"
        return text
