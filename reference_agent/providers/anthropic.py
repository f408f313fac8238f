"""Anthropic Messages: `POST {base_url}/v1/messages`, streamed as named events.

Content arrives per block: text blocks as `text_delta`s, tool_use blocks as
`input_json_delta` fragments that only parse once `content_block_stop` arrives. The stop
reason and final output tokens come in `message_delta`, and `message_stop` ends the
stream. Anthropic reports cached prompt tokens apart; we count them as input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.config import AgentConfig
from reference_agent.model import Message, ToolCall, Usage
from reference_agent.providers.base import (
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    ProviderError,
    TextDelta,
    ToolCallDone,
    TransientProviderError,
)
from reference_agent.providers.http import (
    CodecClient,
    WireRequest,
    base_url,
    load_json,
    parse_arguments,
    summary_text,
)
from reference_agent.providers.openai_chat import require_call_id
from reference_agent.providers.sse import SSEEvent

API_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error", "api_error"})


def anthropic_error(error: object) -> ProviderError:
    """An in-stream `error` event: overloaded/api errors pass with time, others do not."""
    if not isinstance(error, Mapping):
        return FatalProviderError(f"provider error: {error!r}")
    message = f"provider error in stream ({error.get('type')}): {error.get('message')}"
    if error.get("type") in TRANSIENT_ERROR_TYPES:
        return TransientProviderError(message)
    return FatalProviderError(message)


def stop_reason(raw: object) -> str:
    """end_turn/stop_sequence -> stop, max_tokens -> length, tool_use -> tool_calls."""
    if raw == "tool_use":
        return "tool_calls"
    return STOP_REASONS.get(str(raw), "stop")


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """The role and content blocks of one transcript message."""
    if message.role == "user":
        return "user", _text(message.content)
    if message.role == "summary":
        return "user", _text(summary_text(message.content))
    if message.role == "tool":
        result = {"type": "tool_result", "tool_use_id": require_call_id(message)}
        if message.content:
            result["content"] = message.content
        return "user", [result]
    if message.role == "assistant":
        uses = [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
            for call in message.tool_calls
        ]
        return "assistant", _text(message.content) + uses
    raise FatalProviderError(f"cannot send a message with role {message.role!r}")


def _text(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] if text else []  # empty text blocks are refused


def anthropic_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Our transcript as Messages turns; consecutive same-role messages share one turn, so
    several tool results answer one assistant turn together, as the API wants."""
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def anthropic_usage(usage: object, prior: Usage | None = None) -> Usage:
    """Usage from `message_start` or `message_delta` (which may omit the input side)."""
    prior = prior or Usage()
    if not isinstance(usage, Mapping):
        return prior
    inputs = [usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens")]
    inputs.append(usage.get("cache_read_input_tokens"))
    known = [int(n) for n in inputs if n is not None]
    output = usage.get("output_tokens")
    return Usage(
        sum(known) if known else prior.input_tokens,
        int(output) if output is not None else prior.output_tokens,
    )


class AnthropicStream:
    """Decoder state for one streamed message."""

    def __init__(self) -> None:
        self.done = False
        self._usage = Usage()
        self._stop: object = None
        self._tools: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, json

    def feed(self, event: SSEEvent) -> list[ModelEvent]:
        data = load_json(event.data, "messages event")
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(delta["text"])]
            if delta.get("type") == "input_json_delta":
                self._tools[int(data["index"])][2].append(delta.get("partial_json") or "")
        elif kind == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                self._tools[int(data["index"])] = (block["id"], block["name"], [])
        elif kind == "content_block_stop":
            tool = self._tools.pop(int(data["index"]), None)
            if tool is not None:
                call_id, name, pieces = tool
                arguments = parse_arguments("".join(pieces), name)
                return [ToolCallDone(ToolCall(call_id, name, arguments))]
        elif kind == "message_start":
            self._usage = anthropic_usage(data["message"].get("usage"))
        elif kind == "message_delta":
            self._stop = data["delta"].get("stop_reason")
            self._usage = anthropic_usage(data.get("usage"), self._usage)
        elif kind == "message_stop":
            self.done = True
            return [Finished(stop_reason(self._stop), self._usage)]
        elif kind == "error":
            self.done = True
            raise anthropic_error(data.get("error"))
        return []


class AnthropicCodec:
    """The Anthropic Messages wire format."""

    kind = ProviderKind.ANTHROPIC

    def __init__(self, *, url: str, headers: Mapping[str, str], model: str) -> None:
        self.url = url
        self.headers = dict(headers)
        self.model = model

    def build(self, request: ModelRequest) -> WireRequest:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": anthropic_messages(request),
            "stream": request.stream,
        }
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        return WireRequest(self.url, self.headers, body)

    def stream_decoder(self) -> AnthropicStream:
        return AnthropicStream()

    def decode_body(self, data: Any) -> list[ModelEvent]:
        if data.get("type") == "error":
            raise anthropic_error(data.get("error"))
        out: list[ModelEvent] = []
        for block in data["content"]:
            if block.get("type") == "text" and block.get("text"):
                out.append(TextDelta(block["text"]))
            elif block.get("type") == "tool_use":
                arguments = block.get("input") or {}
                if not isinstance(arguments, dict):
                    raise FatalProviderError(f"tool_use input of {block['name']!r} is no object")
                out.append(ToolCallDone(ToolCall(block["id"], block["name"], arguments)))
        out.append(Finished(stop_reason(data.get("stop_reason")), anthropic_usage(data["usage"])))
        return out


class AnthropicClient(CodecClient):
    """Anthropic Messages with `x-api-key` and a pinned `anthropic-version`."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient) -> None:
        codec = AnthropicCodec(
            url=base_url(config) + "/v1/messages",
            headers={"x-api-key": config.api_key, "anthropic-version": API_VERSION},
            model=config.model,
        )
        super().__init__(config, http, codec)
