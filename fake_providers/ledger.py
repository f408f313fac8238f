"""The socket-truth ledger: what really happened on every connection, and when.

The server records facts here as they happen (accepted, request, response start, each event
written, who closed and how). Checks read it; nothing in it is the agent's own word.
Timestamps are `time.monotonic_ns()` (CLOCK_MONOTONIC), so another process on the
machine can compare its own stamps with ours. Secrets never enter: credential headers and
query parameters are redacted at the door.
"""

from __future__ import annotations

import hashlib
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fake_providers.roles import Classification, Role
from fake_providers.signals import ChangeSignal

now_ns = time.monotonic_ns

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


class Ledger:
    """Every connection the fake provider saw. Thread-safe; queries take a consistent view."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._connections: list[ConnectionRecord] = []
        self._requests: list[RequestRecord] = []
        self._next_call = 1
        self._next_connection = 1  # ids stay unique across resets (open connections are kept)
        self._calls_by_body: dict[tuple[str, str], list[int]] = {}
        self._attempts: dict[int, int] = {}
        self._changed = ChangeSignal()
        self._listeners: list[Callable[[LedgerEvent], None]] = []

    # ------------------------------------------------------------------- recording side

    def subscribe(self, listener: Callable[[LedgerEvent], None]) -> None:
        """Call `listener` (on the server's loop) for each change; keep it quick."""
        self._listeners.append(listener)

    def _emit(self, event: LedgerEvent) -> None:
        for listener in self._listeners:
            listener(event)

    def open_connection(self, peer: str, *, tls: bool) -> ConnectionRecord:
        with self._lock:
            conn = ConnectionRecord(self._next_connection, peer, tls, now_ns())
            self._next_connection += 1
            self._connections.append(conn)
        self._changed.notify()
        self._emit(LedgerEvent("accepted", conn))
        return conn

    def start_request(
        self,
        conn: ConnectionRecord,
        *,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        started_ns: int,
    ) -> RequestRecord:
        redacted = redact_headers(headers)
        digest = hashlib.sha256(body).hexdigest()[:16]
        with self._lock:
            req = RequestRecord(
                ordinal=len(self._requests) + 1,
                connection_id=conn.id,
                method=method,
                path=path,
                query=redact_query(query),
                headers=redacted,
                body_digest=digest,
                body_size=len(body),
                started_ns=started_ns,
                body=body,
            )
            req.call_id, req.attempt = self._group(req)
            self._requests.append(req)
            conn.requests.append(req)
        self._changed.notify()
        return req

    def _group(self, req: RequestRecord) -> tuple[int, int]:
        # The official SDKs number their retries in x-stainless-retry-count: retry N joins
        # the oldest call with the same path and body that has exactly N attempts so far,
        # so concurrent identical calls keep their own retries. Other clients resend the
        # same body, so an identical body on the same path is a retry of the latest call.
        key = (req.path, req.body_digest)
        raw = req.header("x-stainless-retry-count")
        count = int(raw) if raw is not None and raw.isdigit() else None
        calls = self._calls_by_body.setdefault(key, [])
        if count is not None and count > 0:
            for call_id in calls:
                if self._attempts[call_id] == count:
                    self._attempts[call_id] += 1
                    return call_id, count
        elif count is None and calls:
            call_id = calls[-1]
            self._attempts[call_id] += 1
            return call_id, self._attempts[call_id] - 1
        call_id = self._next_call
        self._next_call += 1
        calls.append(call_id)
        self._attempts[call_id] = 1
        return call_id, 0

    def describe_request(
        self,
        req: RequestRecord,
        *,
        kind: str | None,
        model: str | None,
        stream: bool | None,
        classification: Classification | None = None,
    ) -> None:
        with self._lock:
            req.kind, req.model, req.stream = kind, model, stream
            if classification is not None:
                req.role, req.prompt = classification.role, classification.prompt
                req.role_reason = classification.reason
        conn = self.connection(req.connection_id)
        self._emit(LedgerEvent("request", conn, req))

    def response_started(self, req: RequestRecord, status: int, plan: str) -> None:
        with self._lock:
            req.status = status
            req.plan = plan
            req.response_started_ns = now_ns()
        self._changed.notify()
        self._emit(LedgerEvent("response", self.connection(req.connection_id), req))

    def events_written(self, req: RequestRecord, sizes: list[int]) -> None:
        """Record events that just went into the socket, all stamped with the same instant."""
        t = now_ns()
        with self._lock:
            req.event_ns.extend([t] * len(sizes))
            req.event_bytes.extend(sizes)
        self._changed.notify()

    def event_written(self, req: RequestRecord, size: int) -> None:
        """Record one event (the pacer's path: one write per due event)."""
        t = now_ns()
        with self._lock:
            req.event_ns.append(t)
            req.event_bytes.append(size)
        self._changed.notify()

    def held(self, req: RequestRecord, detail: str) -> None:
        self._emit(LedgerEvent("held", self.connection(req.connection_id), req, detail))

    def request_finished(self, req: RequestRecord, outcome: Outcome) -> None:
        with self._lock:
            if req.outcome is not None:
                return
            req.finished_ns = now_ns()
            req.outcome = outcome
        self._changed.notify()
        self._emit(LedgerEvent("finished", self.connection(req.connection_id), req))

    def connection_closed(
        self,
        conn: ConnectionRecord,
        by: Closer,
        kind: CloseKind,
        *,
        write_error: str | None = None,
    ) -> None:
        """Record the first close seen on the connection; later ones change nothing."""
        with self._lock:
            if conn.closed_ns is not None:
                return
            conn.closed_ns = now_ns()
            conn.closed_by = by
            conn.close_kind = kind
            conn.write_error = write_error
        self._changed.notify()
        self._emit(LedgerEvent("closed", conn))

    def reset(self) -> None:
        """Forget everything recorded so far (open connections keep being served)."""
        with self._lock:
            self._connections = [c for c in self._connections if c.open]
            self._requests = []
            self._calls_by_body = {}
            self._attempts = {}
        self._changed.notify()

    # ---------------------------------------------------------------------- query side

    def connection(self, connection_id: int) -> ConnectionRecord:
        with self._lock:
            for conn in self._connections:
                if conn.id == connection_id:
                    return conn
        raise KeyError(f"no connection #{connection_id} in the ledger")

    def connections(self) -> list[ConnectionRecord]:
        """Connections that carried model traffic (control-API connections left out)."""
        with self._lock:
            return [c for c in self._connections if c.model_traffic]

    def requests(self, *, kind: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests to the provider (control-API calls are never recorded), oldest first."""
        with self._lock:
            return [
                r
                for r in self._requests
                if (kind is None or r.kind == kind) and (path is None or r.path == path)
            ]

    def requests_after(self, t_ns: int) -> list[RequestRecord]:
        return [r for r in self.requests() if r.started_ns > t_ns]

    def events_after(self, t_ns: int) -> int:
        with self._lock:
            return sum(r.events_after(t_ns) for r in self._requests)

    def bytes_after(self, t_ns: int) -> int:
        with self._lock:
            return sum(r.bytes_after(t_ns) for r in self._requests)

    def open_connections(self) -> list[ConnectionRecord]:
        with self._lock:
            return [c for c in self._connections if c.open and c.model_traffic]

    def closed_by_client_within(
        self, t_ns: int, within_s: float, *, connection_id: int | None = None
    ) -> ConnectionRecord | None:
        """The connection (or the given one) the client closed in (t, t + within], if any."""
        limit = t_ns + int(within_s * 1e9)
        with self._lock:
            for conn in self._connections:
                if not conn.model_traffic or connection_id not in (None, conn.id):
                    continue
                if (
                    conn.closed_by is Closer.CLIENT
                    and conn.closed_ns is not None
                    and t_ns <= conn.closed_ns <= limit
                ):
                    return conn
        return None

    def logical_calls(self) -> list[LogicalCall]:
        with self._lock:
            calls: dict[int, list[RequestRecord]] = {}
            for r in self._requests:
                calls.setdefault(r.call_id, []).append(r)
        return [LogicalCall(cid, tuple(reqs)) for cid, reqs in calls.items()]

    async def wait_for[T](
        self, predicate: Callable[[Ledger], T | None], timeout: float = 5.0, what: str = "ledger"
    ) -> T:
        """Wait until `predicate(ledger)` is truthy and return it; `WaitTimeout` otherwise."""
        return await self._changed.wait_until(lambda: predicate(self), timeout, what)

    def wait_for_blocking[T](
        self, predicate: Callable[[Ledger], T | None], timeout: float = 5.0, what: str = "ledger"
    ) -> T:
        return self._changed.wait_until_blocking(lambda: predicate(self), timeout, what)

    async def wait_for_events(
        self, count: int, *, request_ordinal: int | None = None, timeout: float = 5.0
    ) -> RequestRecord:
        """Wait until a request (the given one, or any) has had `count` events written."""

        def ready(ledger: Ledger) -> RequestRecord | None:
            for r in ledger.requests():
                if request_ordinal in (None, r.ordinal) and r.events_sent >= count:
                    return r
            return None

        where = f"request #{request_ordinal}" if request_ordinal else "any request"
        return await self.wait_for(ready, timeout, f"{count} events written on {where}")

    async def wait_for_close(self, connection_id: int, timeout: float = 5.0) -> ConnectionRecord:
        def closed(ledger: Ledger) -> ConnectionRecord | None:
            conn = ledger.connection(connection_id)
            return None if conn.open else conn

        return await self.wait_for(closed, timeout, f"connection #{connection_id} to close")

    def to_json(self, *, events: bool = True, bodies: bool = False) -> dict[str, Any]:
        with self._lock:
            conns = [c.to_json(events=events, bodies=bodies) for c in self.connections()]
            calls = [
                {"id": c.id, "attempts": [r.ordinal for r in c.attempts], "retries": c.retries}
                for c in self.logical_calls()
            ]
        return {
            "clock": "CLOCK_MONOTONIC",
            "now_ns": now_ns(),
            "connections": conns,
            "calls": calls,
        }
