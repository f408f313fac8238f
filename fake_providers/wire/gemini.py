"""Google Gemini wire format: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent`.

Each streamed event is a whole `GenerateContentResponse`; the last carries `finishReason`.
With `?alt=sse` they are `data:` lines (no terminator event); without it the response is
one JSON array sent piecewise as `[{...}`, `,\r\n{...}`, ..., `]`. The two framings are
two `GeminiWire` objects, chosen by the route.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from fake_providers.content import Completion, FinishReason
from fake_providers.kinds import ProviderKind
from fake_providers.wire.base import RequestError, RequestFacts, dumps, json_bytes, text_json

FINISH_REASONS: Mapping[FinishReason, str] = {
    FinishReason.STOP: "STOP",
    FinishReason.LENGTH: "MAX_TOKENS",
    FinishReason.TOOL_CALLS: "STOP",  # Gemini reports function calls with a plain STOP
}
STATUSES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
STREAM_METHOD = "streamGenerateContent"
_TRUNCATED = '{"candidates":[{"content":{"parts":[{"text":"tru'
_OPEN = b'{"candidates":[{"content":{"parts":['


def error_object(status: int, message: str) -> dict[str, Any]:
    name = STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": name}}


def function_call_part(name: str, arguments: str) -> dict[str, Any]:
    args = json.loads(arguments) if arguments else {}
    return {"functionCall": {"name": name, "args": args}}


class GeminiWire:
    """The Gemini `WireFormat`; `sse` picks `alt=sse` framing over the streamed JSON array."""

    __slots__ = ("sse",)

    def __init__(self, *, sse: bool) -> None:
        self.sse = sse

    @property
    def kind(self) -> ProviderKind:
        return ProviderKind.GEMINI

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        """`contents` is required; the model and the stream flag come from the URL path."""
        if not isinstance(body.get("contents"), list):
            raise RequestError(400, "Invalid JSON payload: required field 'contents' is missing.")
        config = body.get("generationConfig")
        limit = config.get("maxOutputTokens") if isinstance(config, Mapping) else None
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise RequestError(400, "generationConfig.maxOutputTokens must be an integer.")
        return RequestFacts(
            kind=self.kind,
            model=path_params.get("model", ""),
            stream=path_params.get("method") == STREAM_METHOD,
            include_usage=True,
            max_tokens=limit,
        )

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        """One GenerateContentResponse per event, framed as SSE or as pieces of one array.

        Every text chunk but the last is a mid-stream document; the last part (the final
        text chunk, or all function calls in one part) carries `finishReason` and usage.
        """
        if self.sse:
            first, lead, end = b"data: ", b"data: ", b"\r\n\r\n"
        else:
            first, lead, end = b"[", b",\r\n", b""
        tail = ',"modelVersion":' + dumps(completion.model)
        tail += ',"responseId":' + dumps(completion.response_id) + "}"
        usage = completion.usage
        running = {"promptTokenCount": usage.input_tokens, "totalTokenCount": usage.input_tokens}
        mid_tail = (
            '}],"role":"model"},"index":0}],"usageMetadata":' + dumps(running) + tail
        ).encode() + end
        texts, calls = completion.text_chunks, completion.tool_calls
        mids = len(texts) if calls else max(len(texts) - 1, 0)
        head, next_head = first + _OPEN + b'{"text":', lead + _OPEN + b'{"text":'
        for text in islice(texts, mids):
            yield head + text_json(text) + mid_tail
            head = next_head
        if calls:
            last = ",".join(dumps(function_call_part(c.name, c.arguments)) for c in calls)
        else:
            last = '{"text":' + dumps(texts[-1] if texts else "") + "}"
        final = {
            "promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.total_tokens,
        }
        yield (
            (lead if mids else first)
            + _OPEN
            + (
                last
                + '],"role":"model"},"finishReason":"'
                + FINISH_REASONS[completion.finish]
                + '","index":0}],"usageMetadata":'
                + dumps(final)
                + tail
            ).encode()
            + end
        )
        if not self.sse:
            yield b"]"

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        parts: list[dict[str, Any]] = []
        if completion.text or not completion.tool_calls:
            parts.append({"text": completion.text})
        parts.extend(function_call_part(c.name, c.arguments) for c in completion.tool_calls)
        usage = completion.usage
        candidate = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": FINISH_REASONS[completion.finish],
            "index": 0,
        }
        return json_bytes(
            {
                "candidates": [candidate],
                "usageMetadata": {
                    "promptTokenCount": usage.input_tokens,
                    "candidatesTokenCount": usage.output_tokens,
                    "totalTokenCount": usage.total_tokens,
                },
                "modelVersion": completion.model,
                "responseId": completion.response_id,
            }
        )

    def error_body(self, status: int, message: str) -> bytes:
        return json_bytes(error_object(status, message))

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        """An `{"error": ...}` element; in array framing it also closes the array.

        The array form assumes at least one element was already sent (it starts with a comma).
        """
        error = json_bytes(error_object(500, message))
        if self.sse:
            return b"data: " + error + b"\r\n\r\n"
        return b",\r\n" + error + b"]"

    def malformed_event(self) -> bytes:
        if self.sse:
            return b"data: " + _TRUNCATED.encode() + b"\r\n\r\n"
        return b",\r\n" + _TRUNCATED.encode()


GEMINI = GeminiWire(sse=True)
GEMINI_JSON_ARRAY = GeminiWire(sse=False)
