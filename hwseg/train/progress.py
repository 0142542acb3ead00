"""A small progress bar on stderr: redrawn in place on a terminal, a line every 10 s otherwise."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, label: str, stream=None, width: int = 28):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.done = 0
        self._last_line = self.start

    def update(self, step: int = 1, **fields) -> None:
        self.done = min(self.done + step, self.total)
        info = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        if self.interactive:
            filled = int(self.width * self.done / self.total)
            bar = "█" * filled + "·" * (self.width - filled)
            self.stream.write(f"\r{self.label} {bar} {self.done}/{self.total} {info} eta {eta:4.0f}s ")
            if self.done == self.total:
                self.stream.write("\n")
        elif time.monotonic() - self._last_line >= 10 and self.done < self.total:
            self._last_line = time.monotonic()
            self.stream.write(f"{self.label} {self.done}/{self.total} {info} ({elapsed:.0f}s, eta {eta:.0f}s)\n")
        self.stream.flush()
