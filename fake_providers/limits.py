"""Every bound the fake provider keeps, with its default, in one place.

No input may make the server grow without bound or wait forever on a client that is not
really there. These are the knobs (`FakeProvider(limits=...)`, `serve --request-timeout`,
`--idle-timeout`); the content ceiling is `content.MAX_TOKENS` (100,000 text chunks per
response) and the fault-spec ranges are in `faults.values`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Timeouts and caps of one fake provider."""

    request_timeout: float = 30.0
    """A request (head and body) must be whole within this many seconds of its first byte.

    Cuts slowloris clients that trickle a request; a response in flight is never timed
    out, however long the client stays silent (that is the streaming case)."""
    idle_timeout: float = 600.0
    """A keep-alive connection with no request and no response in flight is closed after
    this long. Generous on purpose: an agent idles between turns."""
    max_body: int = 8 * 1024 * 1024
    """Largest request body accepted (413 above it)."""
    ledger_connections: int = 10_000
    """Closed connections the ledger keeps in memory; older ones are summarised into
    totals (and written to the ledger log, if one is set)."""
    ledger_bytes: int = 32 * 1024 * 1024
    """Request bodies and event records the ledger keeps in memory, in bytes (each event
    record costs 16); past it the oldest closed connections are summarised."""

    def __post_init__(self) -> None:
        for name in ("request_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 86_400:
                raise ValueError(f"{name}={value!r}: expected seconds above 0, at most 86400")
        for name in ("max_body", "ledger_connections", "ledger_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected 1 or more")
