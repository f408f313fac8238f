"""The socket-truth ledger: what really happened on every connection, and when.

The server records facts here as they happen (accepted, request, response start, each event
written, who closed and how). Checks read it; nothing in it is the agent's own word.
Timestamps come from the ledger's clock, `time.monotonic_ns()` (CLOCK_MONOTONIC) unless a
test injects another, so another process on the machine can compare its own stamps with
ours. Secrets never enter: credential headers and query parameters are redacted at the door.

Memory is bounded: past `retain_connections` closed connections (or `retain_bytes` of
bodies and event records) the oldest closed ones are summarised into `totals()` and
dropped; open connections are never dropped. `log_to(path)` streams every connection to
a JSONL file as it ends, so a soak keeps the whole history on disk instead.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fake_providers.records import (
    REDACTED,
    SECRET_HEADERS,
    SECRET_QUERY,
    CloseKind,
    Closer,
    ConnectionRecord,
    LedgerEvent,
    LogicalCall,
    Outcome,
    RequestRecord,
    redact_headers,
    redact_query,
)
from fake_providers.roles import Classification
from fake_providers.signals import ChangeSignal

__all__ = [
    "REDACTED",
    "SECRET_HEADERS",
    "SECRET_QUERY",
    "CloseKind",
    "Closer",
    "ConnectionRecord",
    "Ledger",
    "LedgerEvent",
    "LogicalCall",
    "Outcome",
    "RequestRecord",
    "now_ns",
    "redact_headers",
    "redact_query",
]

now_ns = time.monotonic_ns
EVENT_RECORD_BYTES = 16  # one int64 time and one int64 size per event written
REQUEST_RECORD_BYTES = 1280  # a request record's objects, besides its body and headers
TOTALS = ("connections", "requests", "events", "bytes")


class Ledger:
    """Every connection the fake provider saw. Thread-safe; queries take a consistent view."""

    def __init__(
        self,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        retain_connections: int = 10_000,
        retain_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self._clock = clock
        self.retain_connections = retain_connections
        self.retain_bytes = retain_bytes
        self._lock = threading.RLock()
        self._changed = ChangeSignal()
        self._listeners: list[Callable[[LedgerEvent], None]] = []
        self._log: IO[str] | None = None
        self._forget_all()

    def _forget_all(self) -> None:
        self._connections: dict[int, ConnectionRecord] = {}  # by id, oldest first
        self._requests: list[RequestRecord] = []
        self._next_connection = 1
        self._next_request = 1
        self._next_call = 1
        self._calls_by_body: dict[tuple[str, str], list[int]] = {}
        self._attempts: dict[int, int] = {}
        self._live_attempts: dict[int, int] = {}  # attempts of each call still retained
        self._closed = 0  # retained connections that are closed
        self._retained_bytes = 0
        self._dropped = dict.fromkeys(TOTALS, 0)

    # ------------------------------------------------------------------- recording side

    def subscribe(self, listener: Callable[[LedgerEvent], None]) -> None:
        """Call `listener` (on the server's loop) for each change; keep it quick."""
        self._listeners.append(listener)

    def _emit(self, event: LedgerEvent) -> None:
        for listener in self._listeners:
            listener(event)

    @contextmanager
    def log_to(self, path: Path) -> Iterator[None]:
        """Append each connection, as one JSON line, once it is closed and its requests ended."""
        with path.open("a", encoding="utf-8", buffering=1) as out:
            self._log = out
            try:
                yield
            finally:
                self._log = None

    def open_connection(self, peer: str, *, tls: bool) -> ConnectionRecord:
        with self._lock:
            conn = ConnectionRecord(self._next_connection, peer, tls, self._clock())
            self._next_connection += 1
            self._connections[conn.id] = conn
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
                ordinal=self._next_request,
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
            self._next_request += 1
            req.call_id, req.attempt = self._group(req)
            self._live_attempts[req.call_id] = self._live_attempts.get(req.call_id, 0) + 1
            self._requests.append(req)
            self._retained_bytes += _cost(req)
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
        valid = raw is not None and raw.isascii() and raw.isdigit() and len(raw) < 10
        count = int(raw) if valid and raw is not None else None
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
        malformed: str | None = None,
        classification: Classification | None = None,
    ) -> None:
        with self._lock:
            req.kind, req.model, req.stream = kind, model, stream
            req.malformed = malformed
            if classification is not None:
                req.role, req.prompt = classification.role, classification.prompt
                req.role_reason = classification.reason
            conn = self._connections.get(req.connection_id)
        if conn is not None:
            self._emit(LedgerEvent("request", conn, req))

    def connection_malformed(self, conn: ConnectionRecord, reason: str) -> None:
        """The client sent something we refused at the HTTP level (the 4xx said why)."""
        with self._lock:
            conn.malformed = reason[:1000]
        self._changed.notify()

    def response_started(self, req: RequestRecord, status: int, plan: str) -> None:
        with self._lock:
            req.status = status
            req.plan = plan
            req.response_started_ns = self._clock()
            conn = self._connections.get(req.connection_id)
        self._changed.notify()
        if conn is not None:
            self._emit(LedgerEvent("response", conn, req))

    def events_written(self, req: RequestRecord, sizes: Sequence[int]) -> None:
        """Record events that just went into the socket, all stamped with the same instant."""
        t = self._clock()
        with self._lock:
            req.event_ns.extend([t] * len(sizes))
            req.event_bytes.extend(sizes)
            self._retained_bytes += EVENT_RECORD_BYTES * len(sizes)
        self._changed.notify()

    def event_written(self, req: RequestRecord, size: int) -> None:
        """Record one event (the pacer's path: one write per due event)."""
        t = self._clock()
        with self._lock:
            req.event_ns.append(t)
            req.event_bytes.append(size)
            self._retained_bytes += EVENT_RECORD_BYTES
        self._changed.notify()

    def held(self, req: RequestRecord, detail: str) -> None:
        conn = self._connections.get(req.connection_id)
        if conn is not None:
            self._emit(LedgerEvent("held", conn, req, detail))

    def request_finished(self, req: RequestRecord, outcome: Outcome) -> None:
        with self._lock:
            if req.outcome is not None:
                return
            req.finished_ns = self._clock()
            req.outcome = outcome
            conn = self._connections.get(req.connection_id)
            if conn is not None and conn.closed_ns is not None:
                self._settled(conn)
            elif self._retained_bytes > self.retain_bytes:  # a busy keep-alive connection
                self._drop_oldest()
        self._changed.notify()
        if conn is not None:
            self._emit(LedgerEvent("finished", conn, req))

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
            conn.closed_ns = self._clock()
            conn.closed_by = by
            conn.close_kind = kind
            conn.write_error = write_error
            if conn.id in self._connections:
                self._closed += 1
                self._settled(conn)
        self._changed.notify()
        self._emit(LedgerEvent("closed", conn))

    def _settled(self, conn: ConnectionRecord) -> None:
        """A closed connection whose requests have all ended: log it, make room (locked)."""
        if any(r.outcome is None for r in conn.requests):
            return  # its responder has yet to record how the response ended
        if self._log is not None and conn.model_traffic:
            self._log.write(json.dumps(conn.to_json(), separators=(",", ":")) + "\n")
        if self._closed > self.retain_connections or self._retained_bytes > self.retain_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Summarise and forget the oldest closed connections, down to 90% of the caps;
        then, if bodies and events still take too much, the oldest ended requests of
        connections still open (keep-alive). Nothing in flight is ever dropped."""
        keep_connections = self.retain_connections * 9 // 10
        keep_bytes = self.retain_bytes * 9 // 10
        dropped: set[int] = set()
        for conn in list(self._connections.values()):
            if self._closed <= keep_connections and self._retained_bytes <= keep_bytes:
                break
            if conn.closed_ns is None or any(r.outcome is None for r in conn.requests):
                continue  # in flight: never dropped
            del self._connections[conn.id]
            self._closed -= 1
            self._dropped["connections"] += conn.model_traffic
            for req in conn.requests:
                dropped.add(req.ordinal)
                self._forget_request(req)
        thinned: set[int] = set()
        for req in self._requests:
            if self._retained_bytes <= keep_bytes:
                break
            if req.outcome is not None and req.ordinal not in dropped:
                dropped.add(req.ordinal)
                thinned.add(req.connection_id)
                self._forget_request(req)
        for conn_id in thinned:
            if (kept := self._connections.get(conn_id)) is not None:
                kept.requests = [r for r in kept.requests if r.ordinal not in dropped]
        if dropped:
            self._requests = [r for r in self._requests if r.ordinal not in dropped]

    def _forget_request(self, req: RequestRecord) -> None:
        self._dropped["requests"] += 1
        self._dropped["events"] += req.events_sent
        self._dropped["bytes"] += req.bytes_sent
        cost = _cost(req) + EVENT_RECORD_BYTES * req.events_sent
        self._retained_bytes = max(0, self._retained_bytes - cost)  # in flight at a reset
        left = self._live_attempts.pop(req.call_id, 1) - 1
        if left:
            self._live_attempts[req.call_id] = left
            return
        self._attempts.pop(req.call_id, None)  # a retry after this starts a new call
        calls = self._calls_by_body.get((req.path, req.body_digest))
        if calls is not None and req.call_id in calls:
            calls.remove(req.call_id)
            if not calls:
                del self._calls_by_body[(req.path, req.body_digest)]

    def reset(self) -> int:
        """Forget everything recorded so far (open connections keep being served).

        Returns roughly how many bytes of records were forgotten.
        """
        with self._lock:
            live = [c for c in self._connections.values() if c.open]
            forgotten = self._retained_bytes
            next_connection, next_request = self._next_connection, self._next_request
            self._forget_all()
            self._next_connection, self._next_request = next_connection, next_request
            for conn in live:  # a response still in flight goes on, but is not counted
                conn.requests = [r for r in conn.requests if r.outcome is None]
                self._connections[conn.id] = conn
        self._changed.notify()
        return forgotten

    # ---------------------------------------------------------------------- query side

    def now(self) -> int:
        """The ledger's clock, in nanoseconds (CLOCK_MONOTONIC unless a test injected one)."""
        return self._clock()

    def connection(self, connection_id: int) -> ConnectionRecord:
        with self._lock:
            conn = self._connections.get(connection_id)
        if conn is None:
            raise KeyError(f"no connection #{connection_id} in the ledger")
        return conn

    def connections(self) -> list[ConnectionRecord]:
        """Connections that carried model traffic (control-API connections left out)."""
        with self._lock:
            return [c for c in self._connections.values() if c.model_traffic]

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
            return [c for c in self._connections.values() if c.open and c.model_traffic]

    def closed_by_client_within(
        self, t_ns: int, within_s: float, *, connection_id: int | None = None
    ) -> ConnectionRecord | None:
        """The connection (or the given one) the client closed in (t, t + within], if any."""
        limit = t_ns + int(within_s * 1e9)
        with self._lock:
            for conn in self._connections.values():
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

    def totals(self) -> dict[str, int]:
        """Model-traffic connections, requests, events and bytes since start (or reset),
        counting those already summarised out of memory."""
        with self._lock:
            kept = self.connections()
            requests = self._requests
            return {
                "connections": self._dropped["connections"] + len(kept),
                "requests": self._dropped["requests"] + len(requests),
                "events": self._dropped["events"] + sum(r.events_sent for r in requests),
                "bytes": self._dropped["bytes"] + sum(r.bytes_sent for r in requests),
            }

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

    def to_json(self, *, events: bool = True, bodies: bool = False) -> dict[str, Any]:
        with self._lock:
            conns = [c.to_json(events=events, bodies=bodies) for c in self.connections()]
            calls = [
                {"id": c.id, "attempts": [r.ordinal for r in c.attempts], "retries": c.retries}
                for c in self.logical_calls()
            ]
            return {
                "clock": "CLOCK_MONOTONIC",
                "now_ns": self._clock(),
                "connections": conns,
                "calls": calls,
                "totals": self.totals(),
                "summarised": dict(self._dropped),
            }


def _cost(req: RequestRecord) -> int:
    """What a request record takes in memory, roughly, before its events."""
    headers = sum(len(name) + len(value) for name, value in req.headers)
    return REQUEST_RECORD_BYTES + req.body_size + headers
