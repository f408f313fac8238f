"""The fake provider's server: anyio TCP + h11, owning the socket end to end.

Per connection, one task reads the socket for the whole life of the connection, so a
client close is noticed at once even while the response is idle (hanging, held at a gate,
between paced events); a second task (`responder.py`) carries out the commands of the
request's response player (`fake_providers.player`). Every decision about what goes on
the wire is the player's. This module accepts, reads, times out partial requests and idle
keep-alives, and survives any input: no byte sequence, and no shortage of file descriptors,
ends the server or the task group that hosts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from fake_providers.connection import Connection, close_kind, error_json
from fake_providers.ledger import CloseKind, Closer, Ledger, Outcome, now_ns
from fake_providers.limits import Limits
from fake_providers.responder import Responder
from fake_providers.wire import route

log = logging.getLogger("fake_providers")

# accept() failing for lack of resources: wait for connections to close, then go on.
_SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Connections taken from the backlog at once after each accept (see _accept_burst).
ACCEPT_BURST = 256
_TIMED_OUT = object()
_WOKEN = object()
RECANCEL_S = 0.05  # LightTasks.close: how long a cancelled task has before it is cancelled again


class LightTasks:
    """The server's per-connection and per-response tasks, as plain event-loop tasks.

    An anyio task-group task carries a handle, its own cancel scope and an event (anyio 4.16:
    about 2 KiB); with thousands of idle hanging streams that is a seventh of what a
    connection costs. These tasks stay structured: `close` cancels every one still running
    and waits for it (each shields its own socket close), and a crash is logged, never lost.
    anyio's cancel scopes and timeouts work inside them as in any asyncio task.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("fake provider: internal error in %s", task.get_coro(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._running)

    async def close(self) -> None:
        """Cancel every task still running and wait until all have finished.

        A cancel is sent again to any task still running after a short wait: when it lands
        just as one of anyio's own scopes in that task is cancelled (the reader's wait being
        woken at the end of a response), the scope takes it for its own and the task goes on.
        """
        with anyio.CancelScope(shield=True):
            while self._running:
                running = list(self._running)
                for task in running:
                    task.cancel()
                await asyncio.wait(running, timeout=RECANCEL_S)


class ProviderServer:
    """Accepts connections, reads requests, and hands each one to the responder."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        responder: Responder,
        ssl_context: ssl.SSLContext | None,
        limits: Limits,
    ) -> None:
        self.ledger = ledger
        self.responder = responder
        self.ssl_context = ssl_context
        self.limits = limits
        self.tasks = LightTasks()

    async def serve(self, listeners: list[anyio.abc.SocketListener]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for listener in listeners:
                    tg.start_soon(self._accept_loop, listener)
        finally:
            await self.tasks.close()

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        backoff = 0.0
        try:
            waiting: socket.socket | None = listener.extra(SocketAttribute.raw_socket)
        except anyio.TypedAttributeLookupError:
            waiting = None
        while True:
            try:
                raw = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                # Out of descriptors (ulimit -n) or memory: back off so closes can catch
                # up, and keep serving the connections we have.
                scarce = exc.errno in _SCARCE
                backoff = min(1.0, backoff * 2 or 0.01) if scarce else 0.0
                log.warning("fake provider: accept failed (%s); retrying", exc)
                await anyio.sleep(backoff)
                continue
            backoff = 0.0
            self.tasks.spawn(self._handle(raw))
            if waiting is not None:
                self._accept_burst(waiting)

    def _accept_burst(self, listening: socket.socket) -> None:
        """Take the connections already waiting in the backlog, without a loop pass each.

        Each `listener.accept()` costs a few event-loop passes; under a burst of connects on
        a busy loop (thousands of paced streams) that caps accepts at a few hundred a second,
        the backlog overflows and clients wait out SYN retransmits (1, 3, 7, 15 s...). A
        non-blocking accept on the listening socket drains it now; each connection is
        wrapped by its own task.
        """
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = listening.accept()
            except OSError:  # BlockingIOError: the backlog is empty; others: accept() retries
                return
            self.tasks.spawn(self._adopt(sock))

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw = await anyio.abc.SocketStream.from_socket(sock)
        except (OSError, ValueError):  # the client reset it before we got to it
            sock.close()
            record = self.ledger.open_connection("?", tls=self.ssl_context is not None)
            self.ledger.connection_closed(record, Closer.CLIENT, CloseKind.RST)
            return
        await self._handle(raw)

    # ------------------------------------------------------------------------ reading

    async def _handle(self, raw: anyio.abc.SocketStream) -> None:
        try:
            peer = raw.extra(SocketAttribute.remote_address)
            host = peer[0] if isinstance(peer, tuple) else str(peer)
            text = f"[{peer[0]}]:{peer[1]}" if ":" in host else f"{peer[0]}:{peer[1]}"
        except (OSError, IndexError, TypeError):  # the peer left before we looked
            host, text = "?", "?"
        record = self.ledger.open_connection(text, tls=self.ssl_context is not None)
        stream: anyio.abc.ByteStream = raw
        if self.ssl_context is not None:
            failure = None
            with anyio.move_on_after(self.limits.request_timeout) as handshake:
                try:
                    stream = await TLSStream.wrap(
                        raw,
                        server_side=True,
                        ssl_context=self.ssl_context,
                        standard_compatible=False,
                    )
                except Exception as exc:  # any failed handshake is the client's problem
                    failure = f"TLS handshake: {exc}"
            if handshake.cancelled_caught:
                failure = f"TLS handshake not done within {self.limits.request_timeout:g}s"
            if failure is not None:
                self.ledger.connection_closed(
                    record, Closer.CLIENT, CloseKind.RST, write_error=failure[:500]
                )
                with anyio.CancelScope(shield=True):
                    await raw.aclose()
                return
        conn = Connection(
            stream,
            raw,
            record,
            h11.Connection(h11.SERVER, max_incomplete_event_size=65536),
            self.ledger,
            loopback=_is_loopback(host),
        )
        try:
            await self._read_loop(conn)
        except Exception as exc:  # a bug of ours must not end the server
            log.error("fake provider: internal error reading conn#%d", record.id, exc_info=exc)
            if not conn.closing:
                self.ledger.connection_closed(
                    record, Closer.SERVER, CloseKind.RST, write_error=f"internal error: {exc!r}"
                )
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

    async def _read_loop(self, conn: Connection) -> None:
        request: h11.Request | None = None
        body = bytearray()
        started = 0
        deadline: float | None = None  # when the request being read must be whole
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                await self._reject(conn, exc, request)
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
                if _declared_length(event) > self.limits.max_body:
                    await self._reject(conn, _too_large(self.limits.max_body), request)
                    return
                continue
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body:
                    await self._reject(conn, _too_large(self.limits.max_body), request)
                    return
                continue
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                self._start_response(conn, request, bytes(body), started)
                request, body, deadline = None, bytearray(), None
                continue
            elif isinstance(event, h11.ConnectionClosed):
                return
            if event is not h11.NEED_DATA and event is not h11.PAUSED:
                continue
            partial = request is not None or bool(conn.h11.trailing_data[0])
            if conn.busy:
                timeout = None
            elif partial:
                now = anyio.current_time()
                deadline = deadline or now + self.limits.request_timeout
                timeout = max(0.0, deadline - now)
            else:
                timeout = self.limits.idle_timeout
            data = await self._receive(conn, timeout)
            if data is _WOKEN:
                continue
            if data is _TIMED_OUT:
                if partial:
                    limit = self.limits.request_timeout
                    reason = f"the request was not complete within {limit:g}s of its first byte"
                    await self._reject(conn, h11.RemoteProtocolError(reason, 408), request)
                else:
                    await conn.close(CloseKind.FIN)  # idle keep-alive: a quiet goodbye
                return
            if not isinstance(data, bytes):
                if not conn.busy and partial:
                    # A half-closed client that sent part of a request still gets told why.
                    reason = "the request ended before it was complete"
                    await self._reject(conn, h11.RemoteProtocolError(reason), request)
                return
            if deadline is None and not conn.busy:
                deadline = anyio.current_time() + self.limits.request_timeout
            conn.h11.receive_data(data)

    async def _receive(self, conn: Connection, timeout: float | None) -> bytes | object | None:
        """Read from the socket; on a client close, record it and stop the responder."""
        try:
            if timeout is None and conn.parked is not None:
                # Parked until the client leaves: nothing will wake us, and thousands of
                # idle hanging streams should not each hold a cancel scope.
                return await conn.stream.receive()
            with anyio.move_on_after(timeout) as waited:
                conn.reading = waited
                try:
                    return await conn.stream.receive()
                finally:
                    conn.reading = None
            # Woken by the responder (its response ended, so the timeout changes), or
            # timed out.
            return _WOKEN if waited.deadline > anyio.current_time() else _TIMED_OUT
        except anyio.EndOfStream:
            kind = CloseKind.FIN
        except anyio.BrokenResourceError as exc:
            kind = close_kind(exc)
        except (anyio.ClosedResourceError, OSError):
            return None
        if not conn.closing:
            self.ledger.connection_closed(conn.record, Closer.CLIENT, kind)
            if conn.responder is not None:
                conn.responder.cancel()
            if conn.parked is not None:
                self.ledger.request_finished(conn.parked, Outcome.CLIENT_CLOSED)
        return None

    async def _reject(
        self, conn: Connection, exc: h11.RemoteProtocolError, request: h11.Request | None
    ) -> None:
        """Answer a request we cannot take with one JSON body, then close (h11 requires it).

        The body is in the provider's own error format when the request line names one.
        """
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        message = f"malformed HTTP request: {exc}; send a valid HTTP/1.1 request"
        if status == 408:
            message = f"request timeout: {exc}"
        elif status == 413:
            message = f"request too large: {exc}"
        self.ledger.connection_malformed(conn.record, message)
        payload = error_json(message, "invalid_request_error")
        if request is not None:
            target = request.target.decode("latin-1")
            path, _, query = target.partition("?")
            found = route(request.method.decode("latin-1"), path, dict(parse_qsl(query)))
            if found is not None:
                payload = found.wire.error_body(status, message)
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not conn.closing:
            conn.head_only = request is not None and request.method == b"HEAD"
            with contextlib.suppress(
                h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                await conn.reply(status, payload, close=True)
        await conn.close(CloseKind.FIN)

    def _start_response(
        self, conn: Connection, request: h11.Request, body: bytes, started: int
    ) -> None:
        scope = anyio.CancelScope()
        conn.responder = scope
        conn.response_done = anyio.Event()
        self.tasks.spawn(self.responder.respond(conn, request, body, started, scope))


def _declared_length(request: h11.Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else 2**63
    return 0


def _too_large(limit: int) -> h11.RemoteProtocolError:
    return h11.RemoteProtocolError(f"request body over {limit:,} bytes", 413)


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")
