"""Play a fault spec through the response player with a make-believe clock, no socket.

`playback("close-after=2")` returns what a client would see: one short line per command
(`respond 200`, `write 2`, `close fin`, ...) and the body bytes in order, de-chunked.
Gates open at once and sleeps jump the clock, so a trace is instant and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fake_providers.content import Completion, ContentSpec
from fake_providers.faults import FaultPlan
from fake_providers.kinds import ProviderKind
from fake_providers.player import (
    AwaitGate,
    Close,
    Command,
    Finish,
    Paced,
    Park,
    Reply,
    Respond,
    SleepUntil,
    Write,
    play,
)
from fake_providers.wire import OPENAI_CHAT, RequestFacts, WireFormat

FACTS = RequestFacts(ProviderKind.OPENAI_CHAT, "gpt-4o", stream=True)


@dataclass
class Trace:
    """What the player did, as lines, and the body bytes it put on the wire."""

    lines: list[str] = field(default_factory=list)
    wire: bytearray = field(default_factory=bytearray)
    events: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each whole event went out

    def body(self) -> bytes:
        """The body with HTTP/1.1 chunk framing removed (a cut chunk keeps what was sent)."""
        data, out = bytes(self.wire), bytearray()
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            out += data[:size]
            data = data[size + 2 :]
        return bytes(out)


def completion_events(tokens: int, wire: WireFormat = OPENAI_CHAT) -> list[bytes]:
    """The events the wire format sends for a plain answer of `tokens` tokens."""
    return list(wire.stream_events(build(tokens), FACTS))


def build(tokens: int) -> Completion:
    return ContentSpec(tokens=tokens).build(
        model="gpt-4o", response_id="chatcmpl-x", created=1, max_tokens=None, input_tokens=1
    )


def playback(spec: str, *, tokens: int = 3, wire: WireFormat = OPENAI_CHAT) -> Trace:
    plan = FaultPlan.parse(spec)
    player = play(
        plan.compile(request_ordinal=1),
        wire,
        build(tokens),
        FACTS,
        media_type="text/event-stream",
        chunked=True,
        now=0.0,
    )
    trace, now = Trace(), 0.0
    command: Command | None = next(player)
    while command is not None:
        now = _record(trace, command, now)
        try:
            command = player.send(now)
        except StopIteration:
            command = None
    return trace


def _record(trace: Trace, command: Command, now: float) -> float:
    match command:
        case Respond(status=status):
            trace.lines.append(f"respond {status}")
        case Write(data=data, events=events, rate=rate):
            trace.lines.append(f"write {len(events)}" + (f" at {rate:g}B/s" if rate else ""))
            _out(trace, data, events, now)
        case Paced(run=run):
            while run.more:
                now = max(now, run.next_due)
                data, size = run.step()
                trace.lines.append(f"tick at {now:g}s")
                _out(trace, data, (size,), now)
        case SleepUntil(t=t):
            trace.lines.append(f"sleep until {t:g}s")
            now = max(now, t)
        case AwaitGate(gate=gate):
            trace.lines.append(f"gate {gate}")
        case Park():
            trace.lines.append("park")
        case Finish(data=data, events=events, outcome=outcome, rate=rate):
            rated = f" at {rate:g}B/s" if rate else ""
            trace.lines.append(f"finish {len(events)} {outcome.value}{rated}")
            _out(trace, data + b"0\r\n\r\n", events, now)
        case Close(kind=kind):
            trace.lines.append(f"close {kind.value}")
        case Reply(status=status, body=body):
            trace.lines.append(f"reply {status}")
            trace.wire += b"%x\r\n%s\r\n" % (len(body), body)
    return now


def _out(trace: Trace, data: bytes, events: tuple[int, ...], now: float) -> None:
    trace.wire += data
    trace.events.extend(events)
    trace.times.extend([now] * len(events))
