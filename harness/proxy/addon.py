"""The mitmproxy addon: route each agent connection to its case's provider, record its side.

Each route is one listening port (one case); a connection is routed by the port it came in
on. A request for an intercepted provider host goes to the route's upstream: the case's fake
provider (plain HTTP on loopback), or the real host when the route passes through. Anything
else is refused with one line, so nothing leaves the machine by accident.

mitmproxy reads the agent's socket in one place (`ConnectionHandler.handle_connection`) and
turns both an EOF and a reset into "closed". To tell FIN from RST, the addon wraps that
reader when the connection arrives: an empty read is the agent's FIN, `ConnectionResetError`
its RST, a cancelled read the proxy's own close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.connection import Client
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.tls import TlsData

from fake_providers.ledger import CloseKind, Closer, now_ns
from harness.proxy.hosts import HostSet
from harness.proxy.ledger import AgentConnection, AgentLedger, ProxiedRequest

PROXY_USER = "harness"
REFUSED_HEADER = "x-cancel-harness-proxy"
UPSTREAM_HEADER = "x-cancel-harness-upstream"  # where a relayed request was going


@dataclass(frozen=True, slots=True)
class Route:
    """Where one listening port's traffic goes.

    `upstream` is the origin of the case's fake provider (`http://127.0.0.1:43117`), or
    None to pass through to the real provider host. `token`, when set, is the password a
    client must give (`http://harness:TOKEN@host:port`): required off loopback.
    """

    name: str
    upstream: str | None
    token: str | None = None
    relay: bool = False  # upstream is a pass-through relay: tell it the real origin


class _WatchedReader:
    """The agent's socket as mitmproxy reads it, noting how the agent closed it."""

    def __init__(
        self, reader: asyncio.StreamReader, record: AgentConnection, addon: ProxyAddon
    ) -> None:
        self._reader, self._record, self._addon = reader, record, addon

    async def read(self, n: int = -1) -> bytes:
        try:
            data = await self._reader.read(n)
        except asyncio.CancelledError:  # mitmproxy closes the connection itself
            if self._record.read_stopped_ns is None:
                self._record.read_stopped_ns = now_ns()
            raise
        except ConnectionResetError:
            self._addon.agent_closed(self._record, CloseKind.RST)
            raise
        if data:
            self._record.bytes_from_agent += len(data)
        else:
            self._addon.agent_closed(self._record, CloseKind.FIN)
        return data


class ProxyAddon:
    """Routes, refuses and records; every hook runs on the proxy's own event loop."""

    def __init__(
        self,
        hosts: HostSet,
        ledger: AgentLedger,
        proxyserver: Proxyserver,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.hosts = hosts
        self.ledger = ledger
        self.proxyserver = proxyserver
        self.on_event = on_event
        self._routes: dict[int, Route] = {}
        self._routes_lock = threading.Lock()
        self._conns: dict[str, AgentConnection] = {}
        self._flows: dict[str, ProxiedRequest] = {}
        self.started = asyncio.Event()

    def running(self) -> None:
        """mitmproxy is up (its CA written: tlsconfig's hook ran before ours)."""
        self.started.set()

    # ----------------------------------------------------------------------- routes

    def add_route(self, port: int, route: Route) -> None:
        with self._routes_lock:
            self._routes[port] = route

    def remove_route(self, port: int) -> None:
        with self._routes_lock:
            self._routes.pop(port, None)

    def _route_of(self, client: Client) -> Route | None:
        sockname = client.sockname
        port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
        with self._routes_lock:
            return self._routes.get(port) if isinstance(port, int) else None

    # ------------------------------------------------------------------ connections

    def client_connected(self, client: Client) -> None:
        route = self._route_of(client)
        peer = _address(client.peername)
        record = self.ledger.open(route.name if route else "-", peer)
        self._conns[client.id] = record
        if route is None:
            record.refused = "no route on this port (its case has ended)"
            client.error = record.refused
            return
        handler = self.proxyserver.connections.get(client.id)
        io = handler.transports.get(client) if handler is not None else None
        if io is not None and isinstance(io.reader, asyncio.StreamReader):
            io.reader = cast(Any, _WatchedReader(io.reader, record, self))

    def agent_closed(self, record: AgentConnection, kind: CloseKind) -> None:
        self.ledger.closed(record, Closer.CLIENT, kind, now_ns())
        if not (record.refused or record.tls_error):  # those were shown when they happened
            self._emit(record.describe())

    def client_disconnected(self, client: Client) -> None:
        record = self._conns.pop(client.id, None)
        if record is None or not record.open:
            return
        t = record.read_stopped_ns or now_ns()
        upstream_first = record.upstream_closed_ns is not None and record.upstream_closed_ns <= t
        if record.refused or record.tls_error or record.dropped or upstream_first:
            detail = "after the provider closed" if upstream_first else ""
            self.ledger.closed(record, Closer.SERVER, None, t, detail)
        else:
            # Nothing of ours closed it and the agent sent no FIN or RST: it ended TLS with a
            # close_notify alert, which mitmproxy's TLS layer answers by closing at once.
            self.ledger.closed(record, Closer.CLIENT, None, t, "tls close_notify")
        if not (record.refused or record.tls_error):
            self._emit(record.describe())

    def server_disconnected(self, data: ServerConnectionHookData) -> None:
        record = self._conns.get(data.client.id)
        if record is not None and record.upstream_closed_ns is None:
            record.upstream_closed_ns = now_ns()

    def dropped(self, client_id: str) -> None:
        """The harness is closing this connection (its route ended)."""
        record = self._conns.get(client_id)
        if record is not None:
            record.dropped = True

    def tls_failed_client(self, data: TlsData) -> None:
        record = self._conns.get(data.context.client.id)
        if record is not None:
            reason = data.conn.error or "the handshake failed"
            record.tls_error = (
                f"{reason}; the agent does not trust the proxy's CA: give it the CA file "
                "(SSL_CERT_FILE / REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS)"
            )
            self.ledger.update()
            self._emit(record.describe())

    # ---------------------------------------------------------------------- requests

    def http_connect(self, flow: http.HTTPFlow) -> None:
        record = self._conns.get(flow.client_conn.id)
        if record is None:
            return
        record.host = f"{flow.request.host}:{flow.request.port}"
        self.ledger.update()
        self._admit(flow, record, check_token=True)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        record = self._conns.get(flow.client_conn.id)
        route = self._route_of(flow.client_conn)
        if record is None or route is None or flow.request.method == "CONNECT":
            return
        tunnelled = record.host is not None  # inside a CONNECT the proxy already admitted
        if not tunnelled:  # a plain-http proxy request
            record.host = f"{flow.request.host}:{flow.request.port}"
        if not self._admit(flow, record, check_token=not tunnelled):
            return
        flow.request.headers.pop("proxy-authorization", None)
        request = ProxiedRequest(
            flow.request.method, flow.request.host, flow.request.path, now_ns()
        )
        if route.upstream is not None:
            if route.relay:
                real = f"{flow.request.scheme}://{flow.request.host}:{flow.request.port}"
                flow.request.headers[UPSTREAM_HEADER] = real
            scheme, _, rest = route.upstream.partition("://")
            host, _, port = rest.rpartition(":")
            flow.request.scheme = scheme
            flow.request.host = host.strip("[]")
            flow.request.port = int(port)
        request.upstream = f"{flow.request.scheme}://{flow.request.host}:{flow.request.port}"
        flow.request.stream = True  # forward at once: the provider stamps the request's arrival
        record.requests.append(request)
        self._flows[flow.id] = request
        self.ledger.update()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        request = self._flows.get(flow.id)
        if request is None or flow.response is None:
            return
        request.status = flow.response.status_code
        request.response_started_ns = now_ns()

        def relay(chunk: bytes) -> bytes:
            request.bytes_to_agent += len(chunk)
            return chunk

        # Stream every body as it comes: an SSE event must reach the agent when it is sent.
        flow.response.stream = relay
        self.ledger.update()

    def response(self, flow: http.HTTPFlow) -> None:
        request = self._flows.pop(flow.id, None)
        if request is not None:
            request.finished_ns = now_ns()
            self.ledger.update()

    def error(self, flow: http.HTTPFlow) -> None:
        request = self._flows.pop(flow.id, None)
        if request is not None and flow.error is not None:
            request.error = flow.error.msg
            request.finished_ns = now_ns()
            self.ledger.update()

    # ----------------------------------------------------------------------- refusal

    def _admit(self, flow: http.HTTPFlow, record: AgentConnection, *, check_token: bool) -> bool:
        """Check the credential and the host; refuse the flow with one line otherwise."""
        route = self._route_of(flow.client_conn)
        token = route.token if check_token and route is not None else None
        given = flow.request.headers.get("proxy-authorization")
        if token is not None and not _token_ok(given, token):
            _refuse(
                flow,
                407,
                "cancel-harness proxy: this proxy needs its token; use the proxy URL it "
                f"printed (http://{PROXY_USER}:TOKEN@host:port)",
            )
            record.refused = "no valid proxy token"
            self._emit(record.describe())
            return False
        host = flow.request.host
        if not self.hosts.intercepts(host):
            message = (
                f"cancel-harness proxy: {host} is not an intercepted provider host "
                f"(intercepted: {self.hosts.describe()}); add --intercept {host} to route it"
            )
            _refuse(flow, 403, message)
            record.refused = f"{host} is not intercepted"
            self.ledger.update()
            self._emit(record.describe())
            return False
        return True

    def _emit(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)


def _refuse(flow: http.HTTPFlow, status: int, message: str) -> None:
    headers = {"content-type": "text/plain", REFUSED_HEADER: "refused"}
    if status == 407:
        headers["proxy-authenticate"] = 'Basic realm="cancel-harness"'
    flow.response = http.Response.make(status, message + "\n", headers)


def _token_ok(header: str | None, token: str) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, _, password = decoded.partition(":")
    return hmac.compare_digest(password.encode(), token.encode())


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)
