"""A target's start..stop in one task, so its own task groups nest correctly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import anyio

from harness.target import AgentSettings, Endpoint, Target


class TargetHost:
    """Runs a target's start..stop in one task, so its own task groups nest correctly.

    The scenario talks to the target from the runner's task; stopping is bounded from there.
    """

    def __init__(self, target: Target, endpoint: Endpoint, settings: AgentSettings) -> None:
        self.target, self.endpoint, self.settings = target, endpoint, settings
        self.started, self.finish, self.stopped = anyio.Event(), anyio.Event(), anyio.Event()
        self.start_error: Exception | None = None
        self.stop_error: Exception | None = None
        self.took = 0.0  # s the target's start() took
        self._task: asyncio.Task[Any] | None = None

    def force_cancel(self) -> None:
        """Break a stop() stuck in a shielded scope: a native cancel reaches through shields."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self) -> None:
        with contextlib.suppress(RuntimeError):  # not on asyncio: no native task to cancel
            self._task = asyncio.current_task()
        began = time.monotonic()
        try:
            await self.target.start(self.endpoint, self.settings)
        except Exception as exc:
            self.start_error = exc
            self.started.set()
            self.stopped.set()
            return
        self.took = time.monotonic() - began
        self.started.set()
        try:
            await self.finish.wait()
        finally:
            try:
                await self.target.stop()
            except Exception as exc:
                self.stop_error = exc
            self.stopped.set()
