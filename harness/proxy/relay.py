"""Pass-through with faults: the real provider's live stream, played through a fault plan.

When `cancel-harness proxy --pass-through --fault SPEC` routes the provider hosts to the
real services, mitmproxy sends each request here (the original origin in one header); the
relay makes the request upstream with httpx and writes the answer back event by event,
following the same `Schedule` the fake provider follows (`FaultPlan.compile`): hold at a
gate, hang, pace and drip, FIN, RST, an error status instead of calling upstream, silence
after k events, an in-stream error or a malformed event. It keeps a fake-provider `Ledger`
of what it wrote, so the live view and the checks read it the same way.

Differences from the fake provider, because the events are not ours to look ahead at: an
action placed past the end of the stream happens after the last upstream event (the fake
provider does it before the last one), and pacing never makes an event earlier than it
arrived. A close from the agent (relayed by mitmproxy) closes the upstream request at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, assert_never
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import h11
import httpx
from anyio.abc import SocketAttribute

from fake_providers.content import ContentSpec
from fake_providers.conversation import read_shape
from fake_providers.faults import FaultPlan
from fake_providers.faults.schedule import (
    Action,
    Cut,
    EndWithError,
    InsertMalformed,
    Pause,
    Schedule,
    Silence,
    WaitAtGate,
)
from fake_providers.gates import GateRegistry
from fake_providers.ledger import CloseKind, Closer, ConnectionRecord, Ledger, Outcome, now_ns
from fake_providers.rules import PlanResolver, RequestView
from fake_providers.wire import WireFormat, route
from harness.proxy.addon import UPSTREAM_HEADER
from harness.proxy.upstream import HOP_BY_HOP, EventSplitter, Progress, upstream_headers

MAX_BODY = 8 * 1024 * 1024


@dataclass(eq=False)
class _Exchange:
    """One request on a relay connection, with what the plan and the agent's socket say."""

    stream: anyio.abc.SocketStream
    conn: h11.Connection
    record: ConnectionRecord
    left: anyio.Event  # the agent (through mitmproxy) closed the connection
    close_kind: CloseKind = CloseKind.FIN


class PassThroughRelay:
    """A loopback server that relays to the real provider through a fault plan."""

    def __init__(
        self,
        *,
        faults: tuple[str, ...] = (),
        verify: ssl.SSLContext | bool = True,
        upstream_for: Mapping[str, str] | None = None,
    ) -> None:
        self.ledger = Ledger()
        self.gates = GateRegistry()
        self.resolver = PlanResolver(FaultPlan())
        for spec in faults:
            self.resolver.add(spec)
        self._verify = verify
        self._upstream_for = dict(upstream_for or {})  # host -> origin (a stand-in, in tests)
        self.port = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: anyio.Event | None = None
        self._token: Any = None
        self._error: BaseException | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --------------------------------------------------------------------- lifecycle

    def start(self) -> PassThroughRelay:
        self._thread = threading.Thread(target=self._run, name="cancel-harness-relay", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def close(self) -> None:
        if self._stop is not None and self._token is not None:
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._stop.set, token=self._token)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:  # handed to start()'s caller
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._stop = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(SocketAttribute.local_port)
        timeout = httpx.Timeout(None, connect=10.0)
        async with (
            listener,
            httpx.AsyncClient(verify=self._verify, trust_env=False, timeout=timeout) as client,
            anyio.create_task_group() as tg,
        ):
            self._client = client
            tg.start_soon(listener.serve, self._handle)
            self._ready.set()
            await self._stop.wait()
            tg.cancel_scope.cancel()

    # ---------------------------------------------------------------------- serving

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        peer = stream.extra(SocketAttribute.remote_address)
        record = self.ledger.open_connection(f"{peer[0]}:{peer[1]}", tls=False)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
        try:
            while True:
                request = await _read_request(conn, stream)
                if request is None:
                    self.ledger.connection_closed(record, Closer.CLIENT, CloseKind.FIN)
                    return
                exchange = _Exchange(stream, conn, record, anyio.Event())
                if not await self._exchange(exchange, *request):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.ProtocolError):
            self.ledger.connection_closed(record, Closer.CLIENT, CloseKind.RST)
        finally:
            self.ledger.connection_closed(record, Closer.SERVER, CloseKind.FIN)
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _exchange(self, ex: _Exchange, request: h11.Request, body: bytes) -> bool:
        """Answer one request; False when the connection must end (a close, a reset)."""
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        method = request.method.decode("latin-1")
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers]
        origin = next((v for k, v in headers if k == UPSTREAM_HEADER), "")
        req = self.ledger.start_request(
            ex.record,
            method=method,
            path=path,
            query=query,
            headers=list(request.headers),
            body=body,
            started_ns=now_ns(),
        )
        found = route(method, path, dict(parse_qsl(query)))
        wire = found.wire if found is not None else None
        schedule, plan_text = self._schedule(req.ordinal, path, method, query, body, wire, headers)
        outcome = Outcome.COMPLETE
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, ex, tg.cancel_scope)
            try:
                upstream = self._upstream_request(
                    method, origin, target, body, list(request.headers)
                )
                outcome = await self._play(ex, req, schedule, plan_text, wire, upstream)
            finally:
                tg.cancel_scope.cancel()
        if ex.left.is_set():
            outcome = Outcome.CLIENT_CLOSED
            self.ledger.connection_closed(ex.record, Closer.CLIENT, ex.close_kind)
        self.ledger.request_finished(req, outcome)
        return outcome in (Outcome.COMPLETE, Outcome.STREAM_ERROR) and not ex.left.is_set()

    def _schedule(
        self,
        ordinal: int,
        path: str,
        method: str,
        query: str,
        body: bytes,
        wire: WireFormat | None,
        headers: list[tuple[str, str]],
    ) -> tuple[Schedule, str]:
        try:
            decoded = json.loads(body) if body else {}
        except ValueError:
            decoded = {}
        model = str(decoded.get("model", "")) if isinstance(decoded, dict) else ""
        stream = bool(decoded.get("stream", False)) if isinstance(decoded, dict) else False
        view = RequestView(
            path=path,
            kind=wire.kind if wire is not None else "",
            model=model,
            stream=stream or "stream" in path.lower(),
            ordinal=ordinal,
            headers=tuple(headers),
            body=body,
            shape=read_shape(wire.kind, decoded)
            if wire is not None and isinstance(decoded, dict)
            else None,
        )
        selection = self.resolver.select(view)
        return selection.plan.compile(request_ordinal=ordinal), selection.describe()

    async def _watch(self, ex: _Exchange, scope: anyio.CancelScope) -> None:
        """Read the agent's side while we answer: its close ends the exchange at once."""
        while True:
            try:
                data = await ex.stream.receive()
            except anyio.EndOfStream:
                ex.close_kind = CloseKind.FIN
                break
            except (anyio.BrokenResourceError, ConnectionResetError):
                ex.close_kind = CloseKind.RST
                break
            ex.conn.receive_data(data)  # a pipelined next request waits in h11's buffer
        ex.left.set()
        scope.cancel()

    async def _play(
        self,
        ex: _Exchange,
        req: Any,
        schedule: Schedule,
        plan: str,
        wire: WireFormat | None,
        upstream: httpx.Request,
    ) -> Outcome:
        for action in schedule.before_headers:
            await self._pause(ex, action)
        refusal = schedule.refusal
        if refusal is not None:
            status = refusal.status
            payload = (
                wire.error_body(status, refusal.message)
                if wire is not None
                else json.dumps({"error": {"message": refusal.message}}).encode()
            )
            extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in refusal.headers]
            self.ledger.response_started(req, status, plan)
            await _send(ex, _head(ex.conn, status, [("content-type", "application/json"), *extra]))
            await _send(ex, ex.conn.send(h11.Data(data=payload)) or b"")
            await _send(ex, ex.conn.send(h11.EndOfMessage()) or b"")
            return Outcome.COMPLETE
        response = await self._client.send(upstream, stream=True)
        try:
            headers = [(k, v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP]
            self.ledger.response_started(req, response.status_code, plan)
            await _send(ex, _head(ex.conn, response.status_code, headers))
            sse = response.headers.get("content-type", "").startswith("text/event-stream")
            if response.status_code >= 400 or not sse:
                data = await response.aread()
                return await self._events(ex, req, schedule, wire, [data] if data else [], True)
            splitter = EventSplitter()
            position = Progress(anyio.current_time())
            async for chunk in response.aiter_raw():
                events = splitter.feed(chunk)
                ended = await self._events(ex, req, schedule, wire, events, False, position)
                if ended is not Outcome.COMPLETE:
                    return ended
            rest = splitter.rest()
            tail = [rest] if rest else []
            return await self._events(ex, req, schedule, wire, tail, True, position)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()  # a half-read response drops its connection

    def _upstream_request(
        self,
        method: str,
        origin: str,
        target: str,
        body: bytes,
        raw: list[tuple[bytes, bytes]],
    ) -> httpx.Request:
        """The agent's request as the real host must get it (its key included; never logged)."""
        authority = origin.split("://", 1)[-1]
        base = self._upstream_for.get(authority.rsplit(":", 1)[0], origin)
        headers = upstream_headers(raw, authority)
        return self._client.build_request(method, base + target, headers=headers, content=body)

    async def _events(
        self,
        ex: _Exchange,
        req: Any,
        schedule: Schedule,
        wire: WireFormat | None,
        events: list[bytes],
        final: bool,
        position: Progress | None = None,
    ) -> Outcome:
        """Write upstream events through the schedule; `final`: the upstream has ended."""
        position = position or Progress(anyio.current_time())
        due = position.due(schedule)
        for event in events:
            for action in schedule.at(position.count):
                ended = await self._act(ex, req, action, wire, event)
                if ended is not None:
                    return ended
            if schedule.pacing is not None:
                await anyio.sleep_until(max(anyio.current_time(), position.start + next(due)))
            await self._write(ex, event, schedule.drip)
            self.ledger.event_written(req, len(event))
            position.count += 1
        if final:
            for action in schedule.at(position.count, last=True):
                ended = await self._act(ex, req, action, wire, None)
                if ended is not None:
                    return ended
            await _send(ex, ex.conn.send(h11.EndOfMessage()) or b"")
        return Outcome.COMPLETE

    async def _act(
        self,
        ex: _Exchange,
        req: Any,
        action: Action,
        wire: WireFormat | None,
        upcoming: bytes | None,
    ) -> Outcome | None:
        """Carry out one action before the upstream event `upcoming` (None: at the end)."""
        match action:
            case WaitAtGate() | Silence():
                await self._pause(ex, action)
                return None
            case InsertMalformed():
                bad = wire.malformed_event() if wire is not None else b"data: {not json\n\n"
                await self._write(ex, bad, None)
                return None
            case EndWithError(message=message):
                probe = ContentSpec(text="").build(
                    model="m", response_id="r", created=0, max_tokens=None, input_tokens=1
                )
                if wire is not None:
                    await self._write(ex, wire.stream_error_event(message, probe), None)
                await _send(ex, ex.conn.send(h11.EndOfMessage()) or b"")
                return Outcome.STREAM_ERROR
            case Cut(close=close, keep=keep):
                if keep > 0 and upcoming:
                    await self._write(ex, upcoming[: int(len(upcoming) * keep)], None)
                reset = close is CloseKind.RST
                self.ledger.connection_closed(ex.record, Closer.SERVER, close)
                if reset:
                    sock = ex.stream.extra(SocketAttribute.raw_socket)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await ex.stream.send_eof()
                return Outcome.SERVER_RESET if reset else Outcome.SERVER_CLOSED
            case _:
                assert_never(action)

    async def _pause(self, ex: _Exchange, pause: Pause) -> None:
        match pause:
            case WaitAtGate(gate=gate):
                await self.gates.get(gate).pass_through()
            case Silence(duration=duration):
                if duration is None:
                    await ex.left.wait()  # silent until the agent leaves
                else:
                    await anyio.sleep(duration)
            case _:
                assert_never(pause)

    async def _write(self, ex: _Exchange, event: bytes, drip: float | None) -> None:
        if not drip:
            await _send(ex, ex.conn.send(h11.Data(data=event)) or b"")
            return
        start = anyio.current_time()
        tick = max(1, int(drip / 100))
        for sent in range(0, len(event), tick):
            await anyio.sleep_until(start + sent / drip)
            await _send(ex, ex.conn.send(h11.Data(data=event[sent : sent + tick])) or b"")


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.SocketStream
) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise h11.RemoteProtocolError("request body over 8 MiB", 413)
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _head(conn: h11.Connection, status: int, headers: list[tuple[str, str]]) -> bytes:
    return conn.send(h11.Response(status_code=status, headers=headers)) or b""


async def _send(ex: _Exchange, data: bytes) -> None:
    if data:
        await ex.stream.send(data)
