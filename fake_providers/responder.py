"""One request in, its response out: routing, validation, the plan, and the player's commands.

The responder owns no socket logic beyond carrying out `fake_providers.player` commands
(write, sleep, wait at a gate, close). Every request gets an answer in its provider's own
format; a bad one is a 4xx recorded as malformed, and a bug of ours is a 500 (or a reset
mid-stream) recorded on the connection, never an exception that ends the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol, assert_never
from urllib.parse import parse_qsl

import anyio
import h11

from fake_providers.connection import Connection, close_kind, error_json
from fake_providers.conversation import read_shape
from fake_providers.gates import GateRegistry
from fake_providers.ledger import CloseKind, Closer, Ledger, Outcome, RequestRecord
from fake_providers.player import (
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

log = logging.getLogger("fake_providers")

ROUTES_HINT = (
    "the fake provider serves POST /v1/chat/completions, /v1/responses, /v1/messages, "
    "/openai/deployments/{d}/chat/completions, /v1beta/models/{m}:streamGenerateContent "
    "and GET /v1/models"
)


class Control(Protocol):
    """The control API, as the responder calls it."""

    async def handle(
        self, method: str, path: str, query: str, body: bytes, *, loopback: bool
    ) -> tuple[int, bytes]: ...


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request that passed validation, with its plan."""

    wire: WireFormat
    facts: RequestFacts
    selection: PlanSelection
    media_type: str


class _Parked(Exception):
    """The response hangs until the client leaves: nothing more will be written."""


class Responder:
    """Answers the requests of every connection of one provider."""

    def __init__(
        self, *, ledger: Ledger, resolver: PlanResolver, gates: GateRegistry, control: Control
    ) -> None:
        self.ledger = ledger
        self.resolver = resolver
        self.gates = gates
        self.control = control
        self.pacer = Pacer(ledger)

    async def respond(
        self,
        conn: Connection,
        request: h11.Request,
        body: bytes,
        started: int,
        scope: anyio.CancelScope,
    ) -> None:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        method = request.method.decode("latin-1")
        conn.head_only = method == "HEAD"
        req: RequestRecord | None = None
        outcome: Outcome | None = None
        try:
            with scope:
                if path.startswith("/__harness/"):
                    conn.record.control = True
                    status, payload = await self.control.handle(
                        method, path, query, body, loopback=conn.loopback
                    )
                    await conn.reply(status, payload)
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
                outcome = await self._serve(conn, req, method, path, query, body)
        except anyio.BrokenResourceError as exc:
            outcome = Outcome.WRITE_FAILED
            if not conn.closing:
                self.ledger.connection_closed(
                    conn.record, Closer.CLIENT, close_kind(exc), write_error=repr(exc.__cause__)
                )
        except anyio.ClosedResourceError:
            outcome = Outcome.CLIENT_CLOSED
        except _Parked:
            if conn.record.closed_by is None:
                conn.parked = req  # hangs until the client leaves; the reader finishes it
            # else the client left while this response was on its way to parking (woken,
            # not yet run, then no await before the park): the reader has already looked
            # for a parked request, so the finally below finishes it.
        except Exception as exc:  # a bug of ours must not end the server: answer and record
            outcome = Outcome.SERVER_ERROR
            await self._internal_error(conn, exc)
        finally:
            if outcome is None and conn.parked is not req:  # cancelled: client close/shutdown
                closed_by = conn.record.closed_by
                outcome = Outcome.CLIENT_CLOSED if closed_by is Closer.CLIENT else Outcome.SHUTDOWN
            if req is not None and outcome is not None:
                self.ledger.request_finished(req, outcome)
            conn.responder = None
            conn.response_ended()

    async def _internal_error(self, conn: Connection, exc: Exception) -> None:
        log.error("fake provider: internal error on conn#%d", conn.record.id, exc_info=exc)
        note = f"internal error: {exc!r}"[:500]
        if conn.closing:
            return
        self.ledger.connection_closed(conn.record, Closer.SERVER, CloseKind.RST, write_error=note)
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            payload = error_json(f"the fake provider failed: {exc!r}"[:500], "server_error")
            with contextlib.suppress(Exception):  # the close below is all that is left
                await conn.reply(500, payload, close=True)
        await conn.close(CloseKind.RST)

    async def _serve(
        self, conn: Connection, req: RequestRecord, method: str, path: str, query: str, body: bytes
    ) -> Outcome:
        if method in ("GET", "HEAD") and path.rstrip("/") == "/v1/models":
            self.ledger.describe_request(req, kind="models", model=None, stream=False)
            await conn.reply(200, models_list_body(), req=req)
            return Outcome.COMPLETE
        prepared = self._prepare(req, method, path, query, body)
        if isinstance(prepared, tuple):
            status, payload = prepared
            await conn.reply(status, payload, req=req)
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
        self, conn: Connection, req: RequestRecord, player: Player, plan: str
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
                    await conn.finish_cycle()
                    return outcome
                case Close(kind=kind):
                    await conn.close(kind)
                    return Outcome.SERVER_RESET if kind is CloseKind.RST else Outcome.SERVER_CLOSED
                case Reply(status=status, headers=headers, body=payload):
                    await conn.reply(status, payload, headers, req=req)
                    return Outcome.COMPLETE
                case _:
                    assert_never(command)
            command = player.send(anyio.current_time())

    async def _paced(self, sink: Sink, req: RequestRecord, run: PacedRun) -> None:
        # The shared timer writes straight into the transport; TLS goes the slow way.
        if sink.transport is not None:
            await self.pacer.play(run, sink, req)
            return
        while run.more:
            await anyio.sleep_until(run.next_due)
            data, size = run.step()
            await sink.send(data)
            self.ledger.event_written(req, size)

    def _prepare(
        self, req: RequestRecord, method: str, path: str, query: str, body: bytes
    ) -> _Prepared | tuple[int, bytes]:
        found = route(method, path, dict(parse_qsl(query, keep_blank_values=True)))
        if found is None:
            self.ledger.describe_request(req, kind=None, model=None, stream=None)
            message = f"no route for {method} {path[:200]}: {ROUTES_HINT}"
            return 404, error_json(message, "not_found_error")
        wire = found.wire
        decoded: Any
        try:
            decoded = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError) as exc:
            return self._malformed(req, wire, 400, f"request body is not valid JSON ({exc})")
        except RecursionError:
            return self._malformed(req, wire, 400, "request body is nested too deeply")
        if not isinstance(decoded, dict):
            return self._malformed(req, wire, 400, "request body must be a JSON object")
        try:
            facts = wire.facts(found.params, decoded)
        except RequestError as exc:
            return self._malformed(req, wire, exc.status, exc.message)
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
            return self._malformed(req, wire, 400, str(exc), model=facts.model, stream=facts.stream)
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
        return _Prepared(wire, facts, selection, found.stream_media_type)

    def _malformed(
        self,
        req: RequestRecord,
        wire: WireFormat,
        status: int,
        message: str,
        *,
        model: str | None = None,
        stream: bool | None = None,
    ) -> tuple[int, bytes]:
        """A request the provider would refuse: recorded as malformed, answered in its format."""
        self.ledger.describe_request(
            req, kind=wire.kind, model=model, stream=stream, malformed=message
        )
        return status, wire.error_body(status, message)
