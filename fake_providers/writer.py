"""Getting response bytes onto the socket cheaply: one frame per flush, one timer for all paces.

Two costs dominate a streaming fake server: a syscall and a task wake-up per event. The
`Sink` frames a whole batch of events as one HTTP chunk and hands it straight to the
transport when it has room. The `Pacer` writes every paced stream's due events from a
single timer callback against absolute deadlines, so 2,000 streams at 20 events/s cost
one wake-up per tick instead of 40,000 task switches a second, and nothing drifts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterator

import anyio
import anyio.abc

from fake_providers.ledger import Ledger, RequestRecord

# How early the pacer may write an event that is nearly due, to batch neighbours.
PACER_SLACK = 0.001


class Sink:
    """Where a response's bytes go: the raw transport when possible, else the anyio stream."""

    __slots__ = ("chunked", "stream", "transport")

    def __init__(self, stream: anyio.abc.ByteStream, raw: object, *, chunked: bool) -> None:
        self.stream = stream
        self.chunked = chunked
        # anyio's asyncio socket stream keeps its transport here. Plain TCP on asyncio gets
        # the fast path; TLS streams and other backends go through stream.send().
        # uvloop's transports are not asyncio.WriteTransport subclasses, so check the
        # methods we use rather than the type.
        transport = getattr(raw, "_transport", None) if stream is raw else None
        usable = all(
            callable(getattr(transport, name, None))
            for name in ("write", "is_closing", "get_write_buffer_size")
        )
        self.transport: asyncio.WriteTransport | None = transport if usable else None

    def frame(self, body: bytes | bytearray) -> bytes:
        if not body:
            return b""
        if self.chunked:
            return b"".join((b"%x\r\n" % len(body), body, b"\r\n"))
        return bytes(body)

    def write_now(self, data: bytes) -> bool:
        """Write without waiting if the transport has nothing queued; False otherwise."""
        t = self.transport
        if t is None or t.is_closing() or t.get_write_buffer_size():
            return False
        t.write(data)
        return True

    async def send(self, data: bytes) -> None:
        if data and not self.write_now(data):
            await self.stream.send(data)  # waits for the queue to drain; raises if broken


class Cursor:
    """Walks a lazy event stream with one event of look-ahead, so the last one is known."""

    __slots__ = ("_events", "current", "position", "upcoming")

    def __init__(self, events: Iterator[bytes]) -> None:
        self._events = events
        self.current = next(events, None)
        self.upcoming = next(events, None) if self.current is not None else None
        self.position = 0

    @property
    def last(self) -> bool:
        return self.current is not None and self.upcoming is None

    def advance(self) -> None:
        self.current = self.upcoming
        self.upcoming = next(self._events, None) if self.current is not None else None
        self.position += 1


class PacedRun:
    """A stretch of plain paced events the pacer writes on the stream's behalf."""

    __slots__ = (
        "cursor",
        "done",
        "ledger",
        "next_due",
        "offsets",
        "request",
        "sink",
        "start",
        "stop",
    )

    def __init__(
        self,
        *,
        cursor: Cursor,
        stop: int | None,
        offsets: Iterator[float],
        start: float,
        sink: Sink,
        ledger: Ledger,
        request: RequestRecord,
        next_due: float,
    ) -> None:
        self.cursor = cursor
        self.stop = stop
        self.offsets = offsets
        self.start = start
        self.sink = sink
        self.ledger = ledger
        self.request = request
        self.next_due = next_due
        self.done: asyncio.Future[None] | None = None

    def step(self) -> bool:
        """Write the current event; True if the run goes on (its next due time is set)."""
        transport = self.sink.transport
        cursor = self.cursor
        event = cursor.current
        if transport is None or event is None or transport.is_closing():
            raise anyio.BrokenResourceError("the connection closed under a paced stream")
        transport.write(b"%x\r\n%s\r\n" % (len(event), event) if self.sink.chunked else event)
        self.ledger.event_written(self.request, len(event))
        cursor.advance()
        if cursor.upcoming is None:
            return False  # the stream loop writes the last event (faults may sit before it)
        if self.stop is not None and cursor.position >= self.stop:
            return False
        self.next_due = self.start + next(self.offsets)
        return True


class Pacer:
    """One timer for every paced stream on the loop: writes what is due, sleeps to the next.

    Heap entries are (due, key) pairs of plain numbers, which the cyclic GC does not track:
    entries that live a pace interval each would otherwise keep being promoted to the old
    generation and trigger full collections that stall every stream for tens of ms.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._runs: dict[int, PacedRun] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def play(self, run: PacedRun) -> None:
        """Write the run's events at their deadlines; return when it reaches its end."""
        loop = self._loop = asyncio.get_running_loop()
        run.done = loop.create_future()
        key = next(self._keys)
        self._runs[key] = run
        self._push(run.next_due, key)
        try:
            await run.done
        finally:
            self._runs.pop(key, None)  # a cancelled stream: its heap entry is skipped

    def _push(self, due: float, key: int) -> None:
        heapq.heappush(self._heap, (due, key))
        if self._timer is None or due < self._timer_due:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap and self._loop is not None:
            self._timer_due = self._heap[0][0]
            self._timer = self._loop.call_at(self._timer_due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None
        horizon = self._loop.time() + PACER_SLACK
        heap, runs = self._heap, self._runs
        pop, push = heapq.heappop, heapq.heappush
        while heap and heap[0][0] <= horizon:
            key = pop(heap)[1]
            run = runs.get(key)
            if run is None or run.done is None or run.done.done():
                continue
            try:
                more = run.step()
            except Exception as exc:  # handed to the stream's task
                run.done.set_exception(exc)
                continue
            if more:
                push(heap, (run.next_due, key))
            else:
                run.done.set_result(None)
        self._arm()
