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

import anyio
import anyio.abc

from fake_providers.ledger import Ledger, RequestRecord
from fake_providers.player import PacedRun

# The pacer's resolution: one wheel slot per millisecond, libuv's timer granularity.
SLOTS_PER_SECOND = 1000
# Events one tick writes at most (~10-15 ms of loop time) before it lets the loop accept
# and read: a pacer that has fallen behind catches up in slices, not in one long tick
# during which the listen queue overflows and new clients wait out SYN retransmits.
TICK_BUDGET = 1024


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
    """A paced run bound to its transport, its request record and its waiting task."""

    __slots__ = ("done", "request", "run", "transport")

    def __init__(
        self,
        run: PacedRun,
        transport: asyncio.WriteTransport,
        request: RequestRecord,
        done: asyncio.Future[None],
    ) -> None:
        self.run = run
        self.transport = transport
        self.request = request
        self.done = done


class Pacer:
    """One timer for every paced stream on the loop: writes what is due, sleeps to the next.

    A timer wheel with one slot per millisecond (libuv's timer granularity): a stream waiting
    for its next event sits in the list of the millisecond it is due in, and one loop timer
    is armed for the earliest slot that holds anything. A tick writes every event of every
    slot whose millisecond has begun (so up to 1 ms early, never later than the loop allows)
    and files each stream into the slot of its next event. Per event that is a list append,
    instead of a heap push and pop (or a task wake-up and a timer of its own); per tick, one
    timer. Slot numbers in the small heap of occupied slots are plain ints, which the cyclic
    GC does not track.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._slots: dict[int, list[_Playing]] = {}
        self._occupied: list[int] = []  # heap of the slot numbers in _slots
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0
        self._ticking = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def play(self, run: PacedRun, sink: Sink, request: RequestRecord) -> None:
        """Write the run's events at their deadlines; return when it reaches its end.

        Cancelling the caller cancels `done` too; the tick then skips the stream.
        """
        assert sink.transport is not None, "the pacer writes to plain transports only"
        loop = self._loop = asyncio.get_running_loop()
        playing = _Playing(run, sink.transport, request, loop.create_future())
        self._file(playing)
        await playing.done

    def _file(self, playing: _Playing) -> None:
        slot = int(playing.run.next_due * SLOTS_PER_SECOND)
        entries = self._slots.get(slot)
        if entries is not None:
            entries.append(playing)
            return
        self._slots[slot] = [playing]
        heapq.heappush(self._occupied, slot)
        if not self._ticking and (self._timer is None or slot < self._timer_slot):
            self._arm(slot)

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_slot = slot
        self._timer = self._loop.call_at(slot / SLOTS_PER_SECOND, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._ticking = True
        assert self._loop is not None
        now = int(self._loop.time() * SLOTS_PER_SECOND)
        occupied, slots, pop, push = self._occupied, self._slots, heapq.heappop, heapq.heappush
        clock = self._ledger.clock
        # What this tick wrote, recorded under one ledger lock at its end: parallel lists,
        # not a tuple per event.
        requests: list[RequestRecord] = []
        sizes: list[int] = []
        stamps: list[int] = []
        try:
            # A stream behind its schedule is filed into a slot that has begun: this loop
            # comes back to it, so it catches up against its absolute deadlines. Filing is
            # inlined (see _file): this loop runs once per paced event.
            left = TICK_BUDGET
            while occupied and occupied[0] <= now:
                slot = pop(occupied)
                entries = slots.pop(slot)
                if len(entries) > left:  # the rest stays in its slot for the next tick
                    entries, slots[slot] = entries[:left], entries[left:]
                    push(occupied, slot)
                left -= len(entries)
                for playing in entries:
                    done = playing.done
                    if done.done():  # its task was cancelled: the client left
                        continue
                    transport, run = playing.transport, playing.run
                    try:
                        if transport.is_closing():
                            raise anyio.BrokenResourceError("the connection closed mid-stream")
                        data, size = run.step()
                        transport.write(data)
                    except Exception as exc:  # handed to the stream's task
                        done.set_exception(exc)
                        continue
                    requests.append(playing.request)
                    sizes.append(size)
                    stamps.append(clock())
                    if run.more:
                        due = int(run.next_due * SLOTS_PER_SECOND)
                        waiting = slots.get(due)
                        if waiting is None:
                            slots[due] = [playing]
                            push(occupied, due)
                        else:
                            waiting.append(playing)
                    else:
                        done.set_result(None)
                if left <= 0:
                    break  # the timer armed below fires after the loop's next I/O poll
        finally:
            self._ticking = False
            if requests:
                self._ledger.events_written_each(requests, sizes, stamps)
            if occupied:
                self._arm(occupied[0])
