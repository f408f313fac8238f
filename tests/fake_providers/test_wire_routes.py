"""The route table and each wire format's request validation (`facts`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_providers.kinds import ProviderKind
from fake_providers.wire import (
    ANTHROPIC,
    AZURE,
    GEMINI,
    GEMINI_JSON_ARRAY,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    RequestError,
    RequestFacts,
    WireFormat,
    is_models_list,
    models_list_body,
    route,
)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("path", "query", "wire", "params"),
    [
        ("/v1/chat/completions", {}, OPENAI_CHAT, {}),
        ("/v1/chat/completions/", {}, OPENAI_CHAT, {}),
        ("/v1/responses", {}, OPENAI_RESPONSES, {}),
        ("/v1/messages", {"beta": "true"}, ANTHROPIC, {}),
        (
            "/openai/deployments/my%20dep/chat/completions",
            {"api-version": "2024-10-21"},
            AZURE,
            {"deployment": "my dep", "api-version": "2024-10-21"},
        ),
        ("/openai/deployments/d1/chat/completions", {}, AZURE, {"deployment": "d1"}),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            {"alt": "sse", "key": "k"},
            GEMINI,
            {"model": "gemini-2.5-flash", "method": "streamGenerateContent", "alt": "sse"},
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            {},
            GEMINI_JSON_ARRAY,
            {"model": "gemini-2.5-flash", "method": "streamGenerateContent"},
        ),
        (
            "/v1/models/gemini-pro:generateContent",
            {},
            GEMINI,
            {"model": "gemini-pro", "method": "generateContent"},
        ),
    ],
)
def test_routes(path: str, query: dict[str, str], wire: WireFormat, params: dict[str, str]) -> None:
    found = route("POST", path, query)
    assert found is not None
    assert found.wire is wire and dict(found.params) == params
    json_stream = wire is GEMINI_JSON_ARRAY
    assert found.stream_media_type == ("application/json" if json_stream else "text/event-stream")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),
        ("POST", "/chat/completions"),
        ("POST", "/v1/v1/chat/completions"),
        ("POST", "/v1/chat/completions//"),
        ("POST", "/openai/deployments/a/b/chat/completions"),
        ("POST", "/v1beta/models/gemini:countTokens"),
        ("POST", "/v1/models"),
    ],
)
def test_no_route(method: str, path: str) -> None:
    assert route(method, path, {}) is None


def test_kinds_and_models_list() -> None:
    wires = (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, AZURE, GEMINI, GEMINI_JSON_ARRAY)
    assert set(ProviderKind) == {w.kind for w in wires} and len(ProviderKind) == 5
    assert is_models_list("GET", "/v1/models") and is_models_list("get", "/v1/models/")
    assert not is_models_list("POST", "/v1/models")
    body = json.loads(models_list_body())
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"} <= ids
    assert all(m["object"] == "model" for m in body["data"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (CHAT, RequestFacts("openai-chat", "gpt-4o", False)),
        ({**CHAT, "stream": True}, RequestFacts("openai-chat", "gpt-4o", True)),
        ({**CHAT, "stream": "yes"}, RequestFacts("openai-chat", "gpt-4o", False)),
        (
            {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            RequestFacts("openai-chat", "gpt-4o", True, include_usage=True),
        ),
        (
            {**CHAT, "stream_options": {"include_usage": True}},
            RequestFacts("openai-chat", "gpt-4o", False),
        ),
        (
            {**CHAT, "max_tokens": 5, "max_completion_tokens": 7},
            RequestFacts("openai-chat", "gpt-4o", False, max_tokens=7),
        ),
        ({**CHAT, "max_tokens": 5}, RequestFacts("openai-chat", "gpt-4o", False, max_tokens=5)),
    ],
)
def test_chat_facts(body: dict[str, Any], expected: RequestFacts) -> None:
    assert OPENAI_CHAT.facts({}, body) == expected


@pytest.mark.parametrize(
    ("wire", "params", "body", "needle"),
    [
        (OPENAI_CHAT, {}, {"messages": []}, "'model'"),
        (OPENAI_CHAT, {}, {"model": "m"}, "'messages'"),
        (OPENAI_CHAT, {}, {**CHAT, "max_tokens": "5"}, "'max_tokens'"),
        (OPENAI_RESPONSES, {}, {"input": "hi"}, "'model'"),
        (OPENAI_RESPONSES, {}, {"model": "m"}, "'input'"),
        (ANTHROPIC, {}, {"messages": [], "max_tokens": 5}, "model"),
        (ANTHROPIC, {}, {"model": "m", "max_tokens": 5}, "messages"),
        (ANTHROPIC, {}, {"model": "m", "messages": []}, "max_tokens"),
        (ANTHROPIC, {}, {"model": "m", "messages": [], "max_tokens": True}, "max_tokens"),
        (AZURE, {"deployment": "d"}, CHAT, "api-version"),
        (GEMINI, {"model": "g", "method": "generateContent"}, {}, "contents"),
    ],
)
def test_facts_rejects(
    wire: WireFormat, params: dict[str, str], body: dict[str, Any], needle: str
) -> None:
    with pytest.raises(RequestError) as info:
        wire.facts(params, body)
    assert info.value.status == 400 and needle in info.value.message


def test_other_facts() -> None:
    responses = OPENAI_RESPONSES.facts({}, {"model": "m", "input": [], "max_output_tokens": 9})
    assert responses == RequestFacts("openai-responses", "m", False, True, 9)
    body = {"model": "c", "messages": [], "max_tokens": 3, "stream": True}
    assert ANTHROPIC.facts({}, body) == RequestFacts("anthropic", "c", True, True, 3)
    params = {"deployment": "dep", "api-version": "2024-10-21"}
    assert AZURE.facts(params, {"messages": []}).model == "dep"
    assert AZURE.facts(params, CHAT) == RequestFacts("azure", "gpt-4o", False)
    gemini = {"contents": [], "generationConfig": {"maxOutputTokens": 4}}
    params = {"model": "gemini-2.5-flash", "method": "streamGenerateContent", "alt": "sse"}
    assert GEMINI.facts(params, gemini) == RequestFacts("gemini", "gemini-2.5-flash", True, True, 4)
    params["method"] = "generateContent"
    assert not GEMINI.facts(params, {"contents": []}).stream
