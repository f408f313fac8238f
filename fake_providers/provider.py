"""`FakeProvider`: the public, in-process face of the fake LLM server.

    async with FakeProvider() as provider:
        provider.add_fault("stream=true,pace=20ms,hang-after=5")
        client = openai.AsyncOpenAI(base_url=provider.url("openai"), api_key="sk-test")
        ...
        assert provider.ledger.closed_by_client_within(t_cancel, 0.1)

`ThreadedFakeProvider` hosts the same server on a background thread for synchronous code.
"""

from __future__ import annotations

import ipaddress
import tempfile
import threading
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from fake_providers.control import ControlAPI
from fake_providers.faults import FaultPlan, Match, Rule, parse_rule
from fake_providers.gates import Gate, GateRegistry
from fake_providers.kinds import ProviderKind
from fake_providers.ledger import Ledger
from fake_providers.limits import Limits
from fake_providers.process import release_memory
from fake_providers.responder import Responder
from fake_providers.rules import PlanResolver
from fake_providers.server import ProviderServer
from fake_providers.tls import TLSMaterial, make_tls

# A reset that forgets at least this many bytes of records gives the memory back to the OS.
RELEASE_AFTER = 8 * 1024 * 1024


class ProviderStartError(RuntimeError):
    """The provider could not start (bad host, port in use); the message says how to fix it."""


class FakeProvider:
    """A fake LLM provider on loopback, with a ledger, fault rules and gates."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        default: FaultPlan | str | None = None,
        faults: tuple[str | Rule, ...] = (),
        tls_dir: Path | None = None,
        limits: Limits | None = None,
        ledger_log: Path | None = None,
    ) -> None:
        """`limits`: timeouts and ledger caps (`fake_providers.limits.Limits` has the
        defaults); `ledger_log`: a JSONL file that gets every connection as it closes."""
        self.host = host
        self.requested_port = port
        self.limits = limits or Limits()
        self.ledger = Ledger(
            retain_connections=self.limits.ledger_connections,
            retain_bytes=self.limits.ledger_bytes,
        )
        self._ledger_log = ledger_log
        self.gates = GateRegistry()
        default_plan = FaultPlan.parse(default) if isinstance(default, str) else default
        self.resolver = PlanResolver(default_plan)
        for fault in faults:
            self.resolver.add(fault)
        self._want_tls = tls
        self._tls_dir = tls_dir
        self.tls: TLSMaterial | None = None
        self.port = 0
        self._stack: AsyncExitStack | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._want_tls:
                directory = self._tls_dir
                if directory is None:
                    directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                self.tls = make_tls(directory)
            if self._ledger_log is not None:
                stack.enter_context(self.ledger.log_to(self._ledger_log))
            listeners = await _listen(self.host, self.requested_port)
            for listener in listeners:
                stack.push_async_callback(listener.aclose)
            self.port = listeners[0].extra(SocketAttribute.local_port)
            control = ControlAPI(self.ledger, self.resolver, self.gates, on_reset=self.reset)
            responder = Responder(
                ledger=self.ledger, resolver=self.resolver, gates=self.gates, control=control
            )
            server = ProviderServer(
                ledger=self.ledger,
                responder=responder,
                ssl_context=self.tls.server_context if self.tls else None,
                limits=self.limits,
            )
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(server.serve, listeners)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # ------------------------------------------------------------------- addresses

    @property
    def origin(self) -> str:
        """`http(s)://host:port` with IPv6 hosts bracketed."""
        scheme = "https" if self._want_tls else "http"
        host = self.host
        if host == "localhost":
            host = "127.0.0.1"
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"{scheme}://{host}:{self.port}"

    def url(self, kind: str = ProviderKind.OPENAI_CHAT) -> str:
        """The base URL to give an SDK of this kind (a `ProviderKind`, or the alias `openai`).

        Raises `UnknownProviderKind` (a ValueError) for a name we do not speak.
        """
        return self.origin + ProviderKind.parse(kind).base_path

    @property
    def base_urls(self) -> dict[ProviderKind, str]:
        return {kind: self.url(kind) for kind in ProviderKind}

    # -------------------------------------------------------------------- steering

    def add_fault(
        self,
        fault: str | FaultPlan | Rule,
        *,
        match: Match | None = None,
        times: int | None = None,
    ) -> int:
        """Add a rule from a text spec, a plan (with optional `match`), or a `Rule`."""
        if isinstance(fault, str):
            rule = parse_rule(fault)
        elif isinstance(fault, FaultPlan):
            rule = Rule(fault, match or Match(), times)
        else:
            rule = fault
        if match is not None or times is not None:
            rule = Rule(rule.plan, match or rule.match, times if times is not None else rule.times)
        return self.resolver.add(rule)

    def clear_faults(self) -> None:
        self.resolver.clear()

    def expect_prompt(self, tag: str) -> None:
        """Register a prompt tag: requests whose latest user message carries it are main
        calls of that prompt (see fake_providers.roles); others are side traffic."""
        self.resolver.prompts.add(tag)

    def gate(self, name: str = "default") -> Gate:
        """The named gate that `hold-before=N,gate=NAME` steps wait at."""
        return self.gates.get(name)

    def reset(self) -> None:
        """Clear rules, gates (releasing held streams) and the ledger, freeing its memory."""
        self.resolver.clear()
        self.resolver.prompts.clear()
        self.gates.clear()
        if self.ledger.reset() >= RELEASE_AFTER:
            release_memory()


async def _listen(host: str, port: int) -> list[anyio.abc.SocketListener]:
    # "localhost" means both loopbacks on one port: Node >= 17 resolves it to ::1 first,
    # while many hosts files map it to 127.0.0.1 only.
    hosts = ["127.0.0.1", "::1"] if host == "localhost" else [host]
    listeners: list[anyio.abc.SocketListener] = []
    try:
        for h in hosts:
            try:
                listener = await anyio.create_tcp_listener(local_host=h, local_port=port)
            except OSError as exc:
                if h == "::1" and listeners:
                    break  # no IPv6 here: IPv4 alone still serves localhost
                raise ProviderStartError(
                    f"cannot listen on {h}:{port} ({exc.strerror or exc}); "
                    "pick another --port, or 0 for any free one"
                ) from exc
            listeners.extend(getattr(listener, "listeners", [listener]))
            port = listeners[0].extra(SocketAttribute.local_port)
    except BaseException:
        for opened in listeners:
            await opened.aclose()
        raise
    return listeners


class ThreadedFakeProvider:
    """The same provider on its own event-loop thread, for synchronous tests and tools."""

    def __init__(self, **kwargs: object) -> None:
        self._kwargs = kwargs
        self._ready = threading.Event()
        self._stop: anyio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._portal_token: object = None
        self.provider: FakeProvider | None = None

    def __enter__(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self.provider is not None
        return self.provider

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and self._portal_token is not None:
            anyio.from_thread.run_sync(self._stop.set, token=self._portal_token)  # type: ignore[arg-type]
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:  # surfaced to the caller of __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._stop = anyio.Event()
        self._portal_token = anyio.lowlevel.current_token()
        async with FakeProvider(**self._kwargs) as provider:  # type: ignore[arg-type]
            self.provider = provider
            self._ready.set()
            await self._stop.wait()
