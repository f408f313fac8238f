"""The official `openai` SDK (sync and async) against a real FakeProvider over loopback.

Chat Completions, the Responses API and Azure OpenAI, streamed and not: what a user reads
(text, tool calls, usage, finish reasons), the SDK's exception for each error status, and
that closing a stream mid-way shows up in the socket ledger as a client close.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from fake_providers import Closer, FakeProvider, Outcome
from fake_providers.content import DEFAULT_TOKENS, default_text
from fake_providers.ledger import Ledger, RequestRecord

MODEL = "gpt-4o"
DEPLOYMENT = "my-deployment"
API_VERSION = "2024-10-21"
MESSAGES: Any = [{"role": "user", "content": "What is the weather in Paris?"}]

# The plans here hang: the server never closes, so a client close at any time after the
# close call is that call's doing. The bound only stops a broken test, and no stall of a
# loaded machine can reach it.
CLOSED_SOON = 5.0


def words(n: int) -> str:
    return "".join(default_text(n))


@dataclass(frozen=True)
class Case:
    """One fake completion and what every OpenAI surface must show for it."""

    spec: str | None
    max_tokens: int | None
    text: str
    tools: tuple[str, ...]
    output_tokens: int
    finish: str  # Chat Completions finish_reason
    status: str  # Responses API status

    @property
    def tool_ids(self) -> tuple[str, ...]:
        return tuple(f"call_{name}_{i}" for i, name in enumerate(self.tools, 1))


CASES = {
    "stop": Case(None, None, words(DEFAULT_TOKENS), (), DEFAULT_TOKENS, "stop", "completed"),
    "length": Case(None, 5, words(5), (), 5, "length", "incomplete"),
    # A tool call's `{}` arguments count as one output token.
    "tool_calls": Case("tokens=3,tool=get_weather", None, words(3), ("get_weather",), 4,
                       "tool_calls", "completed"),
}  # fmt: skip
CASE_PARAMS = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


def last_request(ledger: Ledger) -> RequestRecord:
    return ledger.requests()[-1]


def input_tokens(req: RequestRecord) -> int:
    """The fake provider counts one prompt token per four request bytes."""
    return max(1, req.body_size // 4)


def token_limit(case: Case) -> dict[str, int]:
    return {} if case.max_tokens is None else {"max_tokens": case.max_tokens}


def output_limit(case: Case) -> dict[str, int]:
    return {} if case.max_tokens is None else {"max_output_tokens": case.max_tokens}


# ------------------------------------------------------------------------- clients


@pytest.fixture
def client(threaded_provider: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=threaded_provider.url("openai"), api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(provider: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=provider.url("openai"), api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
def azure(threaded_provider: FakeProvider) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(
        azure_endpoint=threaded_provider.url("azure"),
        api_version=API_VERSION,
        api_key="azure-key",
        max_retries=0,
    ) as sdk:
        yield sdk


@pytest.fixture
async def aazure(provider: FakeProvider) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=provider.url("azure"),
        api_version=API_VERSION,
        api_key="azure-key",
        max_retries=0,
    ) as sdk:
        yield sdk


# --------------------------------------------------------- chat completions checks


def check_chat_completion(completion: Any, case: Case, req: RequestRecord) -> None:
    choice = completion.choices[0]
    assert choice.finish_reason == case.finish
    assert (choice.message.content or "") == case.text
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        (i, n, "{}") for i, n in zip(case.tool_ids, case.tools, strict=True)
    ]
    assert completion.usage.completion_tokens == case.output_tokens
    assert completion.usage.prompt_tokens == input_tokens(req)
    assert completion.usage.total_tokens == case.output_tokens + input_tokens(req)


def check_chat_chunks(chunks: list[Any], case: Case, req: RequestRecord) -> None:
    """Fold streamed chunks as a user would, then check text, tools, finish and usage."""
    text, finishes, usages = "", [], []
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                got = calls.setdefault(call.index, ["", "", ""])
                got[0] += call.id or ""
                got[1] += (call.function and call.function.name) or ""
                got[2] += (call.function and call.function.arguments) or ""
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
    assert text == case.text
    assert finishes == [case.finish]
    assert [tuple(calls[i]) for i in sorted(calls)] == [
        (i, n, "{}") for i, n in zip(case.tool_ids, case.tools, strict=True)
    ]
    # stream_options.include_usage: one final chunk, without choices, carries the usage.
    assert len(usages) == 1 and chunks[-1].usage is usages[0] and not chunks[-1].choices
    assert usages[0].completion_tokens == case.output_tokens
    assert usages[0].prompt_tokens == input_tokens(req)
    assert req.outcome is Outcome.COMPLETE


@CASE_PARAMS
def test_chat_sync_non_stream(
    threaded_provider: FakeProvider, client: openai.OpenAI, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, **token_limit(case))
    assert completion.model == MODEL
    check_chat_completion(completion, case, last_request(threaded_provider.ledger))


@CASE_PARAMS
def test_chat_sync_stream(
    threaded_provider: FakeProvider, client: openai.OpenAI, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **token_limit(case),
    )
    with stream:
        chunks = list(stream)
    req = threaded_provider.ledger.wait_for_blocking(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    check_chat_chunks(chunks, case, req)


@pytest.mark.anyio
@CASE_PARAMS
async def test_chat_async_non_stream(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    completion = await aclient.chat.completions.create(
        model=MODEL, messages=MESSAGES, **token_limit(case)
    )
    check_chat_completion(completion, case, last_request(provider.ledger))


@pytest.mark.anyio
@CASE_PARAMS
async def test_chat_async_stream(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    stream = await aclient.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **token_limit(case),
    )
    async with stream:
        chunks = [chunk async for chunk in stream]
    req = await provider.ledger.wait_for(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    check_chat_chunks(chunks, case, req)


@pytest.mark.anyio
async def test_chat_stream_helper_final_completion(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    case = CASES["tool_calls"]
    provider.add_fault(case.spec or "")
    async with aclient.chat.completions.stream(
        model=MODEL, messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        final = await stream.get_final_completion()
    check_chat_completion(final, case, last_request(provider.ledger))


# ------------------------------------------------------------------ responses API


def check_response(response: Any, case: Case, req: RequestRecord) -> None:
    assert response.status == case.status
    assert response.output_text == case.text
    if case.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        (i, n, "{}") for i, n in zip(case.tool_ids, case.tools, strict=True)
    ]
    assert response.usage.output_tokens == case.output_tokens
    assert response.usage.input_tokens == input_tokens(req)


def check_response_events(events: list[Any], case: Case, req: RequestRecord) -> None:
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == f"response.{case.status}"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == case.text
    names = [
        e.item.name
        for e in events
        if e.type == "response.output_item.done" and e.item.type == "function_call"
    ]
    assert names == list(case.tools)
    check_response(events[-1].response, case, req)


@CASE_PARAMS
def test_responses_sync_non_stream(
    threaded_provider: FakeProvider, client: openai.OpenAI, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    response = client.responses.create(model=MODEL, input="Weather?", **output_limit(case))
    check_response(response, case, last_request(threaded_provider.ledger))


@CASE_PARAMS
def test_responses_sync_stream(
    threaded_provider: FakeProvider, client: openai.OpenAI, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    stream = client.responses.create(
        model=MODEL, input="Weather?", stream=True, **output_limit(case)
    )
    with stream:
        events = list(stream)
    check_response_events(events, case, last_request(threaded_provider.ledger))


@pytest.mark.anyio
@CASE_PARAMS
async def test_responses_async_non_stream(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    response = await aclient.responses.create(model=MODEL, input="Weather?", **output_limit(case))
    check_response(response, case, last_request(provider.ledger))


@pytest.mark.anyio
@CASE_PARAMS
async def test_responses_async_stream(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    stream = await aclient.responses.create(
        model=MODEL, input="Weather?", stream=True, **output_limit(case)
    )
    async with stream:
        events = [event async for event in stream]
    check_response_events(events, case, last_request(provider.ledger))


@pytest.mark.anyio
@pytest.mark.parametrize("case", [CASES["stop"], CASES["tool_calls"]], ids=["stop", "tool_calls"])
async def test_responses_stream_helper_final_response(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    async with aclient.responses.stream(model=MODEL, input="Weather?") as stream:
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        final = await stream.get_final_response()
    assert text == case.text
    check_response(final, case, last_request(provider.ledger))


# ------------------------------------------------------------------------- azure


def check_azure_request(req: RequestRecord) -> None:
    assert req.kind == "azure"
    assert req.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert f"api-version={API_VERSION}" in req.query
    assert req.header("api-key") == "[redacted]"


@CASE_PARAMS
def test_azure_sync_stream(
    threaded_provider: FakeProvider, azure: openai.AzureOpenAI, case: Case
) -> None:
    if case.spec:
        threaded_provider.add_fault(case.spec)
    stream = azure.chat.completions.create(
        model=DEPLOYMENT,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **token_limit(case),
    )
    with stream:
        chunks = list(stream)
    # Azure opens with a choice-less chunk that carries only the prompt filter verdict.
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results
    req = threaded_provider.ledger.wait_for_blocking(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    check_azure_request(req)
    check_chat_chunks(chunks, case, req)
    assert chunks[1].model == DEPLOYMENT


@pytest.mark.anyio
@CASE_PARAMS
async def test_azure_async_stream(
    provider: FakeProvider, aazure: openai.AsyncAzureOpenAI, case: Case
) -> None:
    if case.spec:
        provider.add_fault(case.spec)
    stream = await aazure.chat.completions.create(
        model=DEPLOYMENT,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **token_limit(case),
    )
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results
    req = await provider.ledger.wait_for(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    check_azure_request(req)
    check_chat_chunks(chunks, case, req)


@pytest.mark.anyio
async def test_azure_async_non_stream(
    provider: FakeProvider, aazure: openai.AsyncAzureOpenAI
) -> None:
    completion = await aazure.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    req = last_request(provider.ledger)
    check_azure_request(req)
    check_chat_completion(completion, CASES["stop"], req)


# ------------------------------------------------------------------------ errors

STATUS_ERRORS = pytest.mark.parametrize(
    ("status", "exc_type", "code"),
    [
        (400, openai.BadRequestError, None),
        (404, openai.NotFoundError, "model_not_found"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, None),
    ],
    ids=["400", "404", "429", "500"],
)


@STATUS_ERRORS
def test_sync_error_status_raises_the_sdk_exception(
    threaded_provider: FakeProvider,
    client: openai.OpenAI,
    status: int,
    exc_type: type[openai.APIStatusError],
    code: str | None,
) -> None:
    threaded_provider.add_fault(f"status={status}")
    with pytest.raises(exc_type) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert "injected fault" in caught.value.message
    assert [r.status for r in threaded_provider.ledger.requests()] == [status]


@pytest.mark.anyio
@STATUS_ERRORS
async def test_async_error_status_raises_the_sdk_exception(
    provider: FakeProvider,
    aclient: openai.AsyncOpenAI,
    status: int,
    exc_type: type[openai.APIStatusError],
    code: str | None,
) -> None:
    provider.add_fault(f"status={status}")
    with pytest.raises(exc_type) as caught:
        await aclient.responses.create(model=MODEL, input="Weather?")
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert [r.status for r in provider.ledger.requests()] == [status]


@pytest.mark.anyio
async def test_wrong_base_url_is_a_not_found_error(provider: FakeProvider) -> None:
    async with openai.AsyncOpenAI(base_url=provider.origin, api_key="sk", max_retries=0) as sdk:
        with pytest.raises(openai.NotFoundError, match="no route for POST /chat/completions"):
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)


@pytest.mark.anyio
async def test_invalid_request_is_a_bad_request_error(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="'messages'") as caught:
        await aclient.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"messages": "not a list"}
        )
    assert caught.value.type == "invalid_request_error"


def test_sync_in_stream_error_raises_api_error(
    threaded_provider: FakeProvider, client: openai.OpenAI
) -> None:
    threaded_provider.add_fault("error-after=3")
    received: list[Any] = []
    with pytest.raises(openai.APIError, match="injected fault") as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            received.append(chunk)
    # The HTTP status was 200, so this is a plain APIError, not an APIStatusError.
    assert not isinstance(caught.value, openai.APIStatusError)
    assert len(received) == 3
    assert "".join(c.choices[0].delta.content or "" for c in received) == words(2)


@pytest.mark.anyio
async def test_async_in_stream_error_raises_api_error(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    provider.add_fault("error-after=3")
    stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError, match="injected fault") as caught:
        async for chunk in stream:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.type == "server_error"
    assert len(received) == 3
    assert last_request(provider.ledger).outcome is Outcome.STREAM_ERROR


@pytest.mark.anyio
async def test_responses_in_stream_error_is_a_failed_event(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    """The Responses API reports a mid-stream failure as an event; the SDK does not raise."""
    provider.add_fault("error-after=3")
    stream = await aclient.responses.create(model=MODEL, input="Weather?", stream=True)
    async with stream:
        events = [event async for event in stream]
    assert len(events) == 4
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert "injected fault" in events[-1].response.error.message


# ----------------------------------------------------------- closing a stream early

CLOSE_PLANS = pytest.mark.parametrize(
    ("spec", "most"), [("hang-after=3", 3), ("pace=10ms,hang-after=5", 5)], ids=["hang", "paced"]
)


def check_closed_after(conn: Any, read: int, most: int) -> None:
    assert conn.closed_by is Closer.CLIENT
    assert read <= conn.events_sent <= most
    assert conn.requests[-1].stream is True


@CLOSE_PLANS
def test_sync_stream_close_is_a_client_close(
    threaded_provider: FakeProvider, client: openai.OpenAI, spec: str, most: int
) -> None:
    threaded_provider.add_fault(spec)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = [next(stream) for _ in range(3)]
    t = time.monotonic_ns()
    stream.close()
    conn = threaded_provider.ledger.wait_for_blocking(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), timeout=CLOSED_SOON
    )
    check_closed_after(conn, len(chunks), most)
    req = threaded_provider.ledger.wait_for_blocking(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    assert req.outcome is Outcome.CLIENT_CLOSED


@pytest.mark.anyio
@CLOSE_PLANS
async def test_async_stream_close_is_a_client_close(
    provider: FakeProvider, aclient: openai.AsyncOpenAI, spec: str, most: int
) -> None:
    provider.add_fault(spec)
    stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = [await stream.__anext__() for _ in range(3)]
    t = time.monotonic_ns()
    await stream.close()
    conn = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), timeout=CLOSED_SOON
    )
    check_closed_after(conn, len(chunks), most)
    req = await provider.ledger.wait_for(
        lambda ledger: ledger.requests()[-1].outcome and ledger.requests()[-1], timeout=2
    )
    assert req.outcome is Outcome.CLIENT_CLOSED


@pytest.mark.anyio
async def test_async_responses_stream_helper_exit_is_a_client_close(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    provider.add_fault("hang-after=3")
    async with aclient.responses.stream(model=MODEL, input="Weather?") as stream:
        seen = [(await stream.__anext__()).type for _ in range(3)]
        t = time.monotonic_ns()
    conn = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), timeout=CLOSED_SOON
    )
    assert seen == ["response.created", "response.in_progress", "response.output_item.added"]
    assert conn.events_sent == 3


@pytest.mark.anyio
async def test_tool_only_turn_has_no_content_streamed_or_not(
    provider: FakeProvider, aclient: openai.AsyncOpenAI
) -> None:
    provider.add_fault("tokens=0,tool=get_weather")
    plain = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES)
    async with aclient.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        streamed = await stream.get_final_completion()
    assert plain.choices[0].message.content is None
    assert streamed.choices[0].message.tool_calls
    assert streamed.choices[0].message.content is None
