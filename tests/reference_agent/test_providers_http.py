"""The shared HTTP layer, through the chat client and respx: error mapping, stale timeout,
transport failures, and the call handle's bookkeeping. No sockets here (see *_live)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import anyio
import httpcore
import httpx
import pytest
import respx

from reference_agent.config import AgentConfig
from reference_agent.model import Message
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    ProviderError,
    StaleStreamError,
    StreamBrokenError,
    TextDelta,
    TransientProviderError,
    make_client,
    make_http_client,
)
from reference_agent.providers.http import error_message, parse_retry_after

URL = "https://api.test/v1/chat/completions"
CONFIG = AgentConfig(base_url="https://api.test/v1/", api_key="sk-test", stale_timeout=5.0)
REQUEST = ModelRequest(messages=(Message("user", "hi"),), purpose="memory")
TEXT = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
SSE = {"content-type": "text/event-stream"}


class Chunks(httpx.AsyncByteStream):
    """A body that yields `chunks`, then fails with `error` or stalls until `release` is set."""

    def __init__(
        self,
        *chunks: bytes,
        error: Exception | None = None,
        release: anyio.Event | None = None,
    ) -> None:
        self.chunks = chunks
        self.error = error
        self.release = release
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


async def run(
    call: CallHandle | None = None, config: AgentConfig = CONFIG, request: ModelRequest = REQUEST
) -> list[ModelEvent]:
    async with make_http_client(config) as http:
        client = make_client(config, http)
        return [event async for event in client.attempt(request, call or CallHandle())]


# ------------------------------------------------------------------------ pure helpers


def test_retry_after_prefers_milliseconds() -> None:
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})
    assert parse_retry_after(headers) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("-1", None), ("x", None)],
)
def test_retry_after_seconds_or_http_date(value: str, expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert parse_retry_after(httpx.Headers({"retry-after": value}), now=now) == expected


def test_retry_after_absent_or_bad_ms_falls_back() -> None:
    assert parse_retry_after(httpx.Headers()) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "soon", "retry-after": "3"})) == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":{"message":"Bad key","type":"invalid_request_error"}}', "Bad key"),
        (b'{"type":"error","error":{"type":"not_found_error","message":"No model"}}', "No model"),
        (b'{"error":"plain"}', "plain"),
        (b'{"message":"top"}', "top"),
        (b"<html>gateway</html>", "<html>gateway</html>"),
        (b"", "(empty body)"),
    ],
)
def test_error_message_extraction(body: bytes, message: str) -> None:
    assert error_message(body) == message


@pytest.mark.anyio
async def test_http_client_has_no_read_timeout() -> None:
    async with make_http_client(CONFIG.with_(connect_timeout=3.0)) as http:
        assert http.timeout.connect == 3.0
        assert http.timeout.read is None


# ----------------------------------------------------------------------- status mapping


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 529])
async def test_retryable_statuses_are_transient(status: int) -> None:
    with respx.mock() as router:
        router.post(URL).respond(status, headers={"retry-after": "7"}, json={"error": {}})
        with pytest.raises(TransientProviderError) as caught:
            await run()
    assert type(caught.value) is TransientProviderError
    assert (caught.value.status, caught.value.retry_after) == (status, 7.0)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_client_errors_are_fatal_with_the_providers_message(status: int) -> None:
    body = {"error": {"message": "You did it wrong", "type": "invalid_request_error"}}
    with respx.mock() as router:
        router.post(URL).respond(status, json=body)
        with pytest.raises(FatalProviderError, match=f"HTTP {status}: You did it wrong") as caught:
            await run()
    assert caught.value.status == status


# ------------------------------------------------------------------- transport failures


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_connect_failures_are_transient_not_broken(error: type[Exception]) -> None:
    with respx.mock() as router:
        router.post(URL).mock(side_effect=error)
        with pytest.raises(TransientProviderError) as caught:
            await run()
    assert not isinstance(caught.value, StreamBrokenError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [
        httpcore.ReadError("reset"),
        httpcore.RemoteProtocolError("incomplete chunked read"),
        httpcore.ReadTimeout("read"),
        anyio.BrokenResourceError(),
        anyio.ClosedResourceError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_failures_mid_body_are_stream_broken(error: Exception) -> None:
    seen: list[ModelEvent] = []
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, stream=Chunks(TEXT, error=error))
        with pytest.raises(StreamBrokenError):
            async with make_http_client(CONFIG) as http:
                async for event in make_client(CONFIG, http).attempt(REQUEST, CallHandle()):
                    seen.append(event)
    assert seen == [TextDelta("Hi")]


@pytest.mark.anyio
async def test_a_body_that_ends_before_done_is_stream_broken() -> None:
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, stream=Chunks(TEXT))
        with pytest.raises(StreamBrokenError, match="ended before"):
            await run()


# ---------------------------------------------------------------------------- staleness


@pytest.mark.anyio
async def test_a_stalled_stream_is_stale_quickly() -> None:
    never = anyio.Event()
    body = Chunks(TEXT, release=never)
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, stream=body)
        with anyio.fail_after(2), pytest.raises(StaleStreamError):
            await run(config=CONFIG.with_(stale_timeout=0.05))


@pytest.mark.anyio
async def test_headers_that_never_come_are_stale() -> None:
    never = anyio.Event()

    async def stall(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    with respx.mock(assert_all_called=False) as router:  # a call counts once answered
        router.post(URL).mock(side_effect=stall)
        with anyio.fail_after(2), pytest.raises(StaleStreamError, match="headers"):
            await run(config=CONFIG.with_(stale_timeout=0.05, connect_timeout=0.05))


# ------------------------------------------------------------------ call handle, cancel


@pytest.mark.anyio
async def test_call_handle_bookkeeping_and_purpose_header() -> None:
    call = CallHandle()
    with respx.mock() as router:
        route = router.post(URL).respond(200, headers=SSE, content=TEXT + END)
        async with make_http_client(CONFIG) as http:
            async for _event in make_client(CONFIG, http).attempt(REQUEST, call):
                assert call.response is not None and not call.response.is_closed
        await run(call)
    assert call.response is None
    assert call.attempts == 2
    sent = route.calls.last.request
    assert sent.headers["x-agent-purpose"] == "memory"
    assert sent.headers["accept"] == "text/event-stream"


@pytest.mark.anyio
async def test_cancellation_propagates_and_closes_the_response() -> None:
    never = anyio.Event()
    body = Chunks(TEXT, release=never)
    call = CallHandle()
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, stream=body)
        async with make_http_client(CONFIG) as http:
            with anyio.CancelScope() as scope:
                async for event in make_client(CONFIG, http).attempt(REQUEST, call):
                    assert event == TextDelta("Hi")
                    scope.cancel()
    assert scope.cancelled_caught  # the cancel reached us: nobody swallowed it
    assert body.closed
    assert call.response is None


@pytest.mark.anyio
async def test_nothing_is_sent_until_iterated() -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(URL).respond(200, headers=SSE, content=TEXT + END)
        async with make_http_client(CONFIG) as http:
            events = make_client(CONFIG, http).attempt(REQUEST, CallHandle())
            assert isinstance(events, AsyncGenerator)
            await events.aclose()
    assert not route.called


# -------------------------------------------------------------------- malformed answers


@pytest.mark.anyio
@pytest.mark.parametrize(
    "raw",
    [b'data: {"choices":[{"delta":{"content":"tru\n\n', b"data: [1, 2]\n\n"],
    ids=["truncated-json", "wrong-shape"],
)
async def test_malformed_events_are_fatal(raw: bytes) -> None:
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=TEXT + raw + END)
        with pytest.raises(FatalProviderError):
            await run()


@pytest.mark.anyio
async def test_json_answer_to_a_stream_request_is_decoded_as_a_body() -> None:
    body = {
        "choices": [{"index": 0, "message": {"content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    with respx.mock() as router:
        router.post(URL).respond(200, json=body)
        events = await run()
    assert events[0] == TextDelta("Hi")
    assert isinstance(events[-1], Finished)
    assert (events[-1].usage.input_tokens, events[-1].usage.output_tokens) == (3, 1)


def test_provider_errors_keep_their_hierarchy() -> None:
    assert issubclass(StaleStreamError, TransientProviderError)
    assert issubclass(StreamBrokenError, TransientProviderError)
    assert not issubclass(FatalProviderError, TransientProviderError)
    assert issubclass(TransientProviderError, ProviderError)
