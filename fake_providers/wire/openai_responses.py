"""OpenAI Responses API wire format: `POST /v1/responses`.

Streams typed events (`event: <type>` plus a `data:` object with the same `type` and a
`sequence_number` counting from 0): the response lifecycle around one output item per
message or function call. The `response` snapshots carry every field the SDK requires.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fake_providers.content import Completion, FinishReason, Usage
from fake_providers.wire.base import RequestError, RequestFacts, json_bytes, sse
from fake_providers.wire.openai_chat import openai_error, optional_int, require_str

MALFORMED = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"msg_malformed","delta":"trunc\n\n'
)

_Emit = Callable[[str, dict[str, Any]], None]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def response_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    completion: Completion,
    *,
    status: str,
    output: list[dict[str, Any]],
    max_output_tokens: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full `response` object in `status`; usage only once the response has ended."""
    ended = status in ("completed", "incomplete")
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": completion.response_id,
        "object": "response",
        "created_at": int(completion.created),
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": max_output_tokens,
        "model": completion.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": response_usage(completion.usage) if ended else None,
        "user": None,
        "metadata": {},
    }


def message_id(completion: Completion) -> str:
    return "msg_" + completion.response_id


def call_item_id(completion: Completion, index: int) -> str:
    return f"fc_{completion.response_id}_{index}"


def has_message(completion: Completion) -> bool:
    """A message item is sent when there is text, or when there is nothing else to send."""
    return bool(completion.text_chunks) or not completion.tool_calls


def _message_item(completion: Completion, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {
        "id": message_id(completion),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(completion: Completion, index: int, status: str, arguments: str) -> dict[str, Any]:
    call = completion.tool_calls[index]
    return {
        "id": call_item_id(completion, index),
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call.id,
        "name": call.name,
    }


def final_output(completion: Completion) -> list[dict[str, Any]]:
    """The finished output items, as in `response.completed` and the non-stream body."""
    output: list[dict[str, Any]] = []
    if has_message(completion):
        output.append(_message_item(completion, _item_status(completion), completion.text))
    for index, call in enumerate(completion.tool_calls):
        output.append(_call_item(completion, index, "completed", call.arguments))
    return output


def _item_status(completion: Completion) -> str:
    return "incomplete" if completion.finish is FinishReason.LENGTH else "completed"


def event_count(completion: Completion) -> int:
    """How many events `stream_events` produces: the next free sequence number after them."""
    count = 3  # created, in_progress, completed/incomplete
    if has_message(completion):
        count += 5 + len(completion.text_chunks)
    for call in completion.tool_calls:
        count += 3 + len(call.argument_chunks())
    return count


class ResponsesWire:
    """The Responses API `WireFormat`."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        return "openai-responses"

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        model = require_str(body, "model")
        if not isinstance(body.get("input"), str | list):
            raise RequestError(400, "Missing required parameter: 'input' (a string or a list).")
        return RequestFacts(
            kind=self.kind,
            model=model,
            stream=body.get("stream") is True,
            include_usage=True,
            max_tokens=optional_int(body, "max_output_tokens"),
        )

    def stream_events(self, completion: Completion, facts: RequestFacts) -> list[bytes]:
        events: list[bytes] = []

        def emit(kind: str, fields: dict[str, Any]) -> None:
            fields["type"] = kind
            fields["sequence_number"] = len(events)
            events.append(sse(fields, kind))

        limit = facts.max_tokens
        start = response_object(
            completion, status="in_progress", output=[], max_output_tokens=limit
        )
        emit("response.created", {"response": start})
        emit("response.in_progress", {"response": start})
        index = 0
        if has_message(completion):
            self._message_events(completion, emit, events)
            index = 1
        for call_index, call in enumerate(completion.tool_calls):
            item_id = call_item_id(completion, call_index)
            item = _call_item(completion, call_index, "in_progress", "")
            emit("response.output_item.added", {"output_index": index, "item": item})
            for fragment in call.argument_chunks():
                fields = {"item_id": item_id, "output_index": index, "delta": fragment}
                emit("response.function_call_arguments.delta", fields)
            fields = {"item_id": item_id, "output_index": index, "arguments": call.arguments}
            emit("response.function_call_arguments.done", fields)
            item = _call_item(completion, call_index, "completed", call.arguments)
            emit("response.output_item.done", {"output_index": index, "item": item})
            index += 1
        incomplete = completion.finish is FinishReason.LENGTH
        status = "incomplete" if incomplete else "completed"
        end = response_object(
            completion, status=status, output=final_output(completion), max_output_tokens=limit
        )
        emit("response.incomplete" if incomplete else "response.completed", {"response": end})
        return events

    @staticmethod
    def _message_events(completion: Completion, emit: _Emit, events: list[bytes]) -> None:
        """The message item at output 0; text deltas are templated, the hot path."""
        item_id = message_id(completion)
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        added = _message_item(completion, "in_progress", None)
        emit("response.output_item.added", {"output_index": 0, "item": added})
        emit("response.content_part.added", {**where, "part": _text_part("")})
        head = (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            '"item_id":' + _dumps(item_id) + ',"output_index":0,"content_index":0,"delta":'
        ).encode()
        for text in completion.text_chunks:
            tail = ',"logprobs":[],"sequence_number":' + str(len(events)) + "}\n\n"
            events.append(head + (_dumps(text) + tail).encode())
        text = completion.text
        emit("response.output_text.done", {**where, "text": text, "logprobs": []})
        emit("response.content_part.done", {**where, "part": _text_part(text)})
        done = _message_item(completion, _item_status(completion), text)
        emit("response.output_item.done", {"output_index": 0, "item": done})

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        status = "incomplete" if completion.finish is FinishReason.LENGTH else "completed"
        output = final_output(completion)
        body = response_object(
            completion, status=status, output=output, max_output_tokens=facts.max_tokens
        )
        return json_bytes(body)

    def error_body(self, status: int, message: str) -> bytes:
        return json_bytes(openai_error(status, message))

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        """`response.failed`, numbered after every event the full stream would have had."""
        error = {"code": "server_error", "message": message}
        failed = response_object(completion, status="failed", output=[], error=error)
        data = {
            "type": "response.failed",
            "sequence_number": event_count(completion),
            "response": failed,
        }
        return sse(data, "response.failed")

    def malformed_event(self) -> bytes:
        return MALFORMED


OPENAI_RESPONSES = ResponsesWire()
