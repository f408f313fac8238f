"""`ProxiedTarget`: any process target, made to reach its provider only through the proxy.

The agent keeps the provider's real base URL (`{base_url}` is `https://api.openai.com/v1`)
and gets the proxy and its CA in its environment; the proxy sends its provider traffic to
the case's fake provider, so every check reads the same ledger as a direct run. Each case
has a route (a port) of its own on the process's one proxy, so cases side by side never
share an agent's traffic. The agent's side of each connection becomes timeline notes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from fake_providers.ledger import now_ns
from harness.proxy.hosts import real_base_url
from harness.proxy.ledger import AgentConnection
from harness.proxy.service import ProxyRoute, ProxyService, shared_proxy
from harness.target import (
    AgentBroke,
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    StreamLog,
    Submission,
    Target,
    TargetStartError,
    TimelineNote,
    Transcript,
)

_routes = itertools.count(1)


class ProxiedTarget:
    """Delegates everything to `inner`; only the endpoint it starts against changes."""

    def __init__(self, inner: Target, service: Callable[[], ProxyService] = shared_proxy) -> None:
        self.inner = inner
        self.name = f"{inner.name} via proxy"
        self.capabilities: frozenset[Capability] = inner.capabilities
        self._service_factory = service
        self._service: ProxyService | None = None
        self._route: ProxyRoute | None = None
        self._route_name = ""
        self._notes: list[TimelineNote] = []

    @classmethod
    def around(cls, inner: Target) -> ProxiedTarget:
        """A proxied target with the whole surface of `inner`'s class.

        Scenarios recognise observers such as ACP's by `isinstance` on a runtime-checkable
        Protocol, which looks at class attributes only (`inspect.getattr_static`), never at
        `__getattr__`; so the wrapper's class forwards every public method `inner`'s has.
        """
        forwarded: dict[str, Any] = {}
        for name, member in vars(type(inner)).items():
            if name.startswith("_") or hasattr(cls, name) or not callable(member):
                continue
            forwarded[name] = _forward(name)
        kind = type(f"Proxied{type(inner).__name__}", (cls,), forwarded)
        made: ProxiedTarget = kind(inner)
        return made

    def __getattr__(self, name: str) -> Any:
        # providers, close_within, startup_timeout, the ACP observer's methods, leave, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        parts = urlsplit(endpoint.base_url)
        if parts.scheme != "http":
            raise TargetStartError(
                f"the proxy routes to a plain-http fake provider, not {endpoint.base_url}; "
                "drop --tls (through the proxy the agent already speaks TLS, to the proxy)"
            )
        self._service = service = await anyio.to_thread.run_sync(self._service_factory)
        self._route_name = f"{self.inner.name}#{next(_routes)}"
        upstream = f"{parts.scheme}://{parts.netloc}"
        self._route = route = await service.open_route(self._route_name, upstream)
        real = real_base_url(endpoint.kind)
        proxied = Endpoint(
            endpoint.kind,
            real,
            endpoint.api_key,
            ca_file=route.ca_file,
            env={**endpoint.env, **route.env()},
        )
        self._notes.append(
            TimelineNote(
                now_ns(),
                f"proxy: port {route.port} -> {upstream}; the agent keeps {real} "
                f"and goes through HTTPS_PROXY={route.url}",
            )
        )
        try:
            await self.inner.start(proxied, settings)
        except BaseException:
            await self._close_route()
            raise

    async def new_session(self) -> str:
        return await self.inner.new_session()

    async def submit(self, session_id: str, prompt: str) -> Submission:
        return await self.inner.submit(session_id, prompt)

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        return await self.inner.cancel(session_id, stream_id)

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        outcome = await self.inner.wait_outcome(submission, timeout)
        if outcome.stop_reason == "error":
            why = self.diagnose()
            if why:
                raise AgentBroke(f"{outcome.error or 'the turn ended in error'}; {why}")
        return outcome

    async def transcript(self, session_id: str) -> Transcript:
        return await self.inner.transcript(session_id)

    async def stream_log(self, submission: Submission, timeout: float) -> StreamLog:
        return await self.inner.stream_log(submission, timeout)

    def live_pids(self) -> list[int]:
        return self.inner.live_pids()

    def notes(self) -> list[TimelineNote]:
        notes = [*self.inner.notes(), *self._notes]
        if self._service is not None and self._route_name:
            for conn in self._service.ledger.connections(self._route_name):
                notes += connection_notes(conn)
        return sorted(notes, key=lambda n: n.t_ns)

    async def stop(self) -> None:
        try:
            await self.inner.stop()
        finally:
            await self._close_route()

    async def _close_route(self) -> None:
        route, self._route = self._route, None
        if route is not None and self._service is not None:
            with anyio.CancelScope(shield=True):
                await self._service.close_route(route)

    def diagnose(self) -> str:
        """Why the agent's traffic did not reach its provider through the proxy, if it did not."""
        if self._service is None or not self._route_name:
            return ""
        conns = self._service.ledger.connections(self._route_name)
        if any(c.requests for c in conns):
            return ""
        port = self._route.port if self._route else "?"
        for conn in conns:
            if conn.tls_error:
                return f"the agent rejected the proxy's certificate: {conn.tls_error}"
        refused = [c.refused for c in conns if c.refused]
        if refused:
            return f"the proxy refused the agent's connection: {refused[0]}"
        return (
            f"no request reached the proxy (port {port}): the agent ignores HTTPS_PROXY; "
            "likely it uses its own HTTP stack (Node's fetch before 22.21 needs "
            "NODE_USE_ENV_PROXY=1 or a proxy agent) or a proxy setting of its own"
        )


def _forward(name: str) -> Callable[..., Any]:
    def forward(self: ProxiedTarget, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    forward.__name__ = name
    return forward


def connection_notes(conn: AgentConnection) -> list[TimelineNote]:
    """The agent's side of one proxied connection, as timeline entries."""
    where = f"proxy conn#{conn.id}"
    notes = [TimelineNote(conn.opened_ns, f"{where} opened by the agent for {conn.host or '?'}")]
    for request in conn.requests:
        notes.append(
            TimelineNote(
                request.started_ns,
                f"{where} {request.method} {request.host}{request.path} -> {request.upstream}",
            )
        )
    if conn.refused or conn.tls_error:
        notes.append(TimelineNote(conn.opened_ns, conn.describe()))
    if conn.closed_ns is not None:
        who = "the agent" if conn.closed_by and conn.closed_by.value == "client" else "the proxy"
        kind = conn.close_kind.value if conn.close_kind else conn.close_detail
        how = f" ({kind})" if kind else ""
        notes.append(
            TimelineNote(
                conn.closed_ns,
                f"{where} closed by {who}{how}, {conn.bytes_to_agent} B relayed to the agent",
            )
        )
    return notes
