"""Wake waiters when shared state changes, across threads and event loops.

The server mutates the ledger and gates on its event loop; scenarios wait on them from
the same loop, another loop, or a plain thread (the thread-hosted provider). One
`ChangeSignal` serves all three without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable


class WaitTimeout(TimeoutError):
    """A wait ran out of time; the message says what was awaited."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeSignal:
    """Something changed: re-check your predicate."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._blocking = 0

    def notify(self) -> None:
        # Hot path (every event written): nobody waiting means nothing to do. A waiter
        # registers before it evaluates its predicate, so it cannot miss this change.
        if not self._futures and not self._blocking:
            return
        with self._cond:
            self._cond.notify_all()
            waiting, self._futures = self._futures, set()
        for loop, fut in waiting:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait_until[T](
        self, predicate: Callable[[], T | None], timeout: float | None, what: str
    ) -> T:
        """Return the first truthy value of `predicate()`; raise WaitTimeout after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            with self._cond:
                self._futures.add(entry)
            try:
                result = predicate()
                if result:
                    return result
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, remaining)
            finally:
                with self._cond:
                    self._futures.discard(entry)

    def wait_until_blocking[T](
        self, predicate: Callable[[], T | None], timeout: float | None, what: str
    ) -> T:
        """Thread flavour of `wait_until`, for synchronous test code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._blocking += 1
            try:
                while True:
                    result = predicate()
                    if result:
                        return result
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
                    self._cond.wait(remaining)
            finally:
                self._blocking -= 1
