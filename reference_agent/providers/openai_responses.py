"""OpenAI Responses API: `POST {base_url}/responses`, streamed as typed events.

Only a few event types matter to us: text deltas, finished output items (a function call
arrives whole in `response.output_item.done`), and the terminal `response.completed`,
`response.incomplete` (ran out of tokens) or `response.failed` / `error`. The rest of the
lifecycle (created, in_progress, part added ...) is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.config import AgentConfig
from reference_agent.model import ToolCall, Usage
from reference_agent.providers.base import (
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallDone,
)
from reference_agent.providers.http import (
    CodecClient,
    WireRequest,
    arguments_json,
    base_url,
    load_json,
    parse_arguments,
    summary_text,
)
from reference_agent.providers.openai_chat import openai_error, require_call_id
from reference_agent.providers.sse import SSEEvent


def input_items(request: ModelRequest) -> list[dict[str, Any]]:
    """Our transcript as Responses input items; tool traffic becomes function_call items."""
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "user":
            items.append({"type": "message", "role": "user", "content": message.content})
        elif message.role == "summary":
            content = summary_text(message.content)
            items.append({"type": "message", "role": "user", "content": content})
        elif message.role == "assistant":
            if message.content or not message.tool_calls:
                content = message.content
                items.append({"type": "message", "role": "assistant", "content": content})
            items.extend(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": arguments_json(call.arguments),
                }
                for call in message.tool_calls
            )
        elif message.role == "tool":
            call_id = require_call_id(message)
            output = message.content
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
        else:
            raise FatalProviderError(f"cannot send a message with role {message.role!r}")
    return items


def responses_usage(response: Mapping[str, Any]) -> Usage:
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))


def _tool_call(item: Mapping[str, Any]) -> ToolCallDone:
    name = item["name"]
    arguments = parse_arguments(item.get("arguments") or "", name)
    return ToolCallDone(ToolCall(item["call_id"], name, arguments))


def _ending(response: Mapping[str, Any], status: str, tool_calls: bool) -> Finished:
    """The `Finished` for a completed or incomplete response; a failed one raises."""
    if status == "failed":
        raise openai_error(response.get("error") or {"message": "response failed"})
    if status == "incomplete":
        return Finished("length", responses_usage(response))
    return Finished("tool_calls" if tool_calls else "stop", responses_usage(response))


class ResponsesStream:
    """Decoder state for one streamed response."""

    def __init__(self) -> None:
        self.done = False
        self._tool_calls = False

    def feed(self, event: SSEEvent) -> list[ModelEvent]:
        data = load_json(event.data, "responses event")
        kind = data.get("type") or event.event
        if kind == "response.output_text.delta":
            return [TextDelta(data["delta"])] if data.get("delta") else []
        if kind == "response.output_item.done" and data["item"].get("type") == "function_call":
            self._tool_calls = True
            return [_tool_call(data["item"])]
        if kind == "error":
            self.done = True
            raise openai_error(data)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.done = True
            status = kind.removeprefix("response.")
            return [_ending(data["response"], status, self._tool_calls)]
        return []


class ResponsesCodec:
    """The Responses API wire format."""

    kind = ProviderKind.OPENAI_RESPONSES

    def __init__(self, *, url: str, headers: Mapping[str, str], model: str) -> None:
        self.url = url
        self.headers = dict(headers)
        self.model = model

    def build(self, request: ModelRequest) -> WireRequest:
        body: dict[str, Any] = {
            "model": self.model,
            "input": input_items(request),
            "stream": request.stream,
            "max_output_tokens": request.max_tokens,
        }
        if request.system:
            body["instructions"] = request.system
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                    "strict": False,  # strict schemas need extra rules our tools don't follow
                }
                for tool in request.tools
            ]
        return WireRequest(self.url, self.headers, body)

    def stream_decoder(self) -> ResponsesStream:
        return ResponsesStream()

    def decode_body(self, data: Any) -> list[ModelEvent]:
        if data.get("error") and data.get("status") != "failed":
            raise openai_error(data["error"])
        out: list[ModelEvent] = []
        tool_calls = False
        for item in data.get("output") or ():
            if item.get("type") == "message":
                out.extend(
                    TextDelta(part["text"])
                    for part in item.get("content") or ()
                    if part.get("type") == "output_text" and part.get("text")
                )
            elif item.get("type") == "function_call":
                tool_calls = True
                out.append(_tool_call(item))
        out.append(_ending(data, str(data.get("status")), tool_calls))
        return out


class OpenAIResponsesClient(CodecClient):
    """The OpenAI Responses API with `Authorization: Bearer`."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient) -> None:
        codec = ResponsesCodec(
            url=base_url(config) + "/responses",
            headers={"authorization": f"Bearer {config.api_key}"},
            model=config.model,
        )
        super().__init__(config, http, codec)
