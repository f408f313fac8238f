"""One live connection: its socket, its h11 state, and the ways it ends (FIN or RST).

Shared by the reader (`server.py`) and the responder (`responder.py`). Whatever happens,
a connection is closed once and the first close is what the ledger keeps.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from fake_providers.ledger import CloseKind, Closer, ConnectionRecord, Ledger, RequestRecord
from fake_providers.player import SERVER_HEADER


@dataclass(slots=True, eq=False)
class Connection:
    """Live state of one connection, shared by its reader and its responder."""

    stream: anyio.abc.ByteStream
    raw: anyio.abc.SocketStream
    record: ConnectionRecord
    h11: h11.Connection
    ledger: Ledger
    responder: anyio.CancelScope | None = None
    response_done: anyio.Event | None = None
    closing: bool = False
    loopback: bool = True
    head_only: bool = False  # the request being answered is a HEAD: no body may follow
    reading: anyio.CancelScope | None = None  # the reader's wait for bytes, to wake it
    # A response hanging until the client leaves needs no task: it is parked here and the
    # reader (which must run anyway, to notice the close) finishes it.
    parked: RequestRecord | None = None

    def response_ended(self) -> None:
        """Called by the responder: wake the reader so it waits again as the state now says."""
        done, self.response_done = self.response_done, None
        if done is not None:
            done.set()
        if self.reading is not None and (not self.busy or self.parked is not None):
            self.reading.cancel()  # idle now (its timeout changes), or parked (no scope needed)

    @property
    def busy(self) -> bool:
        """A response is in flight (or parked): the client may rightly stay silent."""
        return self.response_done is not None or self.parked is not None

    async def reply(
        self,
        status: int,
        payload: bytes,
        extra: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...] = (),
        *,
        req: RequestRecord | None = None,
        close: bool = False,
    ) -> None:
        """A whole JSON response in one write (no body for HEAD), then keep-alive or close."""
        headers = [*json_headers(payload, close=close), *extra, SERVER_HEADER]
        data = self.h11.send(h11.Response(status_code=status, headers=headers)) or b""
        if not self.head_only:
            data += self.h11.send(h11.Data(data=payload)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        if req is not None:
            self.ledger.response_started(req, status, "")
        await self.stream.send(data)
        await self.finish_cycle()

    async def finish_cycle(self) -> None:
        # Decide keep-alive right after the last write, before anything can yield, so the
        # reader never sees the client's next request while h11 still thinks we are busy.
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.head_only = False
        else:
            await self.close(CloseKind.FIN)

    async def close(self, kind: CloseKind) -> None:
        """Close from our side, once: FIN after what was written, or RST (SO_LINGER 0)."""
        if self.closing:
            return
        self.closing = True
        self.ledger.connection_closed(self.record, Closer.SERVER, kind)
        with anyio.CancelScope(shield=True):
            if kind is CloseKind.RST:
                with contextlib.suppress(OSError):
                    sock = self.raw.extra(SocketAttribute.raw_socket)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                with contextlib.suppress(
                    anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                ):
                    await self.raw.send_eof()
            with contextlib.suppress(OSError):
                await self.raw.aclose()


def close_kind(exc: BaseException) -> CloseKind:
    """FIN or RST, from the error a broken socket raised."""
    cause = exc.__cause__
    if isinstance(cause, BrokenPipeError | ConnectionResetError | ConnectionAbortedError):
        return CloseKind.RST
    return CloseKind.RST if cause is not None else CloseKind.FIN


def json_headers(payload: bytes, *, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    if close:
        headers.append((b"connection", b"close"))
    return headers


def error_json(message: str, kind: str) -> bytes:
    """A generic OpenAI-style error body, for requests no wire format claims."""
    return json.dumps({"error": {"message": message, "type": kind}}).encode()
