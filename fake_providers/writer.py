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

import anyio
import anyio.abc

from fake_providers.ledger import Ledger, RequestRecord
from fake_providers.player import PacedRun

# How early the pacer may write an event that is nearly due, to batch neighbours.
PACER_SLACK = 0.001


class Sink:
    """Where a response's bytes go: the raw transport when possible, else the anyio stream."""

    __slots__ = ("stream", "transport")

    def __init__(self, stream: anyio.abc.ByteStream, raw: object) -> None:
        self.stream = stream
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

    def write_now(self, data: bytes) -> bool:
        """Write without waiting if the transport has nothing queued; False otherwise."""
        t = self.transport
        if t is None or t.is_closing() or t.get_write_buffer_size():
            return False
        t.write(data)
        return True

    async def send(self, data: bytes, rate: float | None = None) -> None:
        """Write `data`; with `rate`, trickle it at that many bytes per second."""
        if rate:
            await self._drip(data, rate)
        elif data and not self.write_now(data):
            await self.stream.send(data)  # waits for the queue to drain; raises if broken

    async def _drip(self, data: bytes, rate: float) -> None:
        # Against absolute deadlines in ticks of at most 10 ms, so the rate holds.
        tick = max(1, int(rate / 100))
        start = anyio.current_time()
        for sent in range(0, len(data), tick):
            await anyio.sleep_until(start + sent / rate)
            await self.stream.send(data[sent : sent + tick])


class _Playing:
    """A paced run bound to where its bytes go and where they are recorded."""

    __slots__ = ("done", "ledger", "request", "run", "sink")

    def __init__(
        self,
        run: PacedRun,
        sink: Sink,
        ledger: Ledger,
        request: RequestRecord,
        done: asyncio.Future[None],
    ) -> None:
        self.run = run
        self.sink = sink
        self.ledger = ledger
        self.request = request
        self.done = done

    def step(self) -> bool:
        """Write the due event; True if the run goes on (its next due time is set)."""
        transport = self.sink.transport
        if transport is None or transport.is_closing():
            raise anyio.BrokenResourceError("the connection closed under a paced stream")
        data, size = self.run.step()
        transport.write(data)
        self.ledger.event_written(self.request, size)
        return self.run.more


class Pacer:
    """One timer for every paced stream on the loop: writes what is due, sleeps to the next.

    Heap entries are (due, key) pairs of plain numbers, which the cyclic GC does not track:
    entries that live a pace interval each would otherwise keep being promoted to the old
    generation and trigger full collections that stall every stream for tens of ms.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._runs: dict[int, _Playing] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def play(self, run: PacedRun, sink: Sink, ledger: Ledger, request: RequestRecord) -> None:
        """Write the run's events at their deadlines; return when it reaches its end."""
        loop = self._loop = asyncio.get_running_loop()
        playing = _Playing(run, sink, ledger, request, loop.create_future())
        key = next(self._keys)
        self._runs[key] = playing
        self._push(run.next_due, key)
        try:
            await playing.done
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
            if run is None or run.done.done():
                continue
            try:
                more = run.step()
            except Exception as exc:  # handed to the stream's task
                run.done.set_exception(exc)
                continue
            if more:
                push(heap, (run.run.next_due, key))
            else:
                run.done.set_result(None)
        self._arm()
