"""OpenAI Chat Completions: `POST {base_url}/chat/completions`, streamed as `data:` chunks.

Text arrives as `delta.content`; a tool call arrives in pieces keyed by `index` (id and
name first, then argument fragments), so calls are assembled here and emitted once the
choice's `finish_reason` arrives. Usage comes in a choice-less chunk just before
`data: [DONE]`, hence `Finished` is emitted at `[DONE]`. Azure reuses `ChatCodec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    arguments_json,
    base_url,
    finish_reason,
    load_json,
    parse_arguments,
    summary_text,
)
from reference_agent.providers.sse import SSEEvent

# Error types/codes (OpenAI and compatible servers) that say "try again later".
TRANSIENT_ERROR_CODES = frozenset(
    {"server_error", "rate_limit_exceeded", "overloaded", "service_unavailable", "timeout"}
)


def openai_error(error: object) -> ProviderError:
    """An in-stream OpenAI error object as a transient or fatal error."""
    if not isinstance(error, Mapping):
        return FatalProviderError(f"provider error: {error!r}")
    message = str(error.get("message") or "unknown error")
    kinds = {str(error.get("type")), str(error.get("code"))}
    if kinds & TRANSIENT_ERROR_CODES:
        return TransientProviderError(f"provider error in stream: {message}")
    return FatalProviderError(f"provider error in stream: {message}")


def require_call_id(message: Message) -> str:
    if not message.tool_call_id:
        raise FatalProviderError("a tool result message needs its tool_call_id")
    return message.tool_call_id


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Our transcript in Chat Completions form; summaries go as user messages."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "summary":
            out.append({"role": "user", "content": summary_text(message.content)})
        elif message.role == "tool":
            call_id = require_call_id(message)
            out.append({"role": "tool", "tool_call_id": call_id, "content": message.content})
        elif message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                entry["content"] = message.content or None
                entry["tool_calls"] = [_wire_call(call) for call in message.tool_calls]
            out.append(entry)
        else:
            raise FatalProviderError(f"cannot send a message with role {message.role!r}")
    return out


def _wire_call(call: ToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": arguments_json(call.arguments)}
    return {"id": call.id, "type": "function", "function": function}


def chat_usage(usage: object) -> Usage:
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def done(self) -> ToolCallDone:
        name = self.name
        return ToolCallDone(ToolCall(self.id, name, parse_arguments("".join(self.arguments), name)))


class ChatStream:
    """Decoder state for one streamed chat completion (choice 0 only)."""

    def __init__(self) -> None:
        self.done = False
        self._calls: dict[int, _PartialCall] = {}
        self._flushed = False
        self._finish: object = None
        self._usage = Usage()

    def feed(self, event: SSEEvent) -> list[ModelEvent]:
        if event.data.strip() == "[DONE]":
            self.done = True
            reason = finish_reason(self._finish, tool_calls=bool(self._calls))
            return [*self._flush_calls(), Finished(reason, self._usage)]
        chunk = load_json(event.data, "chat completion chunk")
        if chunk.get("error"):
            raise openai_error(chunk["error"])
        if chunk.get("usage"):
            self._usage = chat_usage(chunk["usage"])
        out: list[ModelEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(TextDelta(delta["content"]))
            for piece in delta.get("tool_calls") or ():
                partial = self._calls.setdefault(int(piece.get("index", 0)), _PartialCall())
                partial.id = piece.get("id") or partial.id
                function = piece.get("function") or {}
                partial.name = function.get("name") or partial.name
                if function.get("arguments"):
                    partial.arguments.append(function["arguments"])
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                out.extend(self._flush_calls())
        return out

    def _flush_calls(self) -> list[ModelEvent]:
        if self._flushed:
            return []
        self._flushed = True
        return [self._calls[index].done() for index in sorted(self._calls)]


class ChatCodec:
    """The Chat Completions wire format, for any URL and auth headers (OpenAI, Azure)."""

    def __init__(
        self, *, kind: ProviderKind, url: str, headers: Mapping[str, str], model: str
    ) -> None:
        self.kind = kind
        self.url = url
        self.headers = dict(headers)
        self.model = model

    def build(self, request: ModelRequest) -> WireRequest:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(request),
            "stream": request.stream,
            "max_completion_tokens": request.max_tokens,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        return WireRequest(self.url, self.headers, body)

    def stream_decoder(self) -> ChatStream:
        return ChatStream()

    def decode_body(self, data: Any) -> list[ModelEvent]:
        if data.get("error"):
            raise openai_error(data["error"])
        choice = data["choices"][0]
        message = choice["message"]
        out: list[ModelEvent] = []
        if message.get("content"):
            out.append(TextDelta(message["content"]))
        calls = message.get("tool_calls") or ()
        for call in calls:
            name = call["function"]["name"]
            arguments = parse_arguments(call["function"].get("arguments") or "", name)
            out.append(ToolCallDone(ToolCall(call["id"], name, arguments)))
        reason = finish_reason(choice.get("finish_reason"), tool_calls=bool(calls))
        out.append(Finished(reason, chat_usage(data.get("usage"))))
        return out


class OpenAIChatClient(CodecClient):
    """OpenAI Chat Completions with `Authorization: Bearer`."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient) -> None:
        codec = ChatCodec(
            kind=ProviderKind.OPENAI_CHAT,
            url=base_url(config) + "/chat/completions",
            headers={"authorization": f"Bearer {config.api_key}"},
            model=config.model,
        )
        super().__init__(config, http, codec)
