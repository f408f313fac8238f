"""The official `anthropic` SDK (sync and async) against a real FakeProvider over loopback.

Messages non-streamed, streamed raw (`create(stream=True)`) and through the `messages.stream`
helper: what a user reads (text, tool_use, usage, stop_reason), the SDK's exception for each
error status and for the in-stream error event, and that closing a stream mid-way shows up
in the socket ledger as a client close.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from fake_providers import Closer, FakeProvider, Outcome
from fake_providers.content import DEFAULT_TOKENS, default_text
from fake_providers.ledger import ConnectionRecord, Ledger, RequestRecord

MODEL = "claude-haiku-4-5"
MESSAGES: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
MAX_TOKENS = 1024

# The plans here hang: the server never closes, so a client close at any time after the
# close call is that call's doing. The bound only stops a broken test, and no stall of a
# loaded machine can reach it.
CLOSED_SOON = 5.0


def words(n: int) -> str:
    return "".join(default_text(n))


@dataclass(frozen=True)
class Case:
    """One fake completion and what the Messages API must show for it."""

    spec: str | None
    max_tokens: int
    text: str
    tools: tuple[str, ...]
    output_tokens: int
    stop_reason: str

    @property
    def tool_uses(self) -> list[tuple[str, str, object]]:
        return [(f"call_{name}_{i}", name, {}) for i, name in enumerate(self.tools, 1)]


CASES = {
    "end_turn": Case(None, MAX_TOKENS, words(DEFAULT_TOKENS), (), DEFAULT_TOKENS, "end_turn"),
    "max_tokens": Case(None, 5, words(5), (), 5, "max_tokens"),
    # A tool call's `{}` input counts as one output token.
    "tool_use": Case("tokens=3,tool=get_weather", MAX_TOKENS, words(3), ("get_weather",), 4,
                     "tool_use"),
    "tool_only": Case("tokens=0,tool=get_weather", MAX_TOKENS, "", ("get_weather",), 1,
                      "tool_use"),
}  # fmt: skip
CASE_PARAMS = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
MODES = pytest.mark.parametrize("mode", ["create", "raw-stream", "stream-helper"])


@dataclass(frozen=True)
class Seen:
    """What a user got from one call, however it was made."""

    text: str
    tool_uses: list[tuple[str, str, object]]
    stop_reason: str | None
    input_tokens: int
    output_tokens: int


def from_message(message: Any) -> Seen:
    return Seen(
        text="".join(b.text for b in message.content if b.type == "text"),
        tool_uses=[(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"],
        stop_reason=message.stop_reason,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
    )


def from_events(events: list[Any]) -> Seen:
    """Fold raw stream events the way an agent without the helper would."""
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in types  # the SDK swallows pings
    text, tools, partial = "", [], {}
    for event in events:
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            tools.append((event.index, event.content_block.id, event.content_block.name))
            partial[event.index] = ""
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial[event.index] += event.delta.partial_json
    delta = events[-2]
    return Seen(
        text=text,
        tool_uses=[(i, name, json.loads(partial[index])) for index, i, name in tools],
        stop_reason=delta.delta.stop_reason,
        input_tokens=events[0].message.usage.input_tokens,
        output_tokens=delta.usage.output_tokens,
    )


def check(seen: Seen, case: Case, req: RequestRecord) -> None:
    assert seen.text == case.text
    assert seen.tool_uses == case.tool_uses
    assert seen.stop_reason == case.stop_reason
    assert seen.output_tokens == case.output_tokens
    # The fake provider counts one prompt token per four request bytes.
    assert seen.input_tokens == max(1, req.body_size // 4)
    assert req.kind == "anthropic" and req.model == MODEL


def finished_request(ledger: Ledger) -> RequestRecord | None:
    req = ledger.requests()[-1]
    return req if req.outcome is not None else None


# ------------------------------------------------------------------------- clients


@pytest.fixture
def client(threaded_provider: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=threaded_provider.url("anthropic"), api_key="sk-ant-test", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(provider: FakeProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=provider.url("anthropic"), api_key="sk-ant-test", max_retries=0
    ) as sdk:
        yield sdk


def call_sync(client: anthropic.Anthropic, mode: str, case: Case) -> Seen:
    kwargs: Any = {"model": MODEL, "max_tokens": case.max_tokens, "messages": MESSAGES}
    if mode == "create":
        return from_message(client.messages.create(**kwargs))
    if mode == "raw-stream":
        with client.messages.create(stream=True, **kwargs) as stream:
            return from_events(list(stream))
    with client.messages.stream(**kwargs) as helper:
        text = "".join(helper.text_stream)
        seen = from_message(helper.get_final_message())
    assert text == seen.text
    return seen


async def call_async(client: anthropic.AsyncAnthropic, mode: str, case: Case) -> Seen:
    kwargs: Any = {"model": MODEL, "max_tokens": case.max_tokens, "messages": MESSAGES}
    if mode == "create":
        return from_message(await client.messages.create(**kwargs))
    if mode == "raw-stream":
        async with await client.messages.create(stream=True, **kwargs) as stream:
            return from_events([event async for event in stream])
    async with client.messages.stream(**kwargs) as helper:
        text = "".join([chunk async for chunk in helper.text_stream])
        seen = from_message(await helper.get_final_message())
    assert text == seen.text
    return seen


# ------------------------------------------------------------------------ content


@MODES
@CASE_PARAMS
def test_sync_messages(
    threaded_provider: FakeProvider, client: anthropic.Anthropic, mode: str, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    seen = call_sync(client, mode, case)
    req = threaded_provider.ledger.wait_for_blocking(finished_request, timeout=2)
    check(seen, case, req)
    assert req.stream is (mode != "create")
    assert req.outcome is Outcome.COMPLETE


@pytest.mark.anyio
@MODES
@CASE_PARAMS
async def test_async_messages(
    provider: FakeProvider, aclient: anthropic.AsyncAnthropic, mode: str, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    seen = await call_async(aclient, mode, case)
    req = await provider.ledger.wait_for(finished_request, timeout=2)
    check(seen, case, req)
    assert req.stream is (mode != "create")
    assert req.outcome is Outcome.COMPLETE


# ------------------------------------------------------------------------ errors

STATUS_ERRORS = pytest.mark.parametrize(
    ("status", "exc_type", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
    ids=["400", "404", "429", "500", "529"],
)


@STATUS_ERRORS
def test_sync_error_status_raises_the_sdk_exception(
    threaded_provider: FakeProvider,
    client: anthropic.Anthropic,
    status: int,
    exc_type: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    threaded_provider.add_fault(f"status={status}")
    with (
        pytest.raises(exc_type) as caught,
        client.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES),
    ):
        pytest.fail("the stream helper should raise on entry")
    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert "injected fault" in (caught.value.api_message or "")
    assert [r.status for r in threaded_provider.ledger.requests()] == [status]


@pytest.mark.anyio
@STATUS_ERRORS
async def test_async_error_status_raises_the_sdk_exception(
    provider: FakeProvider,
    aclient: anthropic.AsyncAnthropic,
    status: int,
    exc_type: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    provider.add_fault(f"status={status}")
    with pytest.raises(exc_type) as caught:
        await aclient.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES)
    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert [r.status for r in provider.ledger.requests()] == [status]


def check_in_stream_error(exc: anthropic.APIStatusError) -> None:
    # The SDK picks the class by HTTP status, and a mid-stream error arrives on a 200, so an
    # `overloaded_error` event raises the base APIStatusError, not OverloadedError.
    assert type(exc) is anthropic.APIStatusError
    assert exc.status_code == 200
    assert exc.type == "overloaded_error"
    assert "injected fault" in (exc.api_message or "")


def test_sync_in_stream_error_raises_api_status_error(
    threaded_provider: FakeProvider, client: anthropic.Anthropic
) -> None:
    threaded_provider.add_fault("error-after=4")
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream = client.messages.create(
            model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, stream=True
        )
        received.extend(event.type for event in stream)
    check_in_stream_error(caught.value)
    assert received == ["message_start", "content_block_start", "content_block_delta"]
    req = threaded_provider.ledger.wait_for_blocking(finished_request, timeout=2)
    assert req.outcome is Outcome.STREAM_ERROR


@pytest.mark.anyio
async def test_async_in_stream_error_raises_from_the_stream_helper(
    provider: FakeProvider, aclient: anthropic.AsyncAnthropic
) -> None:
    provider.add_fault("error-after=3")
    async with aclient.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES
    ) as helper:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await helper.get_final_message()
    check_in_stream_error(caught.value)


# ----------------------------------------------------------- closing a stream early

# The third wire event is a ping the SDK swallows, so reading 3 events takes 4 from the wire.
CLOSE_PLANS = pytest.mark.parametrize(
    ("spec", "most"), [("hang-after=4", 4), ("pace=10ms,hang-after=5", 5)], ids=["hang", "paced"]
)
READ = 3
PINGS = 1


def check_closed(conn: ConnectionRecord, most: int) -> None:
    assert conn.closed_by is Closer.CLIENT
    assert READ + PINGS <= conn.events_sent <= most
    assert [r.stream for r in conn.requests] == [True]


@CLOSE_PLANS
@pytest.mark.parametrize("helper", [False, True], ids=["raw-stream", "stream-helper"])
def test_sync_stream_close_is_a_client_close(
    threaded_provider: FakeProvider, client: anthropic.Anthropic, spec: str, most: int, helper: bool
) -> None:
    threaded_provider.add_fault(spec)
    kwargs: Any = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": MESSAGES}
    if helper:
        with client.messages.stream(**kwargs) as stream:
            seen = [next(stream).type for _ in range(READ)]
            t = time.monotonic_ns()
    else:
        raw = client.messages.create(stream=True, **kwargs)
        seen = [next(raw).type for _ in range(READ)]
        t = time.monotonic_ns()
        raw.close()
    conn = threaded_provider.ledger.wait_for_blocking(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), timeout=CLOSED_SOON
    )
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    check_closed(conn, most)
    req = threaded_provider.ledger.wait_for_blocking(finished_request, timeout=2)
    assert req.outcome is Outcome.CLIENT_CLOSED


@pytest.mark.anyio
@CLOSE_PLANS
@pytest.mark.parametrize("helper", [False, True], ids=["raw-stream", "stream-helper"])
async def test_async_stream_close_is_a_client_close(
    provider: FakeProvider,
    aclient: anthropic.AsyncAnthropic,
    spec: str,
    most: int,
    helper: bool,
) -> None:
    provider.add_fault(spec)
    kwargs: Any = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": MESSAGES}
    if helper:
        async with aclient.messages.stream(**kwargs) as stream:
            seen = [(await stream.__anext__()).type for _ in range(READ)]
            t = time.monotonic_ns()
    else:
        raw = await aclient.messages.create(stream=True, **kwargs)
        seen = [(await raw.__anext__()).type for _ in range(READ)]
        t = time.monotonic_ns()
        await raw.close()
    conn = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), timeout=CLOSED_SOON
    )
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    check_closed(conn, most)
    req = await provider.ledger.wait_for(finished_request, timeout=2)
    assert req.outcome is Outcome.CLIENT_CLOSED
