"""What the pass-through relay sends upstream and how it counts what comes back (sans-IO)."""

from __future__ import annotations

from collections.abc import Iterator

from fake_providers.faults import Schedule
from harness.proxy.addon import UPSTREAM_HEADER

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        UPSTREAM_HEADER,
        "accept-encoding",
    }
)


def upstream_headers(raw: list[tuple[bytes, bytes]], authority: str) -> list[tuple[str, str]]:
    """The agent's headers as the real host must get them: hop-by-hop ones dropped, the
    body asked for in clear text (events are counted as they pass), the real Host."""
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in raw
        if k.decode("latin-1").lower() not in HOP_BY_HOP
    ]
    headers.append(("accept-encoding", "identity"))
    headers.append(("host", authority.removesuffix(":443")))
    return headers


class EventSplitter:
    """Server-sent events out of a byte stream, each with its blank-line terminator (sans-IO)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data.replace(b"\r\n", b"\n")
        events = []
        while (end := self._buffer.find(b"\n\n")) >= 0:
            events.append(self._buffer[: end + 2])
            self._buffer = self._buffer[end + 2 :]
        return events

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


class Progress:
    """How many events of a response were written, and the pace's offsets from its start."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self._due: Iterator[float] | None = None

    def due(self, schedule: Schedule) -> Iterator[float]:
        if self._due is None:
            self._due = schedule.due()
        return self._due
