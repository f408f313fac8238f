"""The agent's side of every proxied connection: what the proxy saw between agent and proxy.

The fake provider's ledger records the proxy-to-provider leg, as always. This one records the
leg the proxy alone can see: which route (case) a connection came in on, the host it asked
for, whether the TLS handshake with the proxy's CA succeeded, each request and the bytes
relayed back, and who closed the connection, when and how (FIN or RST, from the proxy's own
read of the agent's socket). Times are `time.monotonic_ns()`, the fake provider's clock.
No header, body or credential is kept: only method, host and path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fake_providers.ledger import CloseKind, Closer, now_ns
from fake_providers.signals import ChangeSignal


@dataclass(slots=True, eq=False)
class ProxiedRequest:
    """One request the agent sent through the proxy, and what went back to it."""

    method: str
    host: str
    path: str
    started_ns: int
    upstream: str = ""  # where the proxy sent it (the case's fake provider, or the real host)
    status: int | None = None
    response_started_ns: int | None = None
    finished_ns: int | None = None
    bytes_to_agent: int = 0  # response body bytes relayed to the agent
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "upstream": self.upstream,
            "started_ns": self.started_ns,
            "status": self.status,
            "response_started_ns": self.response_started_ns,
            "finished_ns": self.finished_ns,
            "bytes_to_agent": self.bytes_to_agent,
            "error": self.error,
        }


@dataclass(slots=True, eq=False)
class AgentConnection:
    """One connection from the agent to the proxy."""

    id: int
    route: str
    peer: str
    opened_ns: int
    host: str | None = None  # what the agent asked to reach (CONNECT host:port)
    tls_error: str | None = None  # the agent's TLS handshake with the proxy failed
    refused: str | None = None  # the proxy refused it (a host it does not intercept)
    requests: list[ProxiedRequest] = field(default_factory=list)
    bytes_from_agent: int = 0  # raw bytes read from the agent's socket (TLS included)
    closed_ns: int | None = None
    closed_by: Closer | None = None  # CLIENT: the agent; SERVER: the proxy
    close_kind: CloseKind | None = None  # None: the proxy closed it, or could not tell
    close_detail: str = ""  # e.g. "tls close_notify", "after the provider closed"
    # What the proxy saw around the close (to tell who closed when mitmproxy did it):
    upstream_closed_ns: int | None = None  # the first upstream connection of this one closed
    read_stopped_ns: int | None = None  # mitmproxy stopped reading the agent's socket
    dropped: bool = False  # the harness closed it (its route ended)

    @property
    def open(self) -> bool:
        return self.closed_ns is None

    @property
    def bytes_to_agent(self) -> int:
        return sum(r.bytes_to_agent for r in self.requests)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "peer": self.peer,
            "host": self.host,
            "opened_ns": self.opened_ns,
            "tls_error": self.tls_error,
            "refused": self.refused,
            "bytes_from_agent": self.bytes_from_agent,
            "bytes_to_agent": self.bytes_to_agent,
            "closed_ns": self.closed_ns,
            "closed_by": "agent"
            if self.closed_by is Closer.CLIENT
            else ("proxy" if self.closed_by else None),
            "close_kind": self.close_kind.value if self.close_kind else None,
            "close_detail": self.close_detail,
            "requests": [r.to_json() for r in self.requests],
        }

    def describe(self) -> str:
        """One line for timelines and the live view."""
        what = f"proxy conn#{self.id} from the agent"
        if self.host:
            what += f" for {self.host}"
        if self.refused:
            return f"{what}: refused ({self.refused})"
        if self.tls_error:
            return f"{what}: TLS handshake failed ({self.tls_error})"
        reqs = ", ".join(f"{r.method} {r.path} -> {r.status or '-'}" for r in self.requests)
        state = "open"
        how = self.close_kind.value if self.close_kind else self.close_detail
        if self.closed_by is Closer.CLIENT:
            state = f"closed by the agent ({how})"
        elif self.closed_by is Closer.SERVER:
            state = "closed by the proxy" + (f" ({how})" if how else "")
        relayed = f"{self.bytes_to_agent} B relayed" if self.requests else "no request"
        return f"{what}: {reqs or 'no request'}; {relayed}; {state}"


class AgentLedger:
    """Every connection agents made to the proxy, by route. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[AgentConnection] = []
        self._changed = ChangeSignal()

    def open(self, route: str, peer: str) -> AgentConnection:
        with self._lock:
            conn = AgentConnection(len(self._connections) + 1, route, peer, now_ns())
            self._connections.append(conn)
        self._changed.notify()
        return conn

    def update(self) -> None:
        """Tell waiters that a record changed (records are written in place)."""
        self._changed.notify()

    def closed(
        self,
        conn: AgentConnection,
        by: Closer,
        kind: CloseKind | None,
        t_ns: int,
        detail: str = "",
    ) -> None:
        """Record the first close seen; later ones change nothing."""
        with self._lock:
            if conn.closed_ns is not None:
                return
            conn.closed_ns, conn.closed_by, conn.close_kind = t_ns, by, kind
            conn.close_detail = detail
        self._changed.notify()

    def connections(self, route: str | None = None) -> list[AgentConnection]:
        with self._lock:
            return [c for c in self._connections if route in (None, c.route)]

    def requests(self, route: str | None = None) -> list[ProxiedRequest]:
        return [r for c in self.connections(route) for r in c.requests]

    def forget(self, route: str) -> None:
        with self._lock:
            self._connections = [c for c in self._connections if c.route != route]

    async def wait_for[T](
        self, predicate: Callable[[AgentLedger], T | None], timeout: float = 5.0, what: str = ""
    ) -> T:
        """Wait until `predicate(ledger)` is truthy and return it; `WaitTimeout` otherwise."""
        return await self._changed.wait_until(lambda: predicate(self), timeout, what or "proxy")

    def wait_for_blocking[T](
        self, predicate: Callable[[AgentLedger], T | None], timeout: float = 5.0, what: str = ""
    ) -> T:
        return self._changed.wait_until_blocking(lambda: predicate(self), timeout, what or "proxy")

    def to_json(self, route: str | None = None) -> dict[str, Any]:
        return {
            "clock": "CLOCK_MONOTONIC",
            "now_ns": now_ns(),
            "connections": [c.to_json() for c in self.connections(route)],
        }
