"""The response player: a schedule, a wire format and a completion in, wire commands out.

Sans-IO, in the manner of h11: `play()` is a generator that never touches a socket or a
clock. It yields typed commands (`Respond`, `Write`, `SleepUntil`, `AwaitGate`, `Paced`,
`Park`, `Finish`, `Close`, `Reply`); the server carries each one out and sends back the
time it finished, which is the player's only notion of now. What every fault means on the
wire is therefore testable without a network (tests/fake_providers/test_player.py).

Performance lives here too: unpaced events are coalesced into one `Write` per pause point
(or 64 KiB), and a stretch of plain paced events becomes one `Paced` command that the
server hands to its shared timer instead of waking a task per event.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import assert_never

from fake_providers.content import Completion
from fake_providers.faults.schedule import (
    Cut,
    EndWithError,
    InsertMalformed,
    Schedule,
    Silence,
    WaitAtGate,
)
from fake_providers.ledger import CloseKind, Outcome
from fake_providers.wire import RequestFacts, WireFormat

BATCH_BYTES = 64 * 1024
SERVER_HEADER = (b"server", b"cancel-harness-fake-provider")
Headers = tuple[tuple[bytes, bytes], ...]

# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Respond:
    """Start the response; its head goes out with the next write."""

    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Write:
    """Put `data` on the wire in one write (trickled at `rate` bytes/s if set).

    `events` are the sizes of the whole events it carries, for the ledger.
    """

    data: bytes
    events: tuple[int, ...] = ()
    rate: float | None = None


@dataclass(frozen=True, slots=True)
class SleepUntil:
    """Send nothing until the clock reads `t`; `note` says why, for the ledger."""

    t: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class AwaitGate:
    """Count the arrival at the named gate and wait there until it is released."""

    gate: str
    note: str


@dataclass(frozen=True, slots=True)
class Paced:
    """Write the run's events at their deadlines (on the shared timer), then come back."""

    run: PacedRun


@dataclass(frozen=True, slots=True)
class Park:
    """Send nothing more, ever: the response ends when the client leaves."""

    note: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Write `data` and the end of the message in one write; the response ended so."""

    data: bytes
    events: tuple[int, ...]
    outcome: Outcome
    rate: float | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """End the connection now: FIN, or RST (SO_LINGER 0)."""

    kind: CloseKind


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with a whole JSON response instead of a stream (an HTTP error)."""

    status: int
    headers: Headers
    body: bytes


Command = Respond | Write | SleepUntil | AwaitGate | Paced | Park | Finish | Close | Reply
Player = Generator[Command, float, None]  # send() it the time each command finished

# ------------------------------------------------------------------------------- helpers


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


def frame(body: bytes | bytearray, *, chunked: bool) -> bytes:
    """One HTTP/1.1 chunk for `body` (HTTP/1.0 clients get it bare)."""
    if not body:
        return b""
    if chunked:
        return b"".join((b"%x\r\n" % len(body), body, b"\r\n"))
    return bytes(body)


class PacedRun:
    """A stretch of plain paced events: which one is due next, and when. Pure; no IO.

    The server's timer calls `step()` at `next_due` and writes what it returns; `more`
    turns false at the stretch's end (the next fault position, or the last event, which
    the player writes itself because faults may sit before it).
    """

    __slots__ = ("chunked", "cursor", "more", "next_due", "offsets", "start", "stop")

    def __init__(
        self,
        cursor: Cursor,
        *,
        stop: int | None,
        offsets: Iterator[float],
        start: float,
        next_due: float,
        chunked: bool,
    ) -> None:
        self.cursor = cursor
        self.stop = stop
        self.offsets = offsets
        self.start = start
        self.next_due = next_due
        self.chunked = chunked
        self.more = True

    def step(self) -> tuple[bytes, int]:
        """The due event, framed, and its size; moves on to the next one."""
        cursor = self.cursor
        event = cursor.current
        assert event is not None and self.more
        cursor.advance()
        if cursor.upcoming is None or (self.stop is not None and cursor.position >= self.stop):
            self.more = False
        else:
            self.next_due = self.start + next(self.offsets)
        return (b"%x\r\n%s\r\n" % (len(event), event) if self.chunked else event), len(event)


class _Pending:
    """Events waiting to go out together (one chunk for all of them)."""

    __slots__ = ("body", "chunked", "head", "sizes")

    def __init__(self, *, chunked: bool) -> None:
        self.chunked = chunked
        self.body = bytearray()
        self.sizes: list[int] = []
        self.head = False  # the response head has not been written yet

    def add(self, event: bytes) -> None:
        self.body += event
        self.sizes.append(len(event))

    def take(self) -> tuple[bytes, tuple[int, ...]]:
        data = frame(self.body, chunked=self.chunked)
        sizes = tuple(self.sizes)
        self.body.clear()
        self.sizes.clear()
        self.head = False
        return data, sizes


# -------------------------------------------------------------------------------- player


def play(
    schedule: Schedule,
    wire: WireFormat,
    completion: Completion,
    facts: RequestFacts,
    *,
    media_type: str,
    chunked: bool,
    now: float,
) -> Player:
    """Play one response from `now`; yields commands, receives the time after each."""
    for pause in schedule.before_headers:
        match pause:
            case WaitAtGate(gate=gate):
                now = yield AwaitGate(gate, f"held before headers at gate {gate!r}")
            case Silence(duration=duration):
                if duration is None:
                    yield Park("hanging after 0 events until the client leaves")
                    return
                now = yield SleepUntil(now + duration, f"hanging {duration:g}s after 0 events")
            case _:
                assert_never(pause)
    refusal = schedule.refusal
    if refusal is not None:
        body = wire.error_body(refusal.status, refusal.message)
        yield Reply(refusal.status, refusal.headers, body)
        return
    if facts.stream:
        events = iter(wire.stream_events(completion, facts))
        headers: Headers = (
            (b"content-type", media_type.encode()),
            (b"cache-control", b"no-cache"),
            SERVER_HEADER,
        )
    else:
        events = iter([wire.json_body(completion, facts)])
        headers = ((b"content-type", b"application/json"), SERVER_HEADER)
    now = yield Respond(200, headers)
    yield from _body(schedule, wire, completion, Cursor(events), chunked=chunked, now=now)


def _body(
    schedule: Schedule,
    wire: WireFormat,
    completion: Completion,
    cursor: Cursor,
    *,
    chunked: bool,
    now: float,
) -> Player:
    pending = _Pending(chunked=chunked)
    pending.head = True
    drip = schedule.drip
    pacing = schedule.pacing
    due = schedule.due()
    start = now
    while cursor.current is not None:
        for action in schedule.at(cursor.position, last=cursor.last):
            match action:
                case InsertMalformed():
                    if drip:
                        now = yield from _flush(pending, drip, now)
                    pending.add(wire.malformed_event())
                case EndWithError(message=message):
                    pending.add(wire.stream_error_event(message, completion))
                    data, sizes = pending.take()
                    yield Finish(data, sizes, Outcome.STREAM_ERROR, drip)
                    return
                case Cut(close=kind, keep=keep):
                    now = yield from _flush(pending, drip, now)
                    if keep > 0:
                        event = cursor.current
                        cut = max(1, int(len(event) * keep))
                        part = b"%x\r\n%s" % (len(event), event[:cut]) if chunked else event[:cut]
                        now = yield Write(part, (), drip)
                    yield Close(kind)
                    return
                case WaitAtGate(gate=gate):
                    now = yield from _flush(pending, drip, now)
                    where = f"event {cursor.position + 1}"
                    now = yield AwaitGate(gate, f"held before {where} at gate {gate!r}")
                case Silence(duration=duration):
                    now = yield from _flush(pending, drip, now)
                    if duration is None:
                        position = cursor.position
                        yield Park(f"hanging after {position} events until the client leaves")
                        return
                    note = f"hanging {duration:g}s after {cursor.position} events"
                    now = yield SleepUntil(now + duration, note)
                case _:
                    assert_never(action)
        if pacing is not None:
            deadline = start + next(due)
            if not drip and not cursor.last:
                now = yield from _flush(pending, drip, now)
                stop = schedule.next_position(cursor.position)
                run = PacedRun(
                    cursor, stop=stop, offsets=due, start=start, next_due=deadline, chunked=chunked
                )
                now = yield Paced(run)
                continue
            if deadline > now:
                now = yield from _flush(pending, drip, now)
                now = yield SleepUntil(deadline)
        pending.add(cursor.current)
        if pacing is not None or len(pending.body) >= BATCH_BYTES:
            now = yield from _flush(pending, drip, now)
        cursor.advance()
    data, sizes = pending.take()
    yield Finish(data, sizes, Outcome.COMPLETE, drip)


def _flush(pending: _Pending, drip: float | None, now: float) -> Generator[Command, float, float]:
    """Write what is pending (and the head, if it has not gone yet) as one write."""
    if pending.sizes or pending.head:
        data, sizes = pending.take()
        now = yield Write(data, sizes, drip)
    return now
