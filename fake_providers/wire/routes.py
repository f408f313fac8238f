"""The route table: which wire format answers a request line, and the URL facts it needs.

Paths are matched exactly (an optional trailing slash is tolerated). `route()` covers model
calls only; `GET /v1/models` is answered by the server with `models_list_body()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from fake_providers.content import ContentSpec
from fake_providers.kinds import ProviderKind
from fake_providers.wire.anthropic import ANTHROPIC
from fake_providers.wire.azure import AZURE
from fake_providers.wire.base import RequestFacts, WireFormat, json_bytes
from fake_providers.wire.gemini import GEMINI, GEMINI_JSON_ARRAY
from fake_providers.wire.openai_chat import OPENAI_CHAT
from fake_providers.wire.openai_responses import OPENAI_RESPONSES

SSE_MEDIA_TYPE = "text/event-stream"
JSON_MEDIA_TYPE = "application/json"
MODELS_PATH = "/v1/models"
MODEL_IDS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "o4-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-flash",
)

_FIXED: Mapping[str, WireFormat] = {
    "/v1/chat/completions": OPENAI_CHAT,
    "/v1/responses": OPENAI_RESPONSES,
    "/v1/messages": ANTHROPIC,
}
_AZURE = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_GEMINI = re.compile(r"/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent)")


@dataclass(frozen=True, slots=True)
class Route:
    """A matched model call: the wire format, and the path/query values its `facts()` reads.

    `stream_media_type` is the Content-Type of a streamed answer (Gemini without `alt=sse`
    streams a JSON array); non-streamed answers and errors are always `application/json`.
    """

    wire: WireFormat
    params: Mapping[str, str] = field(default_factory=dict)
    stream_media_type: str = SSE_MEDIA_TYPE


def _strip(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def route(method: str, path: str, query: Mapping[str, str]) -> Route | None:
    """The route for a request, or None when no provider serves this method and path.

    `path` excludes the query string; `query` holds the decoded query parameters.
    """
    if method.upper() != "POST":
        return None
    path = _strip(path)
    wire = _FIXED.get(path)
    if wire is not None:
        return Route(wire)
    if (match := _AZURE.fullmatch(path)) is not None:
        params = {"deployment": unquote(match.group(1))}
        if "api-version" in query:
            params["api-version"] = query["api-version"]
        return Route(AZURE, params)
    if (match := _GEMINI.fullmatch(path)) is not None:
        params = {"model": unquote(match.group(1)), "method": match.group(2)}
        alt = query.get("alt")
        if alt is not None:
            params["alt"] = alt
        if match.group(2) == "streamGenerateContent" and alt != "sse":
            return Route(GEMINI_JSON_ARRAY, params, JSON_MEDIA_TYPE)
        return Route(GEMINI, params)
    return None


def is_models_list(method: str, path: str) -> bool:
    """Whether this is `GET /v1/models`, answered with `models_list_body()`."""
    return method.upper() == "GET" and _strip(path) == MODELS_PATH


def models_list_body(created: int = 1_700_000_000) -> bytes:
    """An OpenAI-shaped model list, enough for clients that probe `/v1/models` at start-up."""
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": "cancel-harness"}
        for model in MODEL_IDS
    ]
    return json_bytes({"object": "list", "data": data})


def events_before_text(kind: ProviderKind) -> int:
    """How many events a streamed answer of this kind sends before its first text delta
    (role chunks, `message_start`, `response.created`, ...), found by encoding a probe."""
    wire = _BY_KIND[kind]
    probe = ContentSpec(text="probe").build(
        model="m", response_id="r", created=0, max_tokens=None, input_tokens=1
    )
    for index, event in enumerate(wire.stream_events(probe, RequestFacts(kind, "m", True))):
        if b"probe" in event:
            return index
    raise AssertionError(f"{kind} streams no text event")  # every format carries the text


_BY_KIND: Mapping[ProviderKind, WireFormat] = {
    w.kind: w for w in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, AZURE, GEMINI)
}
