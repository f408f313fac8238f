"""Anthropic Messages wire format: `POST /v1/messages`.

Streams named events: `message_start`, then per content block `content_block_start`,
deltas and `content_block_stop` (one `ping` after the first block starts, as the real API
sends it), then `message_delta` with the stop reason and `message_stop`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from fake_providers.content import Completion, FinishReason, ToolCall
from fake_providers.kinds import ProviderKind
from fake_providers.wire.base import RequestError, RequestFacts, json_bytes, sse, text_json

STOP_REASONS: Mapping[FinishReason, str] = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
}
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
PING = sse({"type": "ping"}, "ping")
MESSAGE_STOP = sse({"type": "message_stop"}, "message_stop")
# A text delta event is these two around the JSON-encoded text.
TEXT_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
TEXT_DELTA_TAIL = b"}}\n\n"
MALFORMED = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tru\n\n'
)


def error_object(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def tool_input(call: ToolCall) -> Any:
    """The tool call's arguments decoded, as `tool_use.input` carries them."""
    return json.loads(call.arguments) if call.arguments else {}


def has_text_block(completion: Completion) -> bool:
    """A text block is sent when there is text, or when there is nothing else to send."""
    return bool(completion.text_chunks) or not completion.tool_calls


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _message(completion: Completion, content: list[dict[str, Any]], done: bool) -> dict[str, Any]:
    usage = completion.usage
    return {
        "id": completion.response_id,
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": STOP_REASONS[completion.finish] if done else None,
        "stop_sequence": None,
        "usage": _usage(usage.input_tokens, usage.output_tokens if done else 1),
    }


def _require(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        raise RequestError(400, f"{name}: Field required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RequestError(400, f"{name}: Input should be {what}")
    return value


class AnthropicWire:
    """The Anthropic Messages `WireFormat`."""

    __slots__ = ()

    @property
    def kind(self) -> ProviderKind:
        return ProviderKind.ANTHROPIC

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        """Anthropic requires `model`, `messages` and `max_tokens`; usage always streams."""
        model = _require(body, "model", str, "a valid string")
        _require(body, "messages", list, "a valid list")
        max_tokens = _require(body, "max_tokens", int, "a valid integer")
        return RequestFacts(
            kind=self.kind,
            model=model,
            stream=body.get("stream") is True,
            include_usage=True,
            max_tokens=max_tokens,
        )

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        yield sse(
            {"type": "message_start", "message": _message(completion, [], False)},
            "message_start",
        )
        index = 0
        if has_text_block(completion):
            text_block: dict[str, Any] = {"type": "text", "text": ""}
            start = {"type": "content_block_start", "index": 0, "content_block": text_block}
            yield sse(start, "content_block_start")
            yield PING
            for text in completion.text_chunks:
                yield TEXT_DELTA_HEAD + text_json(text) + TEXT_DELTA_TAIL
            yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            index = 1
        for call in completion.tool_calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            start = {"type": "content_block_start", "index": index, "content_block": block}
            yield sse(start, "content_block_start")
            if index == 0:
                yield PING
            for fragment in call.argument_chunks():
                delta = {"type": "input_json_delta", "partial_json": fragment}
                data = {"type": "content_block_delta", "index": index, "delta": delta}
                yield sse(data, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        stop = {"stop_reason": STOP_REASONS[completion.finish], "stop_sequence": None}
        usage = {"output_tokens": completion.usage.output_tokens}
        yield sse({"type": "message_delta", "delta": stop, "usage": usage}, "message_delta")
        yield MESSAGE_STOP

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        content: list[dict[str, Any]] = []
        if has_text_block(completion):
            content.append({"type": "text", "text": completion.text})
        content.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c)}
            for c in completion.tool_calls
        )
        return json_bytes(_message(completion, content, True))

    def error_body(self, status: int, message: str) -> bytes:
        return json_bytes(error_object(status, message))

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        """`event: error` with `overloaded_error`, the mid-stream failure Anthropic sends."""
        return sse(error_object(529, message), "error")

    def malformed_event(self) -> bytes:
        return MALFORMED


ANTHROPIC = AnthropicWire()
