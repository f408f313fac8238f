"""The wire encoders fed to the real openai and anthropic SDKs through an in-memory transport.

A tiny sans-socket "provider" routes each SDK request with `route()`, validates it with
`facts()` and answers with the encoder's bytes, so the SDKs' own parsers, stream helpers
and error mapping are what judge the output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from fake_providers.content import ContentSpec, tool_call
from fake_providers.wire import RequestFacts, is_models_list, models_list_body, route

WEATHER = tool_call("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_w")
TEXT = "Hello there, streaming world"
SPEC = ContentSpec(text=TEXT)
TOOL_SPEC = ContentSpec(text="Checking.", tool_calls=(WEATHER,))
IDS = {"openai-chat": "chatcmpl-1", "azure": "chatcmpl-1", "openai-responses": "resp_1"}
JSON = {"content-type": "application/json"}
USER: Any = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-test"


@dataclass
class Provider:
    """An in-memory provider: answers SDK requests with the wire encoders' bytes."""

    spec: ContentSpec = SPEC
    status: int | None = None  # answer every request with this HTTP error
    cut_after: int | None = None  # stream this many events, then the fault below
    malformed: bool = False  # the fault is a malformed event rather than an error event
    asynchronous: bool = False
    seen: list[RequestFacts] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if is_models_list(request.method, request.url.path):
            return httpx2.Response(200, headers=JSON, content=models_list_body())
        found = route(request.method, request.url.path, dict(request.url.params))
        assert found is not None, f"unrouted {request.method} {request.url}"
        wire = found.wire
        if self.status is not None:
            return httpx2.Response(
                self.status, headers=JSON, content=wire.error_body(self.status, "injected")
            )
        facts = wire.facts(found.params, json.loads(request.content))
        self.seen.append(facts)
        completion = self.spec.build(
            model=facts.model,
            response_id=IDS.get(wire.kind, "msg_1"),
            created=1_700_000_000,
            max_tokens=facts.max_tokens,
            input_tokens=12,
        )
        if not facts.stream:
            return httpx2.Response(200, headers=JSON, content=wire.json_body(completion, facts))
        events = list(wire.stream_events(completion, facts))
        if self.cut_after is not None:
            fault = (
                wire.malformed_event()
                if self.malformed
                else wire.stream_error_event("injected", completion)
            )
            events = [*events[: self.cut_after], fault]
        headers = {"content-type": found.stream_media_type}
        if self.asynchronous:
            return httpx2.Response(200, headers=headers, content=_aiter(events))
        return httpx2.Response(200, headers=headers, content=iter(events))

    def openai_client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key="sk-test", max_retries=0, http_client=self._client())

    def async_openai_client(self) -> openai.AsyncOpenAI:
        self.asynchronous = True
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        return openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=client)

    def azure_client(self) -> openai.AzureOpenAI:
        return openai.AzureOpenAI(
            azure_endpoint="https://fake.openai.azure.com",
            api_version="2024-10-21",
            api_key="k",
            max_retries=0,
            http_client=self._client(),
        )

    def anthropic_client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key="k", max_retries=0, http_client=self._client())

    def async_anthropic_client(self) -> anthropic.AsyncAnthropic:
        self.asynchronous = True
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        return anthropic.AsyncAnthropic(api_key="k", max_retries=0, http_client=client)

    def _client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))


async def _aiter(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def chat_stream(client: openai.OpenAI, **extra: Any) -> Iterator[Any]:
    return iter(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, **extra))


# --- OpenAI chat -------------------------------------------------------------------------


def test_chat_stream_with_usage_and_tools() -> None:
    provider = Provider(TOOL_SPEC)
    chunks = list(chat_stream(provider.openai_client(), stream_options={"include_usage": True}))
    assert provider.seen[0].include_usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
    )
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 12


def test_chat_stream_helper_accumulates() -> None:
    client = Provider(TOOL_SPEC).openai_client()
    with client.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_w", "get_weather")
    assert final.choices[0].finish_reason == "tool_calls"


def test_chat_non_stream_and_length() -> None:
    client = Provider().openai_client()
    done = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert done.choices[0].message.content == TEXT
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens == 12
    short = list(chat_stream(client, max_completion_tokens=2))
    assert "".join(c.choices[0].delta.content or "" for c in short) == "Hello there,"
    assert short[-1].choices[0].finish_reason == "length"


def test_chat_async_stream() -> None:
    async def run() -> str:
        client = Provider().async_openai_client()
        stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(run()) == TEXT


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (529, openai.InternalServerError),
    ],
)
def test_openai_http_errors(status: int, error: type[openai.APIStatusError]) -> None:
    with pytest.raises(error) as info:
        list(chat_stream(Provider(status=status).openai_client()))
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["message"] == "injected"
    with pytest.raises(error):
        Provider(status=status).openai_client().responses.create(model="gpt-4o", input="hi")


def test_openai_in_stream_error_and_malformed() -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in chat_stream(Provider(cut_after=3).openai_client()):
            received.append(chunk.choices[0].delta.content or "")
    assert not isinstance(info.value, openai.APIStatusError)
    assert info.value.message == "injected"
    assert "".join(received) == "Hello there,"
    with pytest.raises(json.JSONDecodeError):
        list(chat_stream(Provider(cut_after=3, malformed=True).openai_client()))


def test_openai_models_list() -> None:
    ids = {m.id for m in Provider().openai_client().models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"} <= ids


# --- Azure -------------------------------------------------------------------------------


def test_azure_stream_and_non_stream() -> None:
    provider = Provider(TOOL_SPEC)
    client = provider.azure_client()
    stream = client.chat.completions.create(model="my-deployment", messages=USER, stream=True)
    chunks = list(stream)
    assert chunks[0].choices == []  # Azure's prompt_filter_results prelude
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert provider.seen[0].kind == "azure" and provider.seen[0].model == "my-deployment"
    with client.chat.completions.stream(model="my-deployment", messages=USER) as helper:
        final = helper.get_final_completion()
    assert final.choices[0].message.tool_calls is not None
    done = client.chat.completions.create(model="my-deployment", messages=USER)
    assert done.choices[0].message.content == "Checking."


# --- OpenAI Responses --------------------------------------------------------------------


def test_responses_raw_stream() -> None:
    client = Provider(TOOL_SPEC).openai_client()
    events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Checking."
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.output_text == "Checking."
    assert last.response.usage is not None and last.response.usage.input_tokens == 12


def test_responses_stream_helper() -> None:
    client = Provider(TOOL_SPEC).openai_client()
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Checking."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_w", "get_weather", {"city": "Paris", "unit": "celsius"})
    ]


def test_responses_non_stream_incomplete_and_failed() -> None:
    client = Provider().openai_client()
    done = client.responses.create(model="gpt-4o", input="hi")
    assert done.status == "completed" and done.output_text == TEXT
    short = client.responses.create(model="gpt-4o", input="hi", max_output_tokens=2)
    assert short.status == "incomplete" and short.output_text == "Hello there,"
    events = list(
        client.responses.create(model="gpt-4o", input="hi", stream=True, max_output_tokens=2)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details is not None
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    failing = Provider(cut_after=5).openai_client()
    events = list(failing.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert events[-1].response.error.code == "server_error"
    assert events[-1].sequence_number > events[-2].sequence_number


# --- Anthropic ---------------------------------------------------------------------------


def test_anthropic_stream_helper() -> None:
    client = Provider(TOOL_SPEC).anthropic_client()
    with client.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Checking."
    assert final.stop_reason == "tool_use"
    tool = final.content[-1]
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == (
        "call_w",
        "get_weather",
        json.loads(WEATHER.arguments),
    )
    assert final.usage.input_tokens == 12 and final.usage.output_tokens > 1


def test_anthropic_non_stream_and_max_tokens() -> None:
    client = Provider().anthropic_client()
    message = client.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    short = client.messages.create(model=CLAUDE, max_tokens=2, messages=USER, stream=True)
    events = list(short)
    assert events[-2].type == "message_delta" and events[-2].delta.stop_reason == "max_tokens"


def test_anthropic_async_stream() -> None:
    async def run() -> str:
        client = Provider().async_anthropic_client()
        async with client.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
            return "".join([t async for t in stream.text_stream])

    assert asyncio.run(run()) == TEXT


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (404, anthropic.NotFoundError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (503, anthropic.ServiceUnavailableError),
        (529, anthropic.OverloadedError),
    ],
)
def test_anthropic_http_errors(status: int, error: type[anthropic.APIStatusError]) -> None:
    client = Provider(status=status).anthropic_client()
    with pytest.raises(error) as info:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    assert type(info.value) is error and info.value.status_code == status


def test_anthropic_in_stream_error_and_malformed() -> None:
    client = Provider(cut_after=5).anthropic_client()
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream,
    ):
        received.extend(stream.text_stream)
    # The SDK maps an in-stream `error` event by the HTTP status (200), so it raises the base
    # APIStatusError, not OverloadedError; the error type is only in the body.
    assert type(info.value) is anthropic.APIStatusError and info.value.status_code == 200
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "injected"},
    }
    assert "".join(received) == "Hello there,"
    bad = Provider(cut_after=5, malformed=True).anthropic_client()
    with pytest.raises(json.JSONDecodeError):
        list(bad.messages.create(model=CLAUDE, max_tokens=100, messages=USER, stream=True))
