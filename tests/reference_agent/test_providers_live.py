"""Every provider client against the real fake provider over loopback sockets.

The socket ledger, not the client, is the witness: a cancel must show up there as a
client-side close within 100 ms (INCIDENTS.md I1), and our own forced close (I5) must
surface as `StreamBrokenError` while the connection is seen closed by the client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
import pytest

from fake_providers import FakeProvider
from fake_providers.content import default_text
from fake_providers.ledger import Closer, now_ns
from reference_agent.config import AgentConfig
from reference_agent.model import Message, Usage
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    ProviderClient,
    StaleStreamError,
    StreamBrokenError,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
    make_client,
    make_http_client,
)

pytestmark = pytest.mark.anyio

URL_KIND = {
    "openai-chat": "openai",
    "openai-responses": "openai",
    "anthropic": "anthropic",
    "azure": "azure",
    "gemini": "gemini",
}
# hang-after=N leaves the stream silent right after its second text delta.
HANG_AFTER_TWO_TEXTS = {
    "openai-chat": 3, "azure": 4, "anthropic": 5, "openai-responses": 6, "gemini": 2,
}  # fmt: skip
PATHS = {  # streamed, then not
    "openai-chat": ("/v1/chat/completions",) * 2,
    "openai-responses": ("/v1/responses",) * 2,
    "anthropic": ("/v1/messages",) * 2,
    "azure": ("/openai/deployments/gpt-4o/chat/completions",) * 2,
    "gemini": (
        "/v1beta/models/gpt-4o:streamGenerateContent",
        "/v1beta/models/gpt-4o:generateContent",
    ),
}
KINDS = pytest.mark.parametrize("kind", list(URL_KIND))
WEATHER = ToolSpec(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
REQUEST = ModelRequest(
    messages=(Message("user", "What is the weather in Paris?"),),
    system="Be brief.",
    tools=(WEATHER,),
)


@asynccontextmanager
async def client_for(
    provider: FakeProvider, kind: str, **settings: object
) -> AsyncIterator[ProviderClient]:
    config = AgentConfig(
        provider=kind,
        base_url=provider.url(URL_KIND[kind]),
        api_key="sk-test",
        model="gpt-4o",
        stale_timeout=2.0,
    ).with_(**settings)
    async with make_http_client(config) as http:
        yield make_client(config, http)


async def collect(
    provider: FakeProvider, kind: str, request: ModelRequest = REQUEST, **settings: object
) -> list[ModelEvent]:
    async with client_for(provider, kind, **settings) as client:
        return [event async for event in client.attempt(request, CallHandle())]


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@KINDS
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_text_usage_and_finish(provider: FakeProvider, kind: str, stream: bool) -> None:
    provider.add_fault("tokens=5")
    request = ModelRequest(REQUEST.messages, REQUEST.system, REQUEST.tools, stream=stream)
    events = await collect(provider, kind, request)
    record = provider.ledger.requests()[-1]
    assert text_of(events) == "".join(default_text(5))
    assert events[-1] == Finished("stop", Usage(max(1, record.body_size // 4), 5))
    assert record.path == PATHS[kind][0 if stream else 1]
    assert record.header("x-agent-purpose") == "turn"
    assert record.stream is stream


@KINDS
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_tool_call_and_length(provider: FakeProvider, kind: str, stream: bool) -> None:
    provider.add_fault("tokens=2,tool=get_weather", times=1)
    request = ModelRequest(REQUEST.messages, REQUEST.system, REQUEST.tools, stream=stream)
    events = await collect(provider, kind, request)
    (call,) = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert (call.name, call.arguments) == ("get_weather", {})
    # Gemini sends no call id (older models): the client makes up a local one.
    assert call.id.startswith("gemini-local-" if kind == "gemini" else "call_get_weather_1")
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "tool_calls"

    short = ModelRequest(REQUEST.messages, max_tokens=3, stream=stream)
    events = await collect(provider, kind, short)
    assert text_of(events) == "".join(default_text(3))
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "length"


@KINDS
async def test_purpose_header_lets_rules_single_out_a_call(
    provider: FakeProvider, kind: str
) -> None:
    provider.add_fault("header=x-agent-purpose:compaction,status=400")
    request = ModelRequest(REQUEST.messages, purpose="compaction")
    with pytest.raises(FatalProviderError, match="HTTP 400") as caught:
        await collect(provider, kind, request)
    assert caught.value.status == 400
    events = await collect(provider, kind, ModelRequest(REQUEST.messages, max_tokens=2))
    assert isinstance(events[-1], Finished)


@KINDS
async def test_retryable_status_carries_retry_after(provider: FakeProvider, kind: str) -> None:
    provider.add_fault("status=429,retry-after-ms=5")
    with pytest.raises(TransientProviderError) as caught:
        await collect(provider, kind)
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(0.005)
    assert not isinstance(caught.value, StreamBrokenError)


@KINDS
@pytest.mark.parametrize("fault", ["reset-after=3", "close-after=3"])
async def test_dropped_stream_is_stream_broken(
    provider: FakeProvider, kind: str, fault: str
) -> None:
    provider.add_fault(fault)
    with pytest.raises(StreamBrokenError):
        await collect(provider, kind)


@KINDS
async def test_in_stream_error_is_transient(provider: FakeProvider, kind: str) -> None:
    provider.add_fault("error-after=3")
    with pytest.raises(TransientProviderError) as caught:
        await collect(provider, kind)
    assert type(caught.value) is TransientProviderError


@KINDS
async def test_malformed_event_is_fatal(provider: FakeProvider, kind: str) -> None:
    provider.add_fault(f"malformed-after={HANG_AFTER_TWO_TEXTS[kind]}")
    with pytest.raises(FatalProviderError, match="malformed"):
        await collect(provider, kind)


@KINDS
@pytest.mark.parametrize("fault", ["hang-after=3", "hang-before-headers"])
async def test_silent_provider_is_stale(provider: FakeProvider, kind: str, fault: str) -> None:
    provider.add_fault(fault)
    t = now_ns()
    with pytest.raises(StaleStreamError):
        await collect(provider, kind, stale_timeout=0.05, connect_timeout=0.05)
    assert (now_ns() - t) / 1e9 < 1.0
    await provider.ledger.wait_for(lambda ledger: ledger.closed_by_client_within(t, 1.0), 2)


@KINDS
async def test_cancelled_scope_closes_the_connection_at_once(
    provider: FakeProvider, kind: str
) -> None:
    """THE I1 check: the cancel reaches the socket, not just the loop around it."""
    provider.add_fault(f"hang-after={HANG_AFTER_TWO_TEXTS[kind]}")
    call = CallHandle()
    texts = 0
    t = 0
    async with client_for(provider, kind) as client:
        with anyio.CancelScope() as scope:
            async for event in client.attempt(REQUEST, call):
                assert call.response is not None
                texts += isinstance(event, TextDelta)
                if texts == 2:
                    t = now_ns()
                    scope.cancel()
        assert scope.cancelled_caught
        assert call.response is None
        assert call.attempts == 1
        closed = await provider.ledger.wait_for(
            lambda ledger: ledger.closed_by_client_within(t, 0.1), 2
        )
        assert closed.closed_by is Closer.CLIENT


@KINDS
async def test_aclose_mid_stream_closes_the_connection(provider: FakeProvider, kind: str) -> None:
    provider.add_fault(f"hang-after={HANG_AFTER_TWO_TEXTS[kind]}")
    call = CallHandle()
    async with client_for(provider, kind) as client:
        attempt = client.attempt(REQUEST, call)
        assert isinstance(attempt, AsyncGenerator)  # so the engine can `aclosing()` it
        async with aclosing(attempt) as events:
            texts = 0
            async for event in events:
                texts += isinstance(event, TextDelta)
                if texts == 2:
                    break
            t = now_ns()
        assert call.response is None
        await provider.ledger.wait_for(lambda ledger: ledger.closed_by_client_within(t, 0.1), 2)


@KINDS
async def test_force_close_from_another_task_breaks_the_stream(
    provider: FakeProvider, kind: str
) -> None:
    """I5: our own close raises `StreamBrokenError`; the flag, not the client, tells why."""
    provider.add_fault(f"hang-after={HANG_AFTER_TWO_TEXTS[kind]}")
    call = CallHandle()
    streaming = anyio.Event()
    t = 0
    caught: list[BaseException] = []

    async def consume(client: ProviderClient) -> None:
        try:
            async for event in client.attempt(REQUEST, call):
                if isinstance(event, TextDelta):
                    streaming.set()
        except StreamBrokenError as exc:
            caught.append(exc)

    async with client_for(provider, kind) as client, anyio.create_task_group() as tg:
        tg.start_soon(consume, client)
        await streaming.wait()
        t = now_ns()
        await call.force_close()
    assert len(caught) == 1
    assert call.cancelled
    assert call.response is None
    await provider.ledger.wait_for(lambda ledger: ledger.closed_by_client_within(t, 0.1), 2)


async def test_force_close_between_reads_breaks_the_next_read(provider: FakeProvider) -> None:
    provider.add_fault(f"hang-after={HANG_AFTER_TWO_TEXTS['openai-chat']}")
    call = CallHandle()
    async with client_for(provider, "openai-chat") as client:
        with pytest.raises(StreamBrokenError):
            async for event in client.attempt(REQUEST, call):
                if isinstance(event, TextDelta) and not call.cancelled:
                    t = now_ns()
                    await call.force_close()
    await provider.ledger.wait_for(lambda ledger: ledger.closed_by_client_within(t, 0.1), 2)


async def test_tls_with_ca_file() -> None:
    async with FakeProvider(tls=True) as provider:
        assert provider.tls is not None
        events = await collect(
            provider, "openai-chat", ModelRequest(REQUEST.messages, max_tokens=2),
            ca_file=str(provider.tls.ca_path),
        )  # fmt: skip
    assert text_of(events) == "".join(default_text(2))


async def test_connection_is_reused_after_a_complete_stream(provider: FakeProvider) -> None:
    request = ModelRequest(REQUEST.messages, max_tokens=2)
    async with client_for(provider, "anthropic") as client:
        call = CallHandle()
        for _ in range(3):
            async for _event in client.attempt(request, call):
                pass
    assert call.attempts == 3
    assert len(provider.ledger.connections()) == 1
