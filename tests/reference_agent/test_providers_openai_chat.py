"""OpenAI Chat Completions client with respx: request shape and chunk decoding.

Streams come from the fake provider's own encoder where it fits (byte-faithful to what
the server sends) and are written by hand for cases it never produces.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from fake_providers.content import Completion, FinishReason
from fake_providers.content import ToolCall as FakeCall
from fake_providers.content import Usage as FakeUsage
from fake_providers.wire.base import RequestFacts, sse
from fake_providers.wire.openai_chat import OPENAI_CHAT
from reference_agent.config import AgentConfig
from reference_agent.model import Message, ToolCall, Usage
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
    make_client,
    make_http_client,
)

pytestmark = pytest.mark.anyio

URL = "https://api.test/v1/chat/completions"
CONFIG = AgentConfig(base_url="https://api.test/v1", api_key="sk-test", model="gpt-4o")
SSE = {"content-type": "text/event-stream"}
SCHEMA: dict[str, object] = {"type": "object", "properties": {}}
WEATHER = ToolSpec("get_weather", "Weather.", SCHEMA)
CALL = ToolCall("call_1", "get_weather", {"city": "Paris"})
TRANSCRIPT = (
    Message("summary", "We talked about Paris."),
    Message("user", "Weather?"),
    Message("assistant", "", tool_calls=(CALL,)),
    Message("tool", "Sunny", tool_call_id="call_1"),
    Message("assistant", "It is sunny."),
    Message("user", "Thanks"),
)
REQUEST = ModelRequest(TRANSCRIPT, system="Be brief.", tools=(WEATHER,), max_tokens=77)
COMPLETION = Completion(
    model="gpt-4o",
    response_id="chatcmpl-1",
    created=0,
    text_chunks=("It ", "is ", "sunny"),
    tool_calls=(FakeCall("call_9", "get_weather", '{"city":"Paris"}'),),
    finish=FinishReason.TOOL_CALLS,
    usage=FakeUsage(11, 7),
)


async def run(request: ModelRequest = REQUEST) -> list[ModelEvent]:
    async with make_http_client(CONFIG) as http:
        client = make_client(CONFIG, http)
        assert client.kind == "openai-chat"
        return [event async for event in client.attempt(request, CallHandle())]


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse({"choices": [choice], **extra})


async def test_request_shape() -> None:
    with respx.mock() as router:
        route = router.post(URL).respond(
            200, headers=SSE, content=chunk({}, "stop") + b"data: [DONE]\n\n"
        )
        await run()
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["x-agent-purpose"] == "turn"
    body = json.loads(sent.content)
    assert body["model"] == "gpt-4o"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 77
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather.", "parameters": SCHEMA},
        }
    ]
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["role"] == "user"
    assert "summary" in messages[1]["content"].lower()
    assert messages[1]["content"].endswith("We talked about Paris.")
    assert messages[2:] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ]


async def test_stream_of_text_tool_call_and_usage() -> None:
    facts = RequestFacts("openai-chat", "gpt-4o", stream=True, include_usage=True)
    raw = b"".join(OPENAI_CHAT.stream_events(COMPLETION, facts))
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=raw)
        events = await run()
    assert events == [
        TextDelta("It "),
        TextDelta("is "),
        TextDelta("sunny"),
        ToolCallDone(ToolCall("call_9", "get_weather", {"city": "Paris"})),
        Finished("tool_calls", Usage(11, 7)),
    ]


async def test_interleaved_tool_calls_are_assembled_by_index() -> None:
    first = {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}
    second = {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}
    raw = b"".join(
        [
            chunk({"tool_calls": [first, second]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"y":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
            chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=raw)
        events = await run()
    assert events == [
        ToolCallDone(ToolCall("a", "f", {"x": 1})),
        ToolCallDone(ToolCall("b", "g", {"y": 2})),
        Finished("tool_calls", Usage()),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "stop"), (None, "stop")],
)
async def test_finish_reasons_are_normalised(raw: str | None, expected: str) -> None:
    content = chunk({"content": "x"}, raw) + b"data: [DONE]\n\n"
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        events = await run()
    assert events[-1] == Finished(expected, Usage())


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "boom", "type": "server_error"}, TransientProviderError),
        ({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"},
         TransientProviderError),
        ({"message": "bad", "type": "invalid_request_error"}, FatalProviderError),
    ],
)  # fmt: skip
async def test_in_stream_errors(error: dict[str, Any], kind: type[Exception]) -> None:
    content = chunk({"content": "x"}) + sse({"error": error})
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        with pytest.raises(kind, match=error["message"]):
            await run()


async def test_bad_tool_arguments_are_fatal() -> None:
    start = {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{not json"}}
    content = chunk({"tool_calls": [start]}) + chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        with pytest.raises(FatalProviderError, match="arguments of tool call 'f'"):
            await run()


async def test_non_streaming_body() -> None:
    facts = RequestFacts("openai-chat", "gpt-4o", stream=False)
    with respx.mock() as router:
        route = router.post(URL).respond(
            200, content=OPENAI_CHAT.json_body(COMPLETION, facts), headers={"content-type": "json"}
        )
        request = ModelRequest(TRANSCRIPT, stream=False)
        events = await run(request)
    body = json.loads(route.calls.last.request.content)
    assert body["stream"] is False
    assert "stream_options" not in body
    assert "tools" not in body
    assert body["messages"][0]["role"] == "user"  # no system prompt, no system message
    assert events == [
        TextDelta("It is sunny"),
        ToolCallDone(ToolCall("call_9", "get_weather", {"city": "Paris"})),
        Finished("tool_calls", Usage(11, 7)),
    ]


async def test_unknown_role_is_refused_before_sending() -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(URL).respond(200)
        with pytest.raises(FatalProviderError, match="role 'robot'"):
            await run(ModelRequest((Message("robot", "beep"),)))
    assert not route.called


async def test_sends_to_the_configured_base_url_without_double_slash() -> None:
    config = CONFIG.with_(base_url="https://gw.test/openai/v1/")
    with respx.mock() as router:
        route = router.post("https://gw.test/openai/v1/chat/completions").respond(
            200, headers=SSE, content=chunk({}, "stop") + b"data: [DONE]\n\n"
        )
        async with make_http_client(config) as http:
            request = ModelRequest((Message("user", "hi"),))
            events = [e async for e in make_client(config, http).attempt(request, CallHandle())]
    assert route.called
    assert events == [Finished("stop", Usage())]
    assert isinstance(route.calls.last.request, httpx.Request)
