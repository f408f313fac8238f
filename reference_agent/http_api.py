"""`python -m reference_agent serve`: the HTTP+SSE front door over the Dispatcher.

The shape of the web-UI incidents (I3, I4): a prompt is answered "accepted" (202) and
runs in the background; each run has its own SSE stream ending with exactly one terminal
event; a cancel names the stream it was pressed for. Every one of those semantics lives
in `reference_agent.dispatch`; this module only translates HTTP to it. The spec other
servers can implement is docs/http-api.md.

anyio + h11, one task per connection (keep-alive), no framework: while an SSE response
streams, a second task reads the socket so a client that leaves is noticed at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import unquote

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from reference_agent.agent import Agent, UnknownSessionError
from reference_agent.config import AgentConfig
from reference_agent.dispatch import Dispatcher, StreamEvent

MAX_BODY = 1024 * 1024
SERVER_HEADER = (b"server", b"reference-agent")
_CLOSED = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class HttpError(Exception):
    """A request we answer with `{"error": {"message": ...}}` and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class JsonReply:
    status: int
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class SseReply:
    """An SSE response relaying one run's stream (replayed from its start)."""

    stream_id: str


Reply = JsonReply | SseReply
Handler = Callable[[list[str], bytes], Awaitable[Reply]]


class HttpApi:
    """Routes requests to a Dispatcher and serves connections (see docs/http-api.md)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        # (method, path pattern with "*" for an id, handler)
        self.routes: list[tuple[str, tuple[str, ...], Handler]] = [
            ("GET", ("health",), self._health),
            ("POST", ("sessions",), self._new_session),
            ("POST", ("sessions", "*", "prompts"), self._prompt),
            ("POST", ("sessions", "*", "cancel"), self._cancel),
            ("GET", ("sessions", "*", "transcript"), self._transcript),
            ("GET", ("streams", "*", "events"), self._events),
        ]

    # ---------------------------------------------------------------------- routing

    async def route(self, method: str, target: str, body: bytes) -> Reply:
        path = target.partition("?")[0]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        allowed = []
        for route_method, pattern, handler in self.routes:
            if len(pattern) == len(parts) and all(
                want in ("*", got) for want, got in zip(pattern, parts, strict=True)
            ):
                if route_method == method:
                    ids = [got for want, got in zip(pattern, parts, strict=True) if want == "*"]
                    return await handler(ids, body)
                allowed.append(route_method)
        if allowed:
            raise HttpError(405, f"{method} is not allowed on {path}; use {', '.join(allowed)}")
        raise HttpError(404, f"no route for {method} {path}; see docs/http-api.md")

    async def _health(self, ids: list[str], body: bytes) -> Reply:
        return JsonReply(200, {"ok": True})

    async def _new_session(self, ids: list[str], body: bytes) -> Reply:
        return JsonReply(201, {"session_id": await self.dispatcher.new_session()})

    async def _prompt(self, ids: list[str], body: bytes) -> Reply:
        prompt = _json_object(body, '{"prompt": "..."}').get("prompt")
        if not isinstance(prompt, str):
            raise HttpError(400, 'the body needs a string "prompt", like {"prompt": "hello"}')
        accepted = await self.dispatcher.submit(ids[0], prompt)
        return JsonReply(
            202,
            {
                "session_id": accepted.session_id,
                "turn_id": accepted.turn_id,
                "stream_id": accepted.stream_id,
            },
        )

    async def _cancel(self, ids: list[str], body: bytes) -> Reply:
        stream_id = _json_object(body, '{"stream_id": "..."} or {}', empty_ok=True).get("stream_id")
        if stream_id is not None and not isinstance(stream_id, str):
            raise HttpError(400, '"stream_id" must be a string (or left out to cancel all)')
        answer = await self.dispatcher.cancel(ids[0], stream_id)
        payload: dict[str, object] = {
            "ok": True,
            "cancelled": answer.cancelled,
            "stream_id": answer.stream_id,
        }
        if answer.reason:
            payload["reason"] = answer.reason
        return JsonReply(200, payload)

    async def _transcript(self, ids: list[str], body: bytes) -> Reply:
        session_id = ids[0]
        self.dispatcher.busy(session_id)  # raises UnknownSessionError for an unknown id
        usage = self.dispatcher.agent.usage(session_id)
        messages = [
            {
                "role": m.role,
                "content": m.content,
                "turn_id": m.turn_id,
                "finish_reason": m.finish_reason,
            }
            for m in self.dispatcher.transcript(session_id)
        ]
        return JsonReply(
            200,
            {
                "session_id": session_id,
                "messages": messages,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                },
            },
        )

    async def _events(self, ids: list[str], body: bytes) -> Reply:
        try:
            self.dispatcher.stream_history(ids[0])
        except KeyError:
            raise HttpError(
                404, f"no stream {ids[0]!r}; use a stream_id from POST prompts"
            ) from None
        return SseReply(ids[0])

    # -------------------------------------------------------------------- connections

    async def serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        """One task per connection: read a request, answer it, repeat while kept alive."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                method, target, body = request
                await self._answer(conn, stream, method, target, body)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except _CLOSED:
            return
        except Exception:  # a bug here must not take the listener (and every client) down
            traceback.print_exc(file=sys.stderr)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream
    ) -> tuple[str, str, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    message = f"malformed HTTP request ({exc}); send a valid HTTP/1.1 request"
                    await _send_json(conn, stream, 400, _error(message), close=True)
                return None
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    message = f"request body over {MAX_BODY} bytes"
                    await _send_json(conn, stream, 413, _error(message), close=True)
                    return None
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                method, target = request.method.decode("ascii"), request.target.decode("latin-1")
                return method, target, bytes(body)
            else:  # ConnectionClosed, PAUSED
                return None

    async def _answer(
        self,
        conn: h11.Connection,
        stream: anyio.abc.ByteStream,
        method: str,
        target: str,
        body: bytes,
    ) -> None:
        try:
            reply = await self.route(method, target, body)
        except HttpError as exc:
            reply = JsonReply(exc.status, _error(exc.message))
        except UnknownSessionError as exc:
            message = f"{exc.args[0] if exc.args else exc}; create one with POST /sessions"
            reply = JsonReply(404, _error(message))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = JsonReply(500, _error(f"internal error: {type(exc).__name__}: {exc}"))
        if isinstance(reply, JsonReply):
            await _send_json(conn, stream, reply.status, reply.payload)
        else:
            await self._stream_events(conn, stream, reply.stream_id)

    async def _stream_events(
        self, conn: h11.Connection, stream: anyio.abc.ByteStream, stream_id: str
    ) -> None:
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            SERVER_HEADER,
        ]
        await stream.send(_out(conn.send(h11.Response(status_code=200, headers=headers))))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_client, conn, stream, tg.cancel_scope)
            events = self.dispatcher.events(stream_id)
            try:
                async for event in events:
                    await stream.send(_out(conn.send(h11.Data(data=sse_frame(event)))))
            finally:  # unsubscribe now, not when the generator is collected
                if isinstance(events, AsyncGenerator):
                    with anyio.CancelScope(shield=True):
                        await events.aclose()
            await stream.send(_out(conn.send(h11.EndOfMessage())))
            tg.cancel_scope.cancel()


async def _watch_client(
    conn: h11.Connection, stream: anyio.abc.ByteStream, scope: anyio.CancelScope
) -> None:
    """While an SSE response streams: a client that leaves ends it at once."""
    while True:
        try:
            data = await stream.receive()
        except _CLOSED:
            break
        conn.receive_data(data)  # a pipelined next request waits in h11's buffer
    scope.cancel()


def sse_frame(event: StreamEvent) -> bytes:
    """`event: KIND` and one `data:` line of JSON with the turn and stream ids."""
    data = {"turn_id": event.turn_id, "stream_id": event.stream_id, **event.data}
    return f"event: {event.kind}\ndata: {json.dumps(data)}\n\n".encode()


def _json_object(body: bytes, shape: str, *, empty_ok: bool = False) -> dict[str, object]:
    if not body.strip() and empty_ok:
        return {}
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not valid JSON ({exc}); send {shape}") from None
    if not isinstance(decoded, dict):
        raise HttpError(400, f"the body must be a JSON object; send {shape}")
    return decoded


def _error(message: str) -> dict[str, object]:
    return {"error": {"message": message}}


def _out(data: bytes | None) -> bytes:
    return data or b""


async def _send_json(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    status: int,
    payload: dict[str, object],
    *,
    close: bool = False,
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        SERVER_HEADER,
    ]
    if close:
        headers.append((b"connection", b"close"))
    data = _out(conn.send(h11.Response(status_code=status, headers=headers)))
    data += _out(conn.send(h11.Data(data=body))) + _out(conn.send(h11.EndOfMessage()))
    await stream.send(data)


# ------------------------------------------------------------------------- entry points


async def serve(
    config: AgentConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    store: str | Path = ":memory:",
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the API until cancelled; `await tg.start(serve, config)` gives its base URL."""
    async with Agent(config, store=store) as agent:
        api = HttpApi(Dispatcher(agent))
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            bound = listener.listeners[0].extra(SocketAttribute.local_port)
            shown = f"[{host}]" if ":" in host else host
            task_status.started(f"http://{shown}:{bound}")
            await listener.serve(api.serve_connection)


async def _serve_until_signal(config: AgentConfig, args: argparse.Namespace) -> int:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            try:
                url = await tg.start(partial(serve, config, args.host, args.port, store=args.store))
            except (OSError, OverflowError) as exc:
                why = getattr(exc, "strerror", None) or exc
                return _failed(
                    f"cannot listen on {args.host}:{args.port} ({why}); "
                    "pick another --host/--port, or --port 0 for any free one"
                )
            except sqlite3.Error as exc:
                return _failed(
                    f"cannot open the store {args.store!r} ({exc}); "
                    "give a writable --store file, or :memory:"
                )
            print(f"reference_agent serving {url}", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()
    return 0


def _failed(message: str) -> int:
    print(f"reference_agent: error: {message}", file=sys.stderr)
    return 2


def serve_main(config: AgentConfig, args: argparse.Namespace) -> int:
    """`python -m reference_agent serve`: print the serving line, run until SIGINT/SIGTERM."""
    try:
        return anyio.run(_serve_until_signal, config, args)
    except KeyboardInterrupt:
        return 130
