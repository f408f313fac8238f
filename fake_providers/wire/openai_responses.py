"""OpenAI Responses API wire format: `POST /v1/responses`.

Streams typed events (`event: <type>` plus a `data:` object with the same `type` and a
`sequence_number` counting from 0): the response lifecycle around one output item per
message or function call. The `response` snapshots carry every field the SDK requires.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fake_providers.content import Completion, FinishReason, Usage
from fake_providers.kinds import ProviderKind
from fake_providers.wire.base import RequestError, RequestFacts, dumps, json_bytes, sse, text_json
from fake_providers.wire.openai_chat import openai_error, optional_int, require_str

MALFORMED = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"msg_malformed","delta":"trunc\n\n'
)


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


def _event(kind: str, fields: dict[str, Any], sequence_number: int) -> bytes:
    """One typed event: `fields` plus `type` and `sequence_number`, in that key order."""
    fields["type"] = kind
    fields["sequence_number"] = sequence_number
    return sse(fields, kind)


def _lifecycle(
    kind: str, sequence_number: int, completion: Completion, status: str, limit: int | None
) -> bytes:
    """A `response.*` lifecycle event; its snapshot is built here so no generator holds it."""
    output = final_output(completion) if status in ("completed", "incomplete") else []
    response = response_object(completion, status=status, output=output, max_output_tokens=limit)
    return _event(kind, {"response": response}, sequence_number)


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
    def kind(self) -> ProviderKind:
        return ProviderKind.OPENAI_RESPONSES

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

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        """Lazily; `event_count` must agree with how many events this yields."""
        limit = facts.max_tokens
        has_text = has_message(completion)
        if has_text:
            item_id = message_id(completion)
            # Text deltas are the hot path: only the text and the sequence number vary.
            delta_head = (
                'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                '"item_id":' + dumps(item_id) + ',"output_index":0,"content_index":0,"delta":'
            ).encode()
        yield _lifecycle("response.created", 0, completion, "in_progress", limit)
        yield _lifecycle("response.in_progress", 1, completion, "in_progress", limit)
        seq = 2
        index = 0
        if has_text:
            added = _message_item(completion, "in_progress", None)
            yield _event("response.output_item.added", {"output_index": 0, "item": added}, seq)
            where = {"item_id": item_id, "output_index": 0, "content_index": 0}
            part = {**where, "part": _text_part("")}
            yield _event("response.content_part.added", part, seq + 1)
            seq += 2
            for text in completion.text_chunks:
                tail = ',"logprobs":[],"sequence_number":' + str(seq) + "}\n\n"
                yield delta_head + text_json(text) + tail.encode()
                seq += 1
            text = completion.text
            done_text = {**where, "text": text, "logprobs": []}
            yield _event("response.output_text.done", done_text, seq)
            yield _event("response.content_part.done", {**where, "part": _text_part(text)}, seq + 1)
            done = _message_item(completion, _item_status(completion), text)
            yield _event("response.output_item.done", {"output_index": 0, "item": done}, seq + 2)
            seq += 3
            index = 1
        for call_index, call in enumerate(completion.tool_calls):
            call_id = call_item_id(completion, call_index)
            item = _call_item(completion, call_index, "in_progress", "")
            yield _event("response.output_item.added", {"output_index": index, "item": item}, seq)
            seq += 1
            for fragment in call.argument_chunks():
                fields = {"item_id": call_id, "output_index": index, "delta": fragment}
                yield _event("response.function_call_arguments.delta", fields, seq)
                seq += 1
            fields = {"item_id": call_id, "output_index": index, "arguments": call.arguments}
            yield _event("response.function_call_arguments.done", fields, seq)
            item = _call_item(completion, call_index, "completed", call.arguments)
            done_call = {"output_index": index, "item": item}
            yield _event("response.output_item.done", done_call, seq + 1)
            seq += 2
            index += 1
        if completion.finish is FinishReason.LENGTH:
            yield _lifecycle("response.incomplete", seq, completion, "incomplete", limit)
        else:
            yield _lifecycle("response.completed", seq, completion, "completed", limit)

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
