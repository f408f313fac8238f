"""Wire encoders, checked by parsing their bytes back: event order, framing, reassembly."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from fake_providers.content import Completion, ContentSpec, FinishReason, ToolCall, Usage
from fake_providers.wire import (
    ANTHROPIC,
    AZURE,
    GEMINI,
    GEMINI_JSON_ARRAY,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    RequestFacts,
    WireFormat,
)
from fake_providers.wire.openai_responses import event_count

WEATHER = ToolCall("call_a", "get_weather", '{"city":"Paris","unit":"celsius"}')
TIME = ToolCall("call_b", "get_time", '{"tz":"Europe/Paris"}')
TEXT = Completion("m-1", "resp_1", 1_700_000_000, ("Hello", " wor", "ld"), usage=Usage(11, 3))
TOOLS = Completion(
    "m-1",
    "resp_2",
    1_700_000_000,
    ("Let me", " check."),
    (WEATHER, TIME),
    FinishReason.TOOL_CALLS,
    Usage(20, 9),
)
TOOL_ONLY = Completion("m-1", "resp_3", 1, (), (WEATHER,), FinishReason.TOOL_CALLS, Usage(5, 4))
LENGTH = ContentSpec(tokens=50).build(
    model="m-1", response_id="resp_4", created=1, max_tokens=5, input_tokens=7
)
EMPTY = Completion("m-1", "resp_5", 1)
ALL = (TEXT, TOOLS, TOOL_ONLY, LENGTH, EMPTY)


def facts(wire: WireFormat, *, include_usage: bool = False) -> RequestFacts:
    return RequestFacts(kind=wire.kind, model="m-1", stream=True, include_usage=include_usage)


def parse_sse(event: bytes) -> tuple[str | None, str]:
    """One whole SSE event -> (event name, data)."""
    text = event.decode()
    assert text.endswith(("\n\n", "\r\n\r\n")), text
    name: str | None = None
    data: list[str] = []
    for line in text.replace("\r\n", "\n").strip("\n").split("\n"):
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
    return name, "\n".join(data)


def sse_json(events: Iterable[bytes]) -> list[tuple[str | None, Any]]:
    return [(name, json.loads(data)) for name, data in map(parse_sse, events)]


ENCODERS = (OPENAI_CHAT, AZURE, OPENAI_RESPONSES, ANTHROPIC, GEMINI, GEMINI_JSON_ARRAY)


@pytest.mark.parametrize("wire", ENCODERS, ids=lambda w: f"{w.kind}-{type(w).__name__}")
@pytest.mark.parametrize("completion", ALL)
def test_stream_events_are_lazy(wire: WireFormat, completion: Completion) -> None:
    """An iterator, not a list: a held stream keeps no unsent events; re-runs are equal."""
    events = wire.stream_events(completion, facts(wire))
    assert not isinstance(events, list | tuple)
    assert iter(events) is events
    first = next(events)
    assert [first, *events] == list(wire.stream_events(completion, facts(wire)))


# --- OpenAI chat -------------------------------------------------------------------------


def chat_chunks(completion: Completion, include_usage: bool = False) -> list[dict[str, Any]]:
    chat_facts = facts(OPENAI_CHAT, include_usage=include_usage)
    events = list(OPENAI_CHAT.stream_events(completion, chat_facts))
    assert events[-1] == b"data: [DONE]\n\n"
    assert all(b"[DONE]" not in e for e in events[:-1])
    return [data for _, data in sse_json(events[:-1])]


@pytest.mark.parametrize("completion", ALL)
def test_chat_stream_reassembles(completion: Completion) -> None:
    chunks = chat_chunks(completion)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["id"] for c in chunks} == {completion.response_id}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == completion.text
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for part in delta.get("tool_calls", ()):
            if "id" in part:
                assert part["type"] == "function" and part["index"] not in calls
                calls[part["index"]] = {"id": part["id"], "name": part["function"]["name"], "a": ""}
            calls[part["index"]]["a"] += part["function"]["arguments"]
    expected = {
        i: {"id": t.id, "name": t.name, "a": t.arguments}
        for i, t in enumerate(completion.tool_calls)
    }
    assert calls == expected
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[:-1] == [None] * (len(chunks) - 1)
    assert finishes[-1] == completion.finish.value  # stop | length | tool_calls
    assert all("usage" not in c for c in chunks)


def test_chat_usage_chunk_only_when_asked() -> None:
    chunks = chat_chunks(TEXT, include_usage=True)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        11,
        3,
        14,
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_chat_json_body() -> None:
    body = json.loads(OPENAI_CHAT.json_body(TOOL_ONLY, facts(OPENAI_CHAT)))
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {
        "name": WEATHER.name,
        "arguments": WEATHER.arguments,
    }
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["total_tokens"] == 9
    text = json.loads(OPENAI_CHAT.json_body(TEXT, facts(OPENAI_CHAT)))
    assert text["choices"][0]["message"]["content"] == "Hello world"
    assert "tool_calls" not in text["choices"][0]["message"]


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (404, "invalid_request_error", "model_not_found"),
        (429, "requests", "rate_limit_exceeded"),
        (500, "server_error", None),
        (503, "server_error", "service_unavailable"),
        (529, "server_error", "overloaded"),
        (418, "invalid_request_error", None),
        (502, "server_error", None),
    ],
)
def test_openai_error_bodies(status: int, kind: str, code: str | None) -> None:
    for wire in (OPENAI_CHAT, OPENAI_RESPONSES, AZURE):
        body = json.loads(wire.error_body(status, "nope"))
        assert body == {"error": {"message": "nope", "type": kind, "param": None, "code": code}}


def test_chat_fault_events() -> None:
    _, data = parse_sse(OPENAI_CHAT.stream_error_event("kaput", TEXT))
    assert json.loads(data)["error"]["message"] == "kaput"
    _, bad = parse_sse(OPENAI_CHAT.malformed_event())
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)


# --- Azure -------------------------------------------------------------------------------


def test_azure_stream_wraps_chat() -> None:
    events = list(AZURE.stream_events(TOOLS, facts(AZURE, include_usage=True)))
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [data for _, data in sse_json(events[:-1])]
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"]
    plain = chat_chunks(TOOLS, include_usage=True)
    assert len(chunks) == len(plain) + 1
    for azure, chat in zip(chunks[1:], plain, strict=True):
        for a, c in zip(azure["choices"], chat["choices"], strict=True):
            assert a.pop("content_filter_results")["hate"]["filtered"] is False
            assert a == c
        assert azure == chat
    body = json.loads(AZURE.json_body(TEXT, facts(AZURE)))
    assert body["prompt_filter_results"] and body["choices"][0]["content_filter_results"]


# --- OpenAI Responses --------------------------------------------------------------------

TEXT_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL_EVENTS = [
    "response.output_item.added",
    "response.function_call_arguments.done",
    "response.output_item.done",
]


def responses_events(completion: Completion) -> list[dict[str, Any]]:
    parsed = sse_json(OPENAI_RESPONSES.stream_events(completion, facts(OPENAI_RESPONSES)))
    for name, data in parsed:
        assert name == data["type"]
    assert [d["sequence_number"] for _, d in parsed] == list(range(len(parsed)))
    return [data for _, data in parsed]


@pytest.mark.parametrize("completion", ALL)
def test_responses_stream_structure(completion: Completion) -> None:
    events = responses_events(completion)
    assert len(events) == event_count(completion)
    kinds = [e["type"] for e in events if not e["type"].endswith(".delta")]
    expected = ["response.created", "response.in_progress"]
    if completion.text_chunks or not completion.tool_calls:
        expected += TEXT_EVENTS
    expected += CALL_EVENTS * len(completion.tool_calls)
    length = completion.finish is FinishReason.LENGTH
    expected.append("response.incomplete" if length else "response.completed")
    assert kinds == expected
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == completion.text
    args: dict[int, str] = {}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            args[e["output_index"]] = args.get(e["output_index"], "") + e["delta"]
    assert list(args.values()) == [t.arguments for t in completion.tool_calls if t.arguments]
    final = events[-1]["response"]
    assert final["status"] == ("incomplete" if length else "completed")
    assert final["usage"]["total_tokens"] == completion.usage.total_tokens
    if length:
        assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        (t.id, t.name, t.arguments) for t in completion.tool_calls
    ]


def test_responses_failed_event_follows_every_sequence_number() -> None:
    name, data = parse_sse(OPENAI_RESPONSES.stream_error_event("kaput", TOOLS))
    failed = json.loads(data)
    assert name == failed["type"] == "response.failed"
    assert failed["sequence_number"] == len(responses_events(TOOLS))
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "kaput"}


def test_responses_json_body() -> None:
    body = json.loads(OPENAI_RESPONSES.json_body(LENGTH, facts(OPENAI_RESPONSES)))
    assert body["object"] == "response" and body["status"] == "incomplete"
    assert body["output"][0]["content"][0]["text"] == LENGTH.text


# --- Anthropic ---------------------------------------------------------------------------


@pytest.mark.parametrize("completion", ALL)
def test_anthropic_stream_structure(completion: Completion) -> None:
    events = sse_json(ANTHROPIC.stream_events(completion, facts(ANTHROPIC)))
    for name, data in events:
        assert name == data["type"]
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names.count("ping") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == completion.usage.input_tokens
    blocks: dict[int, dict[str, Any]] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": "", "stopped": False}
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                block["json"] += delta["partial_json"]
        elif name == "content_block_stop":
            blocks[data["index"]]["stopped"] = True
    assert list(blocks) == list(range(len(blocks)))
    assert all(b["stopped"] for b in blocks.values())
    texts = [b["text"] for b in blocks.values() if b["type"] == "text"]
    assert "".join(texts) == completion.text
    uses = [(b["id"], b["name"], b["json"]) for b in blocks.values() if b["type"] == "tool_use"]
    assert uses == [(t.id, t.name, t.arguments) for t in completion.tool_calls]
    delta = events[-2][1]
    stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
    assert delta["delta"]["stop_reason"] == stop[completion.finish.value]
    assert delta["usage"]["output_tokens"] == completion.usage.output_tokens


def test_anthropic_json_and_errors() -> None:
    body = json.loads(ANTHROPIC.json_body(TOOLS, facts(ANTHROPIC)))
    assert body["type"] == "message" and body["stop_reason"] == "tool_use"
    assert body["content"][0] == {"type": "text", "text": "Let me check."}
    assert body["content"][1]["input"] == {"city": "Paris", "unit": "celsius"}
    assert [b["type"] for b in body["content"]] == ["text", "tool_use", "tool_use"]
    types = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
        500: "api_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }
    for status, kind in types.items():
        error = json.loads(ANTHROPIC.error_body(status, "x"))
        assert error == {"type": "error", "error": {"type": kind, "message": "x"}}
    name, data = parse_sse(ANTHROPIC.stream_error_event("busy", TEXT))
    assert name == "error"
    assert json.loads(data)["error"] == {"type": "overloaded_error", "message": "busy"}


# --- Gemini ------------------------------------------------------------------------------


@pytest.mark.parametrize("completion", ALL)
def test_gemini_sse_and_array_agree(completion: Completion) -> None:
    sse_events = GEMINI.stream_events(completion, facts(GEMINI))
    docs = [json.loads(parse_sse(e)[1]) for e in sse_events]
    array = list(GEMINI_JSON_ARRAY.stream_events(completion, facts(GEMINI)))
    assert array[0].startswith(b"[{") and array[-1] == b"]"
    assert all(e.startswith(b",\r\n{") for e in array[1:-1])
    assert json.loads(b"".join(array)) == docs
    parts = [p for d in docs for p in d["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == completion.text
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    assert calls == [
        {"name": t.name, "args": json.loads(t.arguments)} for t in completion.tool_calls
    ]
    reasons = [d["candidates"][0].get("finishReason") for d in docs]
    assert reasons[:-1] == [None] * (len(docs) - 1)
    assert reasons[-1] == ("MAX_TOKENS" if completion.finish is FinishReason.LENGTH else "STOP")
    assert docs[-1]["usageMetadata"]["candidatesTokenCount"] == completion.usage.output_tokens
    assert {d["responseId"] for d in docs} == {completion.response_id}
    body = json.loads(GEMINI.json_body(completion, facts(GEMINI)))
    assert body["candidates"][0]["finishReason"] == reasons[-1]


def test_gemini_errors_and_faults() -> None:
    statuses = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
    statuses |= {500: "INTERNAL", 503: "UNAVAILABLE"}
    for code, status in statuses.items():
        error = json.loads(GEMINI.error_body(code, "x"))
        assert error == {"error": {"code": code, "message": "x", "status": status}}
    assert json.loads(parse_sse(GEMINI.stream_error_event("x", TEXT))[1])["error"]["code"] == 500
    array = list(GEMINI_JSON_ARRAY.stream_events(TEXT, facts(GEMINI)))
    failed = b"".join([*array[:-1], GEMINI_JSON_ARRAY.stream_error_event("x", TEXT)])
    assert json.loads(failed)[-1]["error"]["status"] == "INTERNAL"
    truncated = b"".join([*array[:-1], GEMINI_JSON_ARRAY.malformed_event(), b"]"])
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated)


@pytest.mark.parametrize(
    "wire", [OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, AZURE, GEMINI], ids=lambda w: w.kind
)
def test_malformed_event_is_one_unparseable_event(wire: WireFormat) -> None:
    _, data = parse_sse(wire.malformed_event())
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)
