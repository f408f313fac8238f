"""`ProxyService`: mitmproxy as a library, on its own thread and event loop.

One mitmproxy `Master` per process: mitmproxy keeps its master and options in module
globals (`mitmproxy.ctx`), and `Master.run` switches its loop to eager tasks, so it gets a
loop of its own rather than sharing the harness's. Cases share it through routes: each
route is a listening port of its own whose traffic goes to one upstream (a case's fake
provider), so two cases running side by side never see each other's agent.

    service = shared_proxy()                      # started on first use, ends with the process
    route = await service.open_route("esc.mid-stream[openai-chat]", provider.origin)
    env = route.env()                             # HTTPS_PROXY=..., SSL_CERT_FILE=..., ...
    ...
    await service.close_route(route)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ipaddress
import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
from mitmproxy.proxy.mode_servers import ServerInstance

from harness.proxy.addon import PROXY_USER, ProxyAddon, Route
from harness.proxy.hosts import HostSet, ProxySetupError, agent_environment
from harness.proxy.ledger import AgentLedger

CA_FILE = "mitmproxy-ca-cert.pem"  # the CA certificate alone: what agents must trust
START_LIMIT = 30.0
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One listening port of the proxy, and what an agent needs to go through it."""

    name: str
    host: str
    port: int
    upstream: str | None  # the fake provider's origin; None: pass through to the real host
    ca_file: str
    token: str | None = None

    @property
    def url(self) -> str:
        """The proxy URL to give the agent (with the token as password when one is needed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f"{PROXY_USER}:{quote(self.token, safe='')}@" if self.token else ""
        return f"http://{auth}{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """`HTTPS_PROXY`, `NO_PROXY`, `SSL_CERT_FILE`, ... for the agent's process."""
        return agent_environment(self.url, self.ca_file)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProxyService:
    """A running mitmproxy with our addon; routes are opened and closed while it runs."""

    def __init__(
        self,
        *,
        hosts: HostSet | None = None,
        confdir: Path | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.hosts = hosts or HostSet()
        self.ledger = AgentLedger()
        self._confdir = confdir
        self._own_confdir: Path | None = None
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: Master | None = None
        self._addon: ProxyAddon | None = None
        self._servers: dict[int, ServerInstance[Any]] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --------------------------------------------------------------------- lifecycle

    def start(self) -> ProxyService:
        """Start mitmproxy on its own thread; returns once it can open routes.

        One per process: a second mitmproxy master would take over the first one's
        connections (both read `mitmproxy.ctx`), so starting another is refused.
        """
        global _running
        if self._thread is not None:
            return self
        with _shared_lock:
            if _running is not None and _running is not self:
                raise ProxySetupError(
                    "a proxy already runs in this process (mitmproxy allows one); "
                    "open a route on it (shared_proxy()) instead of starting another"
                )
            _running = self
        if self._confdir is None:
            self._own_confdir = Path(tempfile.mkdtemp(prefix="cancel-harness-proxy-"))
        # mitmproxy logs every connection at INFO; what matters reaches us through hooks.
        logging.getLogger("mitmproxy").setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="cancel-harness-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_LIMIT):
            raise ProxySetupError(f"mitmproxy did not start within {START_LIMIT:g} s")
        if self._error is not None:
            raise ProxySetupError(f"mitmproxy did not start: {self._error}") from self._error
        return self

    @property
    def confdir(self) -> Path:
        directory = self._confdir or self._own_confdir
        assert directory is not None, "start() the proxy first"
        return directory

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) an agent must trust; mitmproxy makes it on first start."""
        return self.confdir / CA_FILE

    def close(self) -> None:
        """Stop mitmproxy and its listeners; idempotent."""
        master, loop, thread = self._master, self._loop, self._thread
        if master is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
                asyncio.run_coroutine_threadsafe(self._drop(None), loop).result(START_LIMIT)
            with contextlib.suppress(RuntimeError):
                master.shutdown()
        if thread is not None:
            thread.join(timeout=10)
        self._thread = None
        global _running
        with _shared_lock:
            if _running is self:
                _running = None
        if self._own_confdir is not None:
            shutil.rmtree(self._own_confdir, ignore_errors=True)
            self._own_confdir = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to start()'s caller
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        opts = options.Options(confdir=str(self.confdir), mode=[])
        master = Master(opts)
        server = proxyserver.Proxyserver()
        addon = ProxyAddon(self.hosts, self.ledger, server, self._on_event)
        master.addons.add(core.Core(), server, next_layer.NextLayer(), tlsconfig.TlsConfig())
        master.addons.add(addon)
        opts.update(
            connection_strategy="lazy",  # connect upstream only for a request, to our route
            upstream_cert=False,  # never look up the real host's certificate
            http2=False,  # one request per connection to the agent: a cancel is a close
            http3=False,
            rawtcp=False,
            websocket=False,
        )
        self._master, self._addon = master, addon
        running = asyncio.ensure_future(master.run())
        started = asyncio.ensure_future(addon.started.wait())
        await asyncio.wait([running, started], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            started.cancel()
            running.result()  # raises what stopped mitmproxy
            raise RuntimeError("mitmproxy stopped while starting")
        self._ready.set()
        try:
            await running
        finally:
            for instance in list(self._servers.values()):
                with contextlib.suppress(Exception):
                    await instance.stop()
            self._servers.clear()

    # ------------------------------------------------------------------------ routes

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        if self._loop is None or self._thread is None:
            coro.close()
            raise ProxySetupError("the proxy is not running; start() it first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def open_route(
        self,
        name: str,
        upstream: str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        relay: bool = False,
    ) -> ProxyRoute:
        """A new listening port whose traffic goes to `upstream` (None: the real hosts;
        `relay`: a `PassThroughRelay`'s origin, told where each request was going).

        Bound off loopback, the route needs a token (one is made if none is given).
        """
        if not is_loopback(host) and token is None:
            token = secrets.token_urlsafe(18)
        future = self._submit(self._open(name, upstream, host, port, token, relay))
        return await asyncio.wrap_future(future)

    def open_route_blocking(
        self,
        name: str,
        upstream: str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        relay: bool = False,
    ) -> ProxyRoute:
        """`open_route` for synchronous callers (tests, the CLI)."""
        if not is_loopback(host) and token is None:
            token = secrets.token_urlsafe(18)
        opened = self._open(name, upstream, host, port, token, relay)
        return self._submit(opened).result(START_LIMIT)

    async def _open(
        self,
        name: str,
        upstream: str | None,
        host: str,
        port: int,
        token: str | None,
        relay: bool,
    ) -> ProxyRoute:
        assert self._addon is not None
        listen = f"[{host}]" if ":" in host else host
        instance: ServerInstance[Any] = ServerInstance.make(
            f"regular@{listen}:{port}", self._addon.proxyserver
        )
        try:
            await instance.start()
        except OSError as exc:
            raise ProxySetupError(
                f"the proxy cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick another --port, or 0 for any free one"
            ) from None
        bound = instance.listen_addrs[0][1]
        self._servers[bound] = instance
        self._addon.add_route(bound, Route(name, upstream, token, relay))
        return ProxyRoute(name, host, bound, upstream, str(self.ca_file), token)

    async def close_route(self, route: ProxyRoute) -> None:
        """Stop listening on the route's port (connections still open are left to end)."""
        with contextlib.suppress(ProxySetupError):
            await asyncio.wrap_future(self._submit(self._close(route.port)))

    def close_route_blocking(self, route: ProxyRoute) -> None:
        with contextlib.suppress(ProxySetupError):
            self._submit(self._close(route.port)).result(START_LIMIT)

    async def _close(self, port: int) -> None:
        assert self._addon is not None
        self._addon.remove_route(port)
        instance = self._servers.pop(port, None)
        if instance is not None:
            await instance.stop()
        await self._drop(port)

    async def _drop(self, port: int | None) -> None:
        """Close the agents' connections (on one port, or all) so each handler ends cleanly."""
        assert self._addon is not None
        connections = self._addon.proxyserver.connections
        tasks: list[asyncio.Task[Any]] = []
        for handler in list(connections.values()):
            sockname = handler.client.sockname
            if port is not None and not (isinstance(sockname, tuple) and sockname[1] == port):
                continue
            self._addon.dropped(handler.client.id)
            tasks += [io.handler for io in handler.transports.values() if io.handler is not None]
        for task in tasks:
            task.cancel("the route was closed")
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)


_shared: ProxyService | None = None
_running: ProxyService | None = None
_shared_lock = threading.RLock()


def close_shared_proxy() -> None:
    """Stop the process's proxy now (the next `shared_proxy()` starts a fresh one)."""
    global _shared
    with _shared_lock:
        service, _shared = _shared, None
    if service is not None:
        service.close()


def shared_proxy() -> ProxyService:
    """The process's proxy for `--via proxy` targets: started on first use, closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            service = ProxyService().start()
            atexit.register(service.close)
            _shared = service
        return _shared
