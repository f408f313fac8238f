"""The fake provider's server: anyio TCP + h11, owning the socket end to end.

Per connection, one task reads the socket for the whole life of the connection, so a
client close is noticed at once even while the response is idle (hanging, held at a gate,
between paced events); a second task writes the response by following the request's
`Schedule`. Unpaced events are coalesced into one write per pause point, so a fast
stream does not pay a syscall per event.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from fake_providers.conversation import read_shape
from fake_providers.faults import TERMINAL_ACTIONS, Action, Schedule
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
from fake_providers.rules import PlanResolver, PlanSelection, RequestView
from fake_providers.wire import RequestError, RequestFacts, WireFormat, route
from fake_providers.wire.routes import models_list_body
from fake_providers.writer import Cursor, PacedRun, Pacer, Sink

MAX_BODY = 8 * 1024 * 1024
BATCH_BYTES = 64 * 1024
SERVER_HEADER = (b"server", b"cancel-harness-fake-provider")


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
        plan = prepared.selection.plan
        schedule = plan.compile(request_ordinal=req.ordinal)
        for action in schedule.before_headers:
            await self._pause(conn, req, action, position=0)
        if schedule.error is not None:
            err = schedule.error
            headers = []
            if err.retry_after is not None:
                headers.append((b"retry-after", f"{err.retry_after:g}".encode()))
            if err.retry_after_ms is not None:
                headers.append((b"retry-after-ms", str(err.retry_after_ms).encode()))
            payload = prepared.wire.error_body(err.status, _status_message(err.status))
            await self._send_simple(conn, err.status, payload, headers, req=req)
            return Outcome.COMPLETE
        return await self._stream(conn, req, prepared, schedule)

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
            shape=read_shape(wire.kind, decoded),
        )
        try:
            selection = self.resolver.select(view)
        except ValueError as exc:
            self.ledger.describe_request(
                req, kind=wire.kind, model=facts.model, stream=facts.stream
            )
            return 400, wire.error_body(400, str(exc))
        self.ledger.describe_request(
            req,
            kind=wire.kind,
            model=selection.model,
            stream=facts.stream,
            classification=selection.classification,
        )
        if selection.model != facts.model:
            facts = RequestFacts(
                facts.kind, selection.model, facts.stream, facts.include_usage, facts.max_tokens
            )
        return _Prepared(wire, facts, selection, found.stream_media_type, decoded)

    async def _stream(
        self, conn: _Conn, req: RequestRecord, prepared: _Prepared, schedule: Schedule
    ) -> Outcome:
        wire, facts = prepared.wire, prepared.facts
        completion = prepared.selection.plan.content.build(
            model=facts.model,
            response_id=f"{wire.kind.id_prefix}fake{req.ordinal:06d}",
            created=1_700_000_000 + req.ordinal,
            max_tokens=facts.max_tokens,
            input_tokens=max(1, req.body_size // 4),
        )
        if facts.stream:
            events: Iterator[bytes] = iter(wire.stream_events(completion, facts))
            content_type = prepared.media_type.encode()
            headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        else:
            events = iter([wire.json_body(completion, facts)])
            headers = [(b"content-type", b"application/json")]
        headers.append(SERVER_HEADER)
        self.ledger.response_started(req, 200, prepared.selection.describe())
        head = conn.h11.send(h11.Response(status_code=200, headers=headers)) or b""
        sink = Sink(conn.stream, conn.raw, chunked=conn.h11.their_http_version == b"1.1")
        out = _Out(self, req, sink, schedule.drip)
        out.framed += head
        due = schedule.due()
        start = anyio.current_time()
        # The pacer writes straight into the transport; TLS and drip go the slow way.
        pacer = self.pacer if schedule.pace and not schedule.drip and sink.transport else None
        cursor = Cursor(events)
        while cursor.current is not None:
            for action in schedule.at(cursor.position, last=cursor.last):
                if action.kind in ("hold", "hang") or schedule.drip:
                    await out.flush()
                if action.kind == "malformed":
                    out.event(wire.malformed_event())
                    continue
                if action.kind in TERMINAL_ACTIONS:
                    return await self._terminate(conn, out, action, wire, completion)
                await self._pause(conn, req, action, cursor.position)
            if schedule.pace is not None:
                deadline = start + next(due)
                if pacer is not None and not cursor.last:
                    await out.flush()
                    run = PacedRun(
                        cursor=cursor,
                        stop=schedule.next_position(cursor.position),
                        offsets=due,
                        start=start,
                        sink=sink,
                        ledger=self.ledger,
                        request=req,
                        next_due=deadline,
                    )
                    await pacer.play(run)
                    continue
                if deadline > anyio.current_time():
                    await out.flush()
                    await anyio.sleep_until(deadline)
            out.event(cursor.current)
            if out.size >= BATCH_BYTES or schedule.pace is not None:
                await out.flush()
            cursor.advance()
        out.end(conn.h11.send(h11.EndOfMessage()) or b"")
        await out.flush()
        await self._finish_cycle(conn)
        return Outcome.COMPLETE

    async def _terminate(
        self, conn: _Conn, out: _Out, action: Action, wire: WireFormat, completion: Any
    ) -> Outcome:
        if action.kind == "error":
            out.event(wire.stream_error_event(action.message, completion))
            out.end(conn.h11.send(h11.EndOfMessage()) or b"")
            await out.flush()
            await self._finish_cycle(conn)
            return Outcome.STREAM_ERROR
        await out.flush()
        kind = CloseKind.RST if action.kind == "reset" else CloseKind.FIN
        await self._close(conn, kind)
        return Outcome.SERVER_RESET if kind is CloseKind.RST else Outcome.SERVER_CLOSED

    async def _pause(self, conn: _Conn, req: RequestRecord, action: Action, position: int) -> None:
        if action.kind == "hold" and action.hold is not None:
            gate = action.hold.gate or self.gates.get(action.hold.gate_name)
            where = (
                "headers" if position == 0 and action.hold.before == 0 else f"event {position + 1}"
            )
            self.ledger.held(req, f"held before {where} at gate {gate.name!r}")
            await gate.pass_through()
        elif action.kind == "hang" and action.duration is None:
            self.ledger.held(req, f"hanging after {position} events until the client leaves")
            raise _Parked
        elif action.kind == "hang" and action.duration is not None:
            self.ledger.held(req, f"hanging {action.duration:g}s after {position} events")
            await anyio.sleep(action.duration)

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


class _Out:
    """A response's pending bytes: framed bytes (headers, end) and raw events to frame."""

    __slots__ = ("body", "drip", "framed", "request", "server", "sink", "sizes")

    def __init__(
        self, server: ProviderServer, request: RequestRecord, sink: Sink, drip: float | None
    ):
        self.server = server
        self.request = request
        self.sink = sink
        self.drip = drip
        self.framed = bytearray()
        self.body = bytearray()
        self.sizes: list[int] = []

    @property
    def size(self) -> int:
        return len(self.body)

    def event(self, data: bytes) -> None:
        self.body += data
        self.sizes.append(len(data))

    def end(self, trailer: bytes) -> None:
        self._fold()
        self.framed += trailer

    def _fold(self) -> None:
        if self.body:
            self.framed += self.sink.frame(self.body)
            self.body.clear()

    async def flush(self) -> None:
        """Send everything pending as one write (one HTTP chunk for all pending events)."""
        self._fold()
        if not self.framed:
            return
        data = bytes(self.framed)
        self.framed.clear()
        if self.drip:
            await _drip(self.sink, data, self.drip)
        else:
            await self.sink.send(data)
        if self.sizes:
            self.server.ledger.events_written(self.request, self.sizes)
            self.sizes = []


async def _drip(sink: Sink, data: bytes, rate: float) -> None:
    # Trickle against absolute deadlines in ticks of at most 10 ms, so the rate holds.
    tick = max(1, int(rate / 100))
    start = anyio.current_time()
    for sent in range(0, len(data), tick):
        await anyio.sleep_until(start + sent / rate)
        await sink.stream.send(data[sent : sent + tick])


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


_STATUS_MESSAGES = {
    408: "Request timed out (injected fault).",
    409: "Conflict (injected fault).",
    429: "Rate limit reached (injected fault).",
    500: "The server had an error (injected fault).",
    502: "Bad gateway (injected fault).",
    503: "Service unavailable (injected fault).",
    504: "Gateway timeout (injected fault).",
    529: "Overloaded (injected fault).",
}


def _status_message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"HTTP {status} (injected fault).")
