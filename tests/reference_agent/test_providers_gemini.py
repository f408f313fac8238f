"""Gemini client with respx: contents and parts, function calls by name, usage, errors."""

from __future__ import annotations

import argparse
import json

import pytest
import respx

from fake_providers.content import Completion, FinishReason
from fake_providers.content import ToolCall as FakeCall
from fake_providers.content import Usage as FakeUsage
from fake_providers.wire.base import RequestFacts
from fake_providers.wire.gemini import GEMINI, GEMINI_JSON_ARRAY, error_object
from reference_agent.__main__ import common_options, config_from
from reference_agent.config import AgentConfig
from reference_agent.model import Message, ToolCall, Usage
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    StreamBrokenError,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
    make_client,
    make_http_client,
)
from reference_agent.providers.gemini import LOCAL_CALL_ID

pytestmark = pytest.mark.anyio

MODEL_URL = "https://gemini.test/v1beta/models/gemini-2.5-flash"
STREAM_URL = MODEL_URL + ":streamGenerateContent?alt=sse"
CONFIG = AgentConfig(
    provider="gemini", base_url="https://gemini.test/", api_key="g-key", model="gemini-2.5-flash"
)
SSE = {"content-type": "text/event-stream"}
SCHEMA: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
# One call with the provider's own id, one the model sent without (we made one up).
A = ToolCall("fc_a", "get_weather", {"city": "Paris"})
B = ToolCall(LOCAL_CALL_ID + "1", "get_time", {})
TRANSCRIPT = (
    Message("summary", "Earlier: Paris."),
    Message("user", "Weather and time?"),
    Message("assistant", "Checking.", tool_calls=(A, B)),
    Message("tool", "Sunny", tool_call_id="fc_a"),
    Message("tool", "", tool_call_id=B.id),
    Message("assistant", "", finish_reason="cancelled"),  # a cancelled turn: nothing to send
)
REQUEST = ModelRequest(
    TRANSCRIPT, system="Be brief.", tools=(ToolSpec("get_weather", "W.", SCHEMA),), max_tokens=64
)


def completion(finish: FinishReason) -> Completion:
    calls = (FakeCall("ignored", "get_weather", '{"city":"Oslo"}'),)
    return Completion(
        model="gemini-2.5-flash",
        response_id="r1",
        created=0,
        text_chunks=("Let ", "me ", "see"),
        tool_calls=calls if finish is FinishReason.TOOL_CALLS else (),
        finish=finish,
        usage=FakeUsage(30, 12),
    )


FACTS = RequestFacts("gemini", "gemini-2.5-flash", stream=True, include_usage=True)


def stream_of(c: Completion) -> bytes:
    return b"".join(GEMINI.stream_events(c, FACTS))


def sse(data: object) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"


async def run(request: ModelRequest = REQUEST) -> list[ModelEvent]:
    async with make_http_client(CONFIG) as http:
        client = make_client(CONFIG, http)
        assert client.kind == "gemini"
        return [event async for event in client.attempt(request, CallHandle())]


async def test_request_shape() -> None:
    with respx.mock() as router:
        route = router.post(STREAM_URL).respond(
            200, headers=SSE, content=stream_of(completion(FinishReason.STOP))
        )
        await run()
    sent = route.calls.last.request
    assert sent.headers["x-goog-api-key"] == "g-key"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert "model" not in body  # the model is in the URL
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 64}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "W.", "parameters": SCHEMA}
            ]
        }
    ]
    first, *rest = body["contents"]
    assert first["role"] == "user"
    # The summary and the next user message share one user content.
    assert first["parts"][0]["text"].endswith("Earlier: Paris.")
    assert first["parts"][1] == {"text": "Weather and time?"}
    assert rest == [
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc_a"}},
            {"functionCall": {"name": "get_time", "args": {}}},  # our local id is not sent
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "Sunny"},
                                  "id": "fc_a"}},
            {"functionResponse": {"name": "get_time", "response": {"result": ""}}},
        ]},
    ]  # fmt: skip


async def test_a_tool_result_for_an_unknown_call_is_refused_before_sending() -> None:
    orphan = ModelRequest((Message("user", "hi"), Message("tool", "x", tool_call_id="nope")))
    with respx.mock(assert_all_called=False) as router:
        route = router.post(STREAM_URL).respond(200)
        with pytest.raises(FatalProviderError, match="unknown call id 'nope'"):
            await run(orphan)
    assert not route.called


@pytest.mark.parametrize(
    ("finish", "reason"),
    [(FinishReason.STOP, "stop"), (FinishReason.LENGTH, "length"),
     (FinishReason.TOOL_CALLS, "tool_calls")],
)  # fmt: skip
async def test_stream_text_tools_usage_and_finish_reasons(
    finish: FinishReason, reason: str
) -> None:
    with respx.mock() as router:
        router.post(STREAM_URL).respond(200, headers=SSE, content=stream_of(completion(finish)))
        events = await run()
    calls = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta("Let "), TextDelta("me "), TextDelta("see"),
    ]  # fmt: skip
    assert [(c.name, c.arguments) for c in calls] == (
        [("get_weather", {"city": "Oslo"})] if finish is FinishReason.TOOL_CALLS else []
    )
    assert all(c.id.startswith(LOCAL_CALL_ID) for c in calls)
    assert events[-1] == Finished(reason, Usage(30, 12))


async def test_ids_the_model_sends_are_kept_and_thinking_counts_as_output() -> None:
    content = sse({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "pondering", "thought": True},
            {"functionCall": {"id": "fc_7", "name": "get_time", "args": {}}},
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4,
                          "thoughtsTokenCount": 20},
    })  # fmt: skip
    with respx.mock() as router:
        router.post(STREAM_URL).respond(200, headers=SSE, content=content)
        events = await run()
    assert events == [
        ToolCallDone(ToolCall("fc_7", "get_time", {})),
        Finished("tool_calls", Usage(9, 24)),
    ]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, TransientProviderError), (500, TransientProviderError),
     (503, TransientProviderError), (400, FatalProviderError), (403, FatalProviderError)],
)  # fmt: skip
async def test_error_events(status: int, kind: type[Exception]) -> None:
    head = b"".join(list(GEMINI.stream_events(completion(FinishReason.STOP), FACTS))[:2])
    content = head + sse(error_object(status, "it failed"))
    with respx.mock() as router:
        router.post(STREAM_URL).respond(200, headers=SSE, content=content)
        with pytest.raises(kind, match="it failed") as caught:
            await run()
    assert type(caught.value) is kind


async def test_a_stream_without_its_finish_reason_is_broken_and_so_retryable() -> None:
    head = b"".join(list(GEMINI.stream_events(completion(FinishReason.STOP), FACTS))[:2])
    with respx.mock() as router:
        router.post(STREAM_URL).respond(200, headers=SSE, content=head)
        with pytest.raises(StreamBrokenError, match="before its end event"):
            await run()


async def test_a_blocked_prompt_is_fatal() -> None:
    content = sse({"promptFeedback": {"blockReason": "SAFETY"}})
    with respx.mock() as router:
        router.post(STREAM_URL).respond(200, headers=SSE, content=content)
        with pytest.raises(FatalProviderError, match="blocked the prompt \\(SAFETY\\)"):
            await run()


async def test_non_streaming_body() -> None:
    facts = RequestFacts("gemini", "gemini-2.5-flash", stream=False)
    body = GEMINI.json_body(completion(FinishReason.TOOL_CALLS), facts)
    with respx.mock() as router:
        route = router.post(MODEL_URL + ":generateContent").respond(200, content=body)
        events = await run(ModelRequest((Message("user", "hi"),), stream=False))
    sent = json.loads(route.calls.last.request.content)
    assert "systemInstruction" not in sent and "tools" not in sent
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert events[0] == TextDelta("Let me see")
    assert isinstance(events[1], ToolCallDone) and events[1].call.name == "get_weather"
    assert events[2] == Finished("tool_calls", Usage(30, 12))


async def test_a_json_array_answer_is_read_as_the_stream_it_is() -> None:
    array = b"".join(GEMINI_JSON_ARRAY.stream_events(completion(FinishReason.STOP), FACTS))
    with respx.mock() as router:
        router.post(STREAM_URL).respond(
            200, headers={"content-type": "application/json"}, content=array
        )
        events = await run()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me see"
    assert events[-1] == Finished("stop", Usage(30, 12))


async def test_http_error_body_message() -> None:
    with respx.mock() as router:
        router.post(STREAM_URL).respond(400, json=error_object(400, "contents is required"))
        with pytest.raises(FatalProviderError, match="HTTP 400: contents is required"):
            await run()


def test_environment_and_command_line_choose_gemini() -> None:
    env = {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9", "GEMINI_API_KEY": "g-env"}
    config = AgentConfig.from_env("gemini", env)
    assert (config.provider, config.base_url, config.api_key, config.model) == (
        "gemini", "http://127.0.0.1:9", "g-env", "gemini-2.5-flash",
    )  # fmt: skip
    parser = argparse.ArgumentParser()
    common_options(parser)
    args = parser.parse_args(["--provider", "gemini", "--base-url", "http://127.0.0.1:8"])
    assert config_from(args).provider == "gemini"
    assert config_from(args).base_url == "http://127.0.0.1:8"
