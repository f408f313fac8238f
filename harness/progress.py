"""Progress on long work, on stderr (stdout keeps the report).

On a terminal: one line rewritten in place, with cases done, failures so far and the time
left (estimated from the pace so far, or until a soak's duration is spent). Without a
terminal (CI logs): plain lines, one per tenth of the work (runs of 20 cases or more), and
whatever the caller says with `line` (a soak: one per pass). Nothing is ever erased there.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.cases import CaseResult, Status

_BAD = (Status.FAILED, Status.ERROR, Status.DID_NOT_START)
REDRAW = 0.1  # s between redraws of the live line
PLAIN_MIN = 20  # plain lines only for runs at least this long


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    def __init__(
        self,
        total: int | None,
        *,
        label: str = "run",
        stream: TextIO | None = None,
        tty: bool | None = None,
        deadline: float | None = None,
        plain_every: float | None = 0.1,
    ) -> None:
        self.total, self.label, self.deadline = total, label, deadline
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self._isatty() if tty is None else tty
        self.plain_every = plain_every
        self.done = self.failed = self.indeterminate = 0
        self.began = time.monotonic()
        self._drawn = 0.0
        self._next_plain = 1

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def text(self) -> str:
        elapsed = time.monotonic() - self.began
        done = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        parts = [f"{self.label}: {done} cases", f"{self.failed} failed"]
        if self.indeterminate:
            parts.append(f"{self.indeterminate} indeterminate")
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.deadline is not None:
            parts.append(f"~{_clock(self.deadline - time.monotonic())} left")
        elif self.total and self.done:
            parts.append(f"~{_clock(elapsed / self.done * (self.total - self.done))} left")
        return ", ".join(parts)

    def case_done(self, result: CaseResult) -> None:
        self.done += 1
        self.failed += result.status in _BAD
        self.indeterminate += result.status is Status.INDETERMINATE
        if self.tty:
            now = time.monotonic()
            if now - self._drawn >= REDRAW or self.done == self.total:
                self._drawn = now
                self._write(f"\r\x1b[2K{self.text()}")
            return
        if self.plain_every is None or not self.total or self.total < PLAIN_MIN:
            return
        step = max(1, int(self.total * self.plain_every))
        if self.done >= self._next_plain * step and self.done < self.total:
            self._next_plain = self.done // step + 1
            self._write(self.text() + "\n")

    def line(self, text: str) -> None:
        """A line that stays (in a terminal, above the live line)."""
        if self.tty:
            self._write(f"\r\x1b[2K{text}\n{self.text()}")
        else:
            self._write(text + "\n")

    def finish(self) -> None:
        if self.tty and (self.done or self._drawn):
            self._write("\r\x1b[2K")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
