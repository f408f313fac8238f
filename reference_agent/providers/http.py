"""What every provider client shares: the HTTP client, error mapping and the attempt loop.

Each wire format is a `Codec` (request body out, events in); `exchange` is the one place
that talks to httpx. It keeps the request inside `async with http.stream(...)` in the
caller's task, so a cancelled scope or `aclose()` exits that block and closes the socket
at once (INCIDENTS.md I1), and it races every read against `stale_timeout`.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import anyio
import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.config import AgentConfig
from reference_agent.providers.base import (
    CallHandle,
    FatalProviderError,
    ModelEvent,
    ModelRequest,
    ProviderError,
    StaleStreamError,
    StreamBrokenError,
    TransientProviderError,
)
from reference_agent.providers.sse import SSEEvent, SSEParser

SUMMARY_PREFIX = "[Summary of the earlier conversation, which was compacted to save context]\n"
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
DRAIN_TIMEOUT = 0.5  # how long the tail after the end event may take before we hang up
# Errors that mean "the body stopped arriving": the peer went away, or we closed it.
_BROKEN = (
    httpx.TransportError,
    httpx.StreamError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request in a provider's format (the purpose header is added by `exchange`)."""

    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


class StreamDecoder(Protocol):
    """Per-attempt state that turns SSE events into model events."""

    @property
    def done(self) -> bool:
        """True once the terminal event was seen; `exchange` stops reading then."""
        ...

    def feed(self, event: SSEEvent) -> list[ModelEvent]: ...


class Codec(Protocol):
    """A provider wire format, without IO."""

    kind: ProviderKind

    def build(self, request: ModelRequest) -> WireRequest: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def decode_body(self, data: Any) -> list[ModelEvent]:
        """The events of a non-streamed JSON body."""
        ...


def make_http_client(config: AgentConfig) -> httpx.AsyncClient:
    """One client per agent. No read timeout: staleness is timed per chunk in `exchange`."""
    verify: ssl.SSLContext | bool = True
    if config.ca_file:
        verify = ssl.create_default_context(cafile=config.ca_file)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=config.connect_timeout), verify=verify
    )


# ----------------------------------------------------------------------------- errors


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_message(body: bytes) -> str:
    """The provider's own error message from an error body (`{"error": {"message": ...}}`)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return text[:500]


def status_error(status: int, headers: httpx.Headers, body: bytes) -> ProviderError:
    """408/409/429/5xx (529 included) may pass with time; any other status will not."""
    message = f"HTTP {status}: {error_message(body)}"
    if status in (408, 409, 429) or 500 <= status <= 599:
        return TransientProviderError(
            message, status=status, retry_after=parse_retry_after(headers)
        )
    return FatalProviderError(message, status=status)


def connect_error(exc: Exception) -> ProviderError:
    """A failure before the response headers arrived."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientProviderError(f"cannot connect: {exc!r}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return FatalProviderError(f"cannot send the request: {exc!r}")
    return StreamBrokenError(f"the connection broke before the response: {exc!r}")


def load_json(data: str | bytes, what: str) -> Any:
    """Decode JSON from the provider; unreadable JSON is a response we cannot understand."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise FatalProviderError(f"malformed {what}: {exc}") from exc


def parse_arguments(text: str, tool: str) -> dict[str, Any]:
    """A tool call's JSON arguments as a dict ("" means none)."""
    if not text.strip():
        return {}
    value = load_json(text, f"arguments of tool call {tool!r}")
    if not isinstance(value, dict):
        raise FatalProviderError(f"arguments of tool call {tool!r} are not a JSON object")
    return value


def arguments_json(arguments: Mapping[str, Any]) -> str:
    return json.dumps(arguments, separators=(",", ":"))


def summary_text(content: str) -> str:
    """A compaction summary, sent as a user message that says what it is."""
    return SUMMARY_PREFIX + content


def finish_reason(raw: object, *, tool_calls: bool = False) -> str:
    """Normalise to stop | length | tool_calls; unknown reasons (content_filter ...) -> stop."""
    if raw is None:
        return "tool_calls" if tool_calls else "stop"
    return _FINISH.get(str(raw), "stop")


# ----------------------------------------------------------------------------- the loop


class BodyReader:
    """The response body chunk by chunk, each read raced against `stale_timeout`."""

    def __init__(self, response: httpx.Response, stale_timeout: float) -> None:
        self._chunks = response.aiter_bytes()
        self._stale = stale_timeout

    async def next(self) -> bytes | None:
        """The next chunk, or None at the end of the body."""
        try:
            with anyio.fail_after(self._stale):
                return await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise StaleStreamError(f"no data from the provider for {self._stale:g}s") from exc
        except httpx.DecodingError as exc:
            raise FatalProviderError(f"undecodable response body: {exc!r}") from exc
        except _BROKEN as exc:
            raise StreamBrokenError(f"the stream broke: {exc!r}") from exc

    async def read_all(self) -> bytes:
        parts = []
        while (chunk := await self.next()) is not None:
            parts.append(chunk)
        return b"".join(parts)


def _decode[T](kind: str, decode: Callable[[T], list[ModelEvent]], item: T) -> list[ModelEvent]:
    """Run a decoder; a payload of the wrong shape is a response we cannot understand."""
    try:
        return decode(item)
    except ProviderError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise FatalProviderError(f"{kind}: unexpected response shape: {exc!r}") from exc


async def exchange(
    http: httpx.AsyncClient,
    config: AgentConfig,
    codec: Codec,
    request: ModelRequest,
    call: CallHandle,
) -> AsyncGenerator[ModelEvent, None]:
    """One attempt: send, then yield events until the terminal one. Never retries.

    Waiting for the headers may take `connect_timeout + stale_timeout` at most; after
    that each chunk must come within `stale_timeout`. Cancellation is never caught here.
    """
    wire = codec.build(request)
    headers = {**wire.headers, "x-agent-purpose": request.purpose}
    if request.stream:
        headers["accept"] = "text/event-stream"
    call.attempts += 1
    async with AsyncExitStack() as stack:
        opening = http.stream("POST", wire.url, headers=headers, json=dict(wire.body))
        try:
            with anyio.fail_after(config.connect_timeout + config.stale_timeout):
                response = await stack.enter_async_context(opening)
        except TimeoutError as exc:
            raise StaleStreamError("no response headers from the provider in time") from exc
        except (httpx.HTTPError, httpx.InvalidURL, *_BROKEN) as exc:
            raise connect_error(exc) from exc
        call.response = response
        try:
            body = BodyReader(response, config.stale_timeout)
            if not 200 <= response.status_code < 300:
                try:
                    payload = await body.read_all()
                except ProviderError:
                    payload = b""
                raise status_error(response.status_code, response.headers, payload)
            media = response.headers.get("content-type", "")
            if not request.stream or media.startswith("application/json"):
                data = load_json(await body.read_all(), f"{codec.kind} response body")
                for event in _decode(codec.kind, codec.decode_body, data):
                    yield event
                return
            parser = SSEParser()
            decoder = codec.stream_decoder()
            ended = False
            while not ended:
                chunk = await body.next()
                if chunk is None:
                    raise StreamBrokenError(f"{codec.kind}: the stream ended before its end event")
                for sse in parser.feed(chunk):
                    for event in _decode(codec.kind, decoder.feed, sse):
                        yield event
                    ended = decoder.done
                    if ended:
                        break
            await _drain(body)
        finally:
            call.response = None


async def _drain(body: BodyReader, limit: int = 65_536) -> None:
    """Read the tail after the end event (usually just the chunked terminator) so the
    connection can be reused. A failure or a slow or long tail only costs the connection."""
    with anyio.move_on_after(DRAIN_TIMEOUT):
        try:
            while limit > 0 and (chunk := await body.next()) is not None:
                limit -= len(chunk)
        except ProviderError:
            pass


class CodecClient:
    """A `ProviderClient` made of a codec: `attempt` is `exchange` with this codec."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient, codec: Codec) -> None:
        self.kind = codec.kind
        self.config = config
        self.http = http
        self.codec = codec

    def attempt(self, request: ModelRequest, call: CallHandle) -> AsyncGenerator[ModelEvent, None]:
        """Nothing is sent until the first `__anext__`; close it with `aclose()` (or
        `contextlib.aclosing`) when you stop early, so the connection closes at once."""
        return exchange(self.http, self.config, self.codec, request, call)


def base_url(config: AgentConfig) -> str:
    return config.base_url.rstrip("/")
