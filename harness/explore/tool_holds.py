"""Tool holds: a tool command that runs until the harness lets it finish, like a gate.

A slow tool of a schedule is `cat FIFO`: it blocks, with no timer, until the harness
releases the hold (a writer opens the FIFO and closes it, so every reader sees EOF). That
makes "the cancel came while the tool ran" a point that is held, not raced, and an orphan
unambiguous: a tool the agent abandoned is still blocked when the harness looks, however
loaded the machine. Releasing replaces the FIFO by an empty file first, so a tool that
starts only after its release finishes at once instead of blocking forever.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import tempfile
from pathlib import Path


class ToolHolds:
    """The FIFOs of one example, in a directory of their own."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._held: dict[str, Path] = {}

    def new(self, name: str) -> Path:
        """A fresh hold; its path goes into the tool's command."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cancel-harness-holds-"))
        path = self._dir / name
        os.mkfifo(path)
        self._held[name] = path
        return path

    def release(self, name: str) -> None:
        """Let the tool finish: now if it runs, at once if it starts later."""
        path = self._held.pop(name, None)
        if path is None:
            return
        parked = path.with_suffix(".released")
        os.rename(path, parked)  # readers that opened it keep it
        path.write_bytes(b"")  # readers that come later read an empty file
        try:
            fd = os.open(parked, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody is reading, nothing to wake
                raise
            return
        os.close(fd)  # every reader sees EOF

    def release_all(self) -> None:
        for name in list(self._held):
            self.release(name)

    def close(self) -> None:
        """Release everything and remove the directory."""
        self.release_all()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir)
            self._dir = None


def held_command(path: Path, *, tree: bool) -> str:
    """A command that blocks on the hold: one process, or a small tree of them."""
    wait = f"cat {shlex.quote(str(path))}"
    if not tree:
        return wait
    return f"sh -c {shlex.quote(f'{wait} & {wait} & wait')}"
