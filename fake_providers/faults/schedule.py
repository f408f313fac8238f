"""What a response does, as plain data: the actions faults compile to, laid out in a `Schedule`.

Faults never touch the wire. Each one adds a few typed actions to a `Layout` at positions in
the stream; `fake_providers.player` then turns the frozen `Schedule` into wire commands. The
action types are a closed set (`Action`), matched exhaustively by the player, so a new fault
is expressed in this vocabulary rather than in new server code.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from fake_providers.ledger import CloseKind

# ------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class WaitAtGate:
    """Stop here until the named gate is released."""

    gate: str = "default"


@dataclass(frozen=True, slots=True)
class Silence:
    """Send nothing for `duration` seconds, or (None) until the client leaves."""

    duration: float | None = None


@dataclass(frozen=True, slots=True)
class InsertMalformed:
    """Send one event no client can parse, then carry on."""


@dataclass(frozen=True, slots=True)
class EndWithError:
    """Send the provider's in-stream error event and end the response there."""

    message: str


@dataclass(frozen=True, slots=True)
class Cut:
    """Drop the connection (FIN or RST), after `keep` (a fraction) of the next event's bytes."""

    close: CloseKind
    keep: float = 0.0


Action = WaitAtGate | Silence | InsertMalformed | EndWithError | Cut
Pause = WaitAtGate | Silence  # what may happen before the headers


def rank(action: Action) -> int:
    """Order of actions at one position: pauses first, then what is written, then the end."""
    match action:
        case WaitAtGate():
            return 0
        case Silence():
            return 1
        case InsertMalformed():
            return 2
        case EndWithError():
            return 3
        case Cut(close=CloseKind.FIN):
            return 4
        case Cut():
            return 5


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer with an HTTP error instead of a stream, in the provider's own error format."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Pacing:
    """One event every `interval` seconds against absolute deadlines, plus seeded jitter."""

    interval: float
    jitter: float = 0.0


# ------------------------------------------------------------------------------ schedule


@dataclass(slots=True)
class Layout:
    """A schedule being laid out: each fault's compile step adds its part."""

    before_headers: list[Pause] = field(default_factory=list)
    between: dict[int, list[Action]] = field(default_factory=dict)
    refusal: Refusal | None = None
    pacing: Pacing | None = None
    drip: float | None = None

    def after(self, events: int, action: Action) -> None:
        """Do `action` once `events` events are out (0: right after the headers)."""
        self.between.setdefault(events, []).append(action)

    def freeze(self, *, seed: int = 0, request_ordinal: int = 0) -> Schedule:
        actions = {k: tuple(sorted(v, key=rank)) for k, v in self.between.items()}
        before = tuple(sorted(self.before_headers, key=rank))
        return Schedule(
            self.refusal, before, actions, self.pacing, self.drip, seed, request_ordinal
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the server does for one response. Pure data, laid out lazily.

    `at(k)` lists the actions to run after k events were written and before event k+1
    (k=0: right after the headers). A fault placed past the end of the stream still
    happens, just before the last event: `hang-after=500` on a 200-event stream hangs
    before the last one. `due()` yields when each event may go out, in seconds after
    the headers (nothing when unpaced).
    """

    refusal: Refusal | None = None
    before_headers: tuple[Pause, ...] = ()
    actions: dict[int, tuple[Action, ...]] = field(default_factory=dict)
    pacing: Pacing | None = None
    drip: float | None = None
    seed: int = 0
    request_ordinal: int = 0

    def at(self, position: int, *, last: bool = False) -> tuple[Action, ...]:
        """Actions at `position`; with `last`, also every action placed beyond it."""
        if not last:
            return self.actions.get(position, ())
        found = [a for k, acts in sorted(self.actions.items()) if k >= position for a in acts]
        return tuple(sorted(found, key=rank))

    def next_position(self, position: int) -> int | None:
        """The first position after `position` where an action waits, if any."""
        later = [k for k in self.actions if k > position]
        return min(later) if later else None

    def due(self) -> Iterator[float]:
        """Offsets (seconds after headers) of events 1, 2, ... against absolute deadlines."""
        pacing = self.pacing
        if pacing is None:
            return
        if pacing.jitter <= 0:
            i = 0
            while True:
                yield i * pacing.interval
                i += 1
        rng = random.Random(self.seed * 1_000_003 + self.request_ordinal)
        latest, i = 0.0, 0
        while True:
            latest = max(latest, i * pacing.interval + rng.uniform(0.0, pacing.jitter))
            yield latest
            i += 1
