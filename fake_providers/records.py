"""What the ledger records: one `ConnectionRecord` per connection, one `RequestRecord` per request.

Plain mutable records, written only by the `Ledger` (under its lock) and read by checks.
Secrets never enter: credential headers and query parameters are redacted at the door.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fake_providers.roles import Role

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_QUERY = frozenset({"key", "api-key", "api_key", "access_token", "token"})


class Closer(StrEnum):
    CLIENT = "client"
    SERVER = "server"


class CloseKind(StrEnum):
    FIN = "fin"
    RST = "rst"


class Outcome(StrEnum):
    """How a response ended."""

    COMPLETE = "complete"
    CLIENT_CLOSED = "client-closed"
    SERVER_CLOSED = "server-closed"
    SERVER_RESET = "server-reset"
    STREAM_ERROR = "stream-error"
    WRITE_FAILED = "write-failed"
    SHUTDOWN = "shutdown"
    SERVER_ERROR = "server-error"  # a bug of the fake provider; see the connection's write_error


def redact_headers(
    headers: Iterator[tuple[bytes, bytes]] | list[tuple[bytes, bytes]],
) -> tuple[tuple[str, str], ...]:
    out = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = REDACTED if name in SECRET_HEADERS else raw_value.decode("latin-1")
        out.append((name, value))
    return tuple(out)


def redact_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in pairs])


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One HTTP request on a connection and the response we gave it."""

    ordinal: int
    connection_id: int
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body_digest: str
    body_size: int
    started_ns: int
    kind: str | None = None
    model: str | None = None
    stream: bool | None = None
    role: Role = Role.PROBE  # main | side | probe, as fake_providers.roles classified it
    prompt: str | None = None  # the harness prompt tag its latest user message carries
    role_reason: str = ""
    plan: str = ""
    call_id: int = 0
    attempt: int = 0
    status: int | None = None
    response_started_ns: int | None = None
    finished_ns: int | None = None
    outcome: Outcome | None = None
    body: bytes = field(default=b"", repr=False)
    malformed: str | None = None  # why the request was refused as malformed, if it was
    event_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)
    event_bytes: array[int] = field(default_factory=lambda: array("q"), repr=False)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def events_sent(self) -> int:
        return len(self.event_ns)

    @property
    def bytes_sent(self) -> int:
        return sum(self.event_bytes)

    def events_after(self, t_ns: int) -> int:
        return sum(1 for t in self.event_ns if t > t_ns)

    def bytes_after(self, t_ns: int) -> int:
        return sum(b for t, b in zip(self.event_ns, self.event_bytes, strict=True) if t > t_ns)

    def to_json(self, *, events: bool = True, bodies: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ordinal": self.ordinal,
            "connection_id": self.connection_id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "kind": self.kind,
            "model": self.model,
            "stream": self.stream,
            "role": self.role.value,
            "prompt": self.prompt,
            "role_reason": self.role_reason,
            "headers": dict(self.headers),
            "body_digest": self.body_digest,
            "body_size": self.body_size,
            "plan": self.plan,
            "call_id": self.call_id,
            "attempt": self.attempt,
            "started_ns": self.started_ns,
            "status": self.status,
            "response_started_ns": self.response_started_ns,
            "finished_ns": self.finished_ns,
            "outcome": self.outcome.value if self.outcome else None,
            "events_sent": self.events_sent,
            "bytes_sent": self.bytes_sent,
            "malformed": self.malformed,
        }
        if events:
            data["events"] = [
                {"ordinal": i + 1, "bytes": b, "t_ns": t}
                for i, (t, b) in enumerate(zip(self.event_ns, self.event_bytes, strict=True))
            ]
        if bodies:
            data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass(slots=True, eq=False)
class ConnectionRecord:
    """One TCP connection, from accept to close, with who closed it and how."""

    id: int
    peer: str
    tls: bool
    opened_ns: int
    closed_ns: int | None = None
    closed_by: Closer | None = None
    close_kind: CloseKind | None = None
    write_error: str | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    control: bool = False  # carried control-API calls
    malformed: str | None = None  # why we refused what the client sent, at the HTTP level

    @property
    def model_traffic(self) -> bool:
        """False for connections that only ever talked to the control API."""
        return bool(self.requests) or not self.control

    @property
    def open(self) -> bool:
        return self.closed_ns is None

    @property
    def events_sent(self) -> int:
        return sum(r.events_sent for r in self.requests)

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.requests)

    @property
    def last_event_ns(self) -> int | None:
        times = [r.event_ns[-1] for r in self.requests if r.event_ns]
        return max(times) if times else None

    def to_json(self, *, events: bool = True, bodies: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "tls": self.tls,
            "opened_ns": self.opened_ns,
            "closed_ns": self.closed_ns,
            "closed_by": self.closed_by.value if self.closed_by else None,
            "close_kind": self.close_kind.value if self.close_kind else None,
            "write_error": self.write_error,
            "malformed": self.malformed,
            "events_sent": self.events_sent,
            "bytes_sent": self.bytes_sent,
            "requests": [r.to_json(events=events, bodies=bodies) for r in self.requests],
        }


@dataclass(frozen=True, slots=True)
class LogicalCall:
    """One call an agent meant to make, with every attempt (the first plus its retries)."""

    id: int
    attempts: tuple[RequestRecord, ...]

    @property
    def retries(self) -> int:
        return len(self.attempts) - 1


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A change in the ledger, for live displays (`cancel-harness serve`)."""

    what: str  # accepted | request | response | held | closed | finished
    connection: ConnectionRecord
    request: RequestRecord | None = None
    detail: str = ""
