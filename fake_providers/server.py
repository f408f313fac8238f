"""The fake provider's server: anyio TCP + h11, owning the socket end to end.

Per connection, one task reads the socket for the whole life of the connection, so a
client close is noticed at once even while the response is idle (hanging, held at a gate,
between paced events); a second task carries out the commands of the request's response
player (`fake_providers.player`). Every decision about what goes on the wire is the
player's; this module only does the IO, records it in the ledger, and survives any input.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any, assert_never

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from fake_providers.gates import GateRegistry
from fake_providers.ledger import (
    CloseKind,
    Closer,
    ConnectionRecord,
    Ledger,
    Outcome,
    RequestRecord,
    now_ns,
)
from fake_providers.player import (
    SERVER_HEADER,
    AwaitGate,
    Close,
    Finish,
    Paced,
    PacedRun,
    Park,
    Player,
    Reply,
    Respond,
    SleepUntil,
    Write,
    play,
)
from fake_providers.rules import PlanResolver, PlanSelection, RequestView
from fake_providers.wire import RequestError, RequestFacts, WireFormat, route
from fake_providers.wire.routes import models_list_body
from fake_providers.writer import Pacer, Sink

MAX_BODY = 8 * 1024 * 1024


@dataclass(slots=True, eq=False)
class _Conn:
    """Live state of one connection, shared by its reader and its responder."""

    stream: anyio.abc.ByteStream
    raw: anyio.abc.SocketStream
    record: ConnectionRecord
    h11: h11.Connection
    responder: anyio.CancelScope | None = None
    response_done: anyio.Event | None = None
    closing: bool = False
    loopback: bool = True
    # A response hanging until the client leaves needs no task: it is parked here and the
    # reader (which must run anyway, to notice the close) finishes it.
    parked: RequestRecord | None = None


@dataclass(slots=True)
class _Prepared:
    """A request that passed validation, with its plan."""

    wire: WireFormat
    facts: RequestFacts
    selection: PlanSelection
    media_type: str
    body: dict[str, Any] = field(default_factory=dict)


class ProviderServer:
    """Serves model requests on accepted connections and records everything in the ledger."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        resolver: PlanResolver,
        gates: GateRegistry,
        ssl_context: ssl.SSLContext | None,
        control: Any,
    ) -> None:
        self.ledger = ledger
        self.resolver = resolver
        self.gates = gates
        self.ssl_context = ssl_context
        self.control = control
        self.pacer = Pacer()
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await listener.serve(self._handle, task_group=tg)

    # ------------------------------------------------------------------------ reading

    async def _handle(self, raw: anyio.abc.SocketStream) -> None:
        peer = raw.extra(SocketAttribute.remote_address)
        peer_host = peer[0] if isinstance(peer, tuple) else str(peer)
        peer_text = f"[{peer[0]}]:{peer[1]}" if ":" in peer_host else f"{peer[0]}:{peer[1]}"
        record = self.ledger.open_connection(peer_text, tls=self.ssl_context is not None)
        stream: anyio.abc.ByteStream = raw
        if self.ssl_context is not None:
            try:
                stream = await TLSStream.wrap(
                    raw, server_side=True, ssl_context=self.ssl_context, standard_compatible=False
                )
            except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                self.ledger.connection_closed(
                    record, Closer.CLIENT, CloseKind.RST, write_error=f"TLS handshake: {exc}"
                )
                await raw.aclose()
                return
        conn = _Conn(
            stream, raw, record, h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
        )
        conn.loopback = _is_loopback(peer_host)
        try:
            await self._read_loop(conn)
        finally:
            if conn.responder is not None:
                conn.responder.cancel()
            if conn.parked is not None:  # no-op if the client's close already finished it
                self.ledger.request_finished(conn.parked, Outcome.SHUTDOWN)
            if not conn.closing:
                conn.closing = True
                self.ledger.connection_closed(record, Closer.SERVER, CloseKind.FIN)
                with anyio.CancelScope(shield=True):
                    await raw.aclose()

    async def _read_loop(self, conn: _Conn) -> None:
        request: h11.Request | None = None
        body = bytearray()
        started = 0
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                await self._reject_malformed(conn, exc)
                return
            if event is h11.PAUSED and conn.response_done is not None:
                if conn.h11.trailing_data[0]:
                    # The client pipelined its next request: serve it after this response.
                    await conn.response_done.wait()
                    continue
            elif event is h11.PAUSED and conn.parked is None:
                return  # the response ended without keep-alive; the responder closed us
            elif isinstance(event, h11.Request):
                request, body, started = event, bytearray(), now_ns()
                continue
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    await self._reject_malformed(
                        conn, h11.RemoteProtocolError("request body over 8 MiB", 413)
                    )
                    return
                continue
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                self._start_response(conn, request, bytes(body), started)
                request = None
                continue
            elif isinstance(event, h11.ConnectionClosed):
                return
            if event is not h11.NEED_DATA and event is not h11.PAUSED:
                continue
            data = await self._receive(conn)
            if data is None:
                if conn.response_done is None and (
                    request is not None or conn.h11.trailing_data[0]
                ):
                    # A half-closed client that sent part of a request still gets told why.
                    reason = h11.RemoteProtocolError("the request ended before it was complete")
                    await self._reject_malformed(conn, reason)
                return
            conn.h11.receive_data(data)

    async def _receive(self, conn: _Conn) -> bytes | None:
        """Read from the socket; on a client close, record it and stop the responder."""
        try:
            return await conn.stream.receive()
        except anyio.EndOfStream:
            kind = CloseKind.FIN
        except anyio.BrokenResourceError as exc:
            kind = _close_kind(exc)
        except (anyio.ClosedResourceError, OSError):
            return None
        if not conn.closing:
            self.ledger.connection_closed(conn.record, Closer.CLIENT, kind)
            if conn.responder is not None:
                conn.responder.cancel()
            if conn.parked is not None:
                self.ledger.request_finished(conn.parked, Outcome.CLIENT_CLOSED)
        return None

    async def _reject_malformed(self, conn: _Conn, exc: h11.RemoteProtocolError) -> None:
        """Answer a request we cannot parse with one JSON line, then close (h11 requires it)."""
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        message = f"malformed HTTP request: {exc}; send a valid HTTP/1.1 request"
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            payload = _error_json(message, "invalid_request_error")
            try:
                data = conn.h11.send(
                    h11.Response(status_code=status, headers=_json_headers(payload, close=True))
                )
                data = (data or b"") + (conn.h11.send(h11.Data(data=payload)) or b"")
                data += conn.h11.send(h11.EndOfMessage()) or b""
                await conn.stream.send(data)
            except (h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
        await self._close(conn, CloseKind.FIN)

    # ---------------------------------------------------------------------- responding

    def _start_response(self, conn: _Conn, request: h11.Request, body: bytes, started: int) -> None:
        assert self._tg is not None
        scope = anyio.CancelScope()
        conn.responder = scope
        conn.response_done = anyio.Event()
        self._tg.start_soon(self._respond, conn, request, body, started, scope)

    async def _respond(
        self, conn: _Conn, request: h11.Request, body: bytes, started: int, scope: anyio.CancelScope
    ) -> None:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        method = request.method.decode("latin-1")
        req: RequestRecord | None = None
        outcome: Outcome | None = None
        try:
            with scope:
                if path.startswith("/__harness/"):
                    conn.record.control = True
                    status, payload = await self.control.handle(
                        method, path, query, body, loopback=conn.loopback
                    )
                    await self._send_simple(conn, status, payload, [])
                    return
                req = self.ledger.start_request(
                    conn.record,
                    method=method,
                    path=path,
                    query=query,
                    headers=list(request.headers),
                    body=body,
                    started_ns=started,
                )
                outcome = await self._serve_model_request(conn, req, method, path, query, body)
        except anyio.BrokenResourceError as exc:
            outcome = Outcome.WRITE_FAILED
            if not conn.closing:
                self.ledger.connection_closed(
                    conn.record, Closer.CLIENT, _close_kind(exc), write_error=repr(exc.__cause__)
                )
        except anyio.ClosedResourceError:
            outcome = Outcome.CLIENT_CLOSED
        except _Parked:
            conn.parked = req  # hangs until the client leaves; the reader finishes it
        finally:
            if outcome is None and conn.parked is not req:  # cancelled: client close/shutdown
                closed_by = conn.record.closed_by
                outcome = Outcome.CLIENT_CLOSED if closed_by is Closer.CLIENT else Outcome.SHUTDOWN
            if req is not None and outcome is not None:
                self.ledger.request_finished(req, outcome)
            conn.responder = None
            done, conn.response_done = conn.response_done, None
            if done is not None:
                done.set()

    async def _serve_model_request(
        self, conn: _Conn, req: RequestRecord, method: str, path: str, query: str, body: bytes
    ) -> Outcome:
        if method == "GET" and path.rstrip("/") == "/v1/models":
            self.ledger.describe_request(req, kind="models", model=None, stream=False)
            await self._send_simple(conn, 200, models_list_body(), [], req=req)
            return Outcome.COMPLETE
        prepared = self._prepare(req, method, path, query, body)
        if isinstance(prepared, tuple):
            status, payload = prepared
            await self._send_simple(conn, status, payload, [], req=req)
            return Outcome.COMPLETE
        wire, facts, selection = prepared.wire, prepared.facts, prepared.selection
        completion = selection.plan.content.build(
            model=facts.model,
            response_id=f"{wire.kind.id_prefix}fake{req.ordinal:06d}",
            created=1_700_000_000 + req.ordinal,
            max_tokens=facts.max_tokens,
            input_tokens=max(1, req.body_size // 4),
        )
        player = play(
            selection.plan.compile(request_ordinal=req.ordinal),
            wire,
            completion,
            facts,
            media_type=prepared.media_type,
            chunked=conn.h11.their_http_version == b"1.1",
            now=anyio.current_time(),
        )
        return await self._carry_out(conn, req, player, selection.describe())

    async def _carry_out(
        self, conn: _Conn, req: RequestRecord, player: Player, plan: str
    ) -> Outcome:
        """Do what the player says, one command at a time; it decides, we only do IO."""
        sink = Sink(conn.stream, conn.raw)
        head = b""  # the response head goes out with the first write
        command = next(player)
        while True:
            match command:
                case Respond(status=status, headers=headers):
                    response = h11.Response(status_code=status, headers=list(headers))
                    head = conn.h11.send(response) or b""
                    self.ledger.response_started(req, status, plan)
                case Write(data=data, events=events, rate=rate):
                    await sink.send(head + data, rate)
                    head = b""
                    if events:
                        self.ledger.events_written(req, events)
                case Paced(run=run):
                    await self._paced(sink, req, run)
                case SleepUntil(t=t, note=note):
                    if note:
                        self.ledger.held(req, note)
                    await anyio.sleep_until(t)
                case AwaitGate(gate=gate, note=note):
                    self.ledger.held(req, note)
                    await self.gates.get(gate).pass_through()
                case Park(note=note):
                    self.ledger.held(req, note)
                    raise _Parked
                case Finish(data=data, events=events, outcome=outcome, rate=rate):
                    end = conn.h11.send(h11.EndOfMessage()) or b""
                    await sink.send(head + data + end, rate)
                    if events:
                        self.ledger.events_written(req, events)
                    await self._finish_cycle(conn)
                    return outcome
                case Close(kind=kind):
                    await self._close(conn, kind)
                    return Outcome.SERVER_RESET if kind is CloseKind.RST else Outcome.SERVER_CLOSED
                case Reply(status=status, headers=headers, body=payload):
                    await self._send_simple(conn, status, payload, list(headers), req=req)
                    return Outcome.COMPLETE
                case _:
                    assert_never(command)
            command = player.send(anyio.current_time())

    async def _paced(self, sink: Sink, req: RequestRecord, run: PacedRun) -> None:
        # The shared timer writes straight into the transport; TLS goes the slow way.
        if sink.transport is not None:
            await self.pacer.play(run, sink, self.ledger, req)
            return
        while run.more:
            await anyio.sleep_until(run.next_due)
            data, size = run.step()
            await sink.send(data)
            self.ledger.event_written(req, size)

    def _prepare(
        self, req: RequestRecord, method: str, path: str, query: str, body: bytes
    ) -> _Prepared | tuple[int, bytes]:
        found = route(method, path, _query_dict(query))
        if found is None:
            self.ledger.describe_request(req, kind=None, model=None, stream=None)
            return 404, _error_json(
                f"no route for {method} {path}: the fake provider serves POST "
                "/v1/chat/completions, /v1/responses, /v1/messages, "
                "/openai/deployments/{d}/chat/completions, "
                "/v1beta/models/{m}:streamGenerateContent and GET /v1/models",
                "not_found_error",
            )
        wire = found.wire
        try:
            decoded = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError) as exc:
            self.ledger.describe_request(req, kind=wire.kind, model=None, stream=None)
            return 400, wire.error_body(400, f"request body is not valid JSON ({exc})")
        if not isinstance(decoded, dict):
            self.ledger.describe_request(req, kind=wire.kind, model=None, stream=None)
            return 400, wire.error_body(400, "request body must be a JSON object")
        try:
            facts = wire.facts(found.params, decoded)
        except RequestError as exc:
            self.ledger.describe_request(req, kind=wire.kind, model=None, stream=None)
            return exc.status, wire.error_body(exc.status, exc.message)
        view = RequestView(
            path=path,
            kind=wire.kind,
            model=facts.model,
            stream=facts.stream,
            ordinal=req.ordinal,
            headers=req.headers,
            body=body,
        )
        try:
            selection = self.resolver.select(view)
        except ValueError as exc:
            self.ledger.describe_request(
                req, kind=wire.kind, model=facts.model, stream=facts.stream
            )
            return 400, wire.error_body(400, str(exc))
        self.ledger.describe_request(
            req, kind=wire.kind, model=selection.model, stream=facts.stream
        )
        if selection.model != facts.model:
            facts = RequestFacts(
                facts.kind, selection.model, facts.stream, facts.include_usage, facts.max_tokens
            )
        return _Prepared(wire, facts, selection, found.stream_media_type, decoded)

    async def _send_simple(
        self,
        conn: _Conn,
        status: int,
        payload: bytes,
        extra: list[tuple[bytes, bytes]],
        *,
        req: RequestRecord | None = None,
    ) -> None:
        headers = [*_json_headers(payload), *extra, SERVER_HEADER]
        data = conn.h11.send(h11.Response(status_code=status, headers=headers)) or b""
        data += conn.h11.send(h11.Data(data=payload)) or b""
        data += conn.h11.send(h11.EndOfMessage()) or b""
        if req is not None:
            self.ledger.response_started(req, status, "")
        await conn.stream.send(data)
        await self._finish_cycle(conn)

    async def _finish_cycle(self, conn: _Conn) -> None:
        # Decide keep-alive right after the last write, before anything can yield, so the
        # reader never sees the client's next request while h11 still thinks we are busy.
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
        else:
            await self._close(conn, CloseKind.FIN)

    async def _close(self, conn: _Conn, kind: CloseKind) -> None:
        if conn.closing:
            return
        conn.closing = True
        self.ledger.connection_closed(conn.record, Closer.SERVER, kind)
        with anyio.CancelScope(shield=True):
            if kind is CloseKind.RST:
                sock = conn.raw.extra(SocketAttribute.raw_socket)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                with contextlib.suppress(
                    anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                ):
                    await conn.raw.send_eof()
            await conn.raw.aclose()


class _Parked(Exception):
    """The response hangs until the client leaves: nothing more will be written."""


def _close_kind(exc: BaseException) -> CloseKind:
    cause = exc.__cause__
    if isinstance(cause, BrokenPipeError | ConnectionResetError | ConnectionAbortedError):
        return CloseKind.RST
    return CloseKind.RST if cause is not None else CloseKind.FIN


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


def _query_dict(query: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query, keep_blank_values=True))


def _json_headers(payload: bytes, *, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    if close:
        headers.append((b"connection", b"close"))
    return headers


def _error_json(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()
