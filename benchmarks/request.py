"""The one request every benchmark sends, and the check that both servers answer it alike.

Both servers must put the same SSE bytes on the wire, or the comparison means nothing: each
benchmark fetches one response from every server with a plain blocking socket and compares
the payloads (`same_bytes`).
"""

from __future__ import annotations

import socket
import time
from typing import Any

# The OpenAI Chat streaming endpoint, as raw HTTP/1.1.
BODY = b'{"model":"m","stream":true,"messages":[]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    b"host: 127.0.0.1\r\n"
    b"content-type: application/json\r\n"
    b"accept: text/event-stream\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
) + BODY


def events_per_response(tokens: int) -> int:
    """SSE events in one OpenAI Chat stream: role chunk, one per token, finish chunk, [DONE]."""
    return tokens + 3


def fetch_body(port: int, max_events: int | None = None, timeout: float = 30.0) -> bytes:
    """One response body (de-chunked), read with a plain blocking socket on 127.0.0.1.

    Reads to the end of the response, or only until `max_events` SSE events arrived
    (for hanging streams).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\r\n0\r\n\r\n"):
                break
            if max_events is not None and data.count(b"\n\n") >= max_events:
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"chunked" not in head.lower():
        return rest
    body = bytearray()
    pos = 0
    while pos < len(rest):
        eol = rest.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(rest[pos:eol].split(b";")[0], 16)
        if size == 0:
            break
        body += rest[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(body)


def same_bytes(ours_body: bytes, base_body: bytes) -> dict[str, Any]:
    """Compare the SSE payloads the two servers sent for the same request."""
    if ours_body == base_body:
        return {"identical": True, "bytes": len(ours_body), "events": ours_body.count(b"\n\n")}
    at = next(
        (i for i, (a, b) in enumerate(zip(ours_body, base_body, strict=False)) if a != b),
        min(len(ours_body), len(base_body)),
    )
    return {
        "identical": False,
        "ours_bytes": len(ours_body),
        "starlette_bytes": len(base_body),
        "first_difference_at": at,
        "ours_context": ours_body[max(0, at - 40) : at + 40].decode("utf-8", "replace"),
        "starlette_context": base_body[max(0, at - 40) : at + 40].decode("utf-8", "replace"),
    }


def describe_same(check: dict[str, Any]) -> str:
    if check["identical"]:
        return (
            f"identical SSE bytes from both servers ({check['bytes']:,} bytes, "
            f"{check['events']} events)"
        )
    return (
        f"WARNING: SSE bytes differ at byte {check['first_difference_at']} "
        f"(ours {check['ours_bytes']:,} vs starlette {check['starlette_bytes']:,} bytes): "
        f"{check['ours_context']!r} vs {check['starlette_context']!r}"
    )
