"""Google Gemini: `POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse`
(or `:generateContent` without streaming), keyed by `x-goog-api-key`.

Every streamed event is a whole `GenerateContentResponse`: text parts arrive chunk by
chunk, a `functionCall` part arrives whole, `usageMetadata` is cumulative, and the chunk
carrying the candidate's `finishReason` is the last one (there is no terminator event).
Errors are `{"error": {"code", "message", "status"}}`, as a body or as an event. Function
calls carry an `id` only on newer models; without one we make up a local id, which we
never send back, and answer by function `name` as the API expects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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
    summary_text,
)
from reference_agent.providers.openai_chat import require_call_id
from reference_agent.providers.sse import SSEEvent

API_VERSION = "v1beta"
# Our own ids for function calls the model sent without one; never sent back to Gemini.
LOCAL_CALL_ID = "gemini-local-"
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
# google.rpc status codes (and their HTTP equivalents) that pass with time.
TRANSIENT_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
)
TRANSIENT_CODES = frozenset({408, 429, 500, 502, 503, 504})


def gemini_error(error: object) -> ProviderError:
    """An `error` object in a stream or body: overload and server faults pass with time."""
    if not isinstance(error, Mapping):
        return FatalProviderError(f"provider error: {error!r}")
    status, code = error.get("status"), error.get("code")
    message = f"provider error in stream ({status or code}): {error.get('message')}"
    if status in TRANSIENT_STATUSES or code in TRANSIENT_CODES:
        return TransientProviderError(message)
    return FatalProviderError(message)


def gemini_usage(metadata: object, prior: Usage | None = None) -> Usage:
    """`usageMetadata`; thinking tokens are billed as output, so they count as output."""
    if not isinstance(metadata, Mapping):
        return prior or Usage()
    output = int(metadata.get("candidatesTokenCount") or 0)
    output += int(metadata.get("thoughtsTokenCount") or 0)
    return Usage(int(metadata.get("promptTokenCount") or 0), output)


def _call_names(request: ModelRequest) -> dict[str, str]:
    """Tool call id -> function name, for answering each call by name."""
    return {c.id: c.name for m in request.messages for c in m.tool_calls}


def _parts(message: Message, names: Mapping[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The role and parts of one transcript message; empty text parts are left out."""
    text = [{"text": message.content}] if message.content else []
    if message.role == "user":
        return "user", text
    if message.role == "summary":
        return "user", [{"text": summary_text(message.content)}]
    if message.role == "assistant":
        calls = []
        for call in message.tool_calls:
            function: dict[str, Any] = {"name": call.name, "args": dict(call.arguments)}
            if not call.id.startswith(LOCAL_CALL_ID):
                function["id"] = call.id
            calls.append({"functionCall": function})
        return "model", text + calls
    if message.role == "tool":
        call_id = require_call_id(message)
        if call_id not in names:
            raise FatalProviderError(f"a tool result answers the unknown call id {call_id!r}")
        answer: dict[str, Any] = {"name": names[call_id], "response": {"result": message.content}}
        if not call_id.startswith(LOCAL_CALL_ID):
            answer["id"] = call_id
        return "user", [{"functionResponse": answer}]
    raise FatalProviderError(f"cannot send a message with role {message.role!r}")


def gemini_contents(request: ModelRequest) -> list[dict[str, Any]]:
    """Our transcript as Gemini contents; consecutive same-role messages share one content,
    so the function responses of one model turn answer it together."""
    names = _call_names(request)
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        role, parts = _parts(message, names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


class GeminiResponses:
    """Decoder state for one call: each `GenerateContentResponse` in, model events out."""

    def __init__(self) -> None:
        self.done = False
        self._usage = Usage()
        self._calls = 0

    def feed(self, event: SSEEvent) -> list[ModelEvent]:
        return self.response(load_json(event.data, "generateContent event"))

    def response(self, data: Any) -> list[ModelEvent]:
        if not isinstance(data, Mapping):
            raise FatalProviderError(f"a Gemini response is not a JSON object: {data!r:.80}")
        if "error" in data:
            self.done = True
            raise gemini_error(data["error"])
        self._usage = gemini_usage(data.get("usageMetadata"), self._usage)
        candidates = data.get("candidates") or ()
        if not candidates:
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                self.done = True
                raise FatalProviderError(f"Gemini blocked the prompt ({blocked})")
            return []
        candidate = candidates[0]
        out: list[ModelEvent] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if part.get("thought"):
                continue  # a thought summary, not the answer
            if part.get("text"):
                out.append(TextDelta(part["text"]))
            elif "functionCall" in part:
                out.append(self._call(part["functionCall"]))
        raw = candidate.get("finishReason")
        if raw:
            self.done = True
            reason = "tool_calls" if self._calls else FINISH_REASONS.get(str(raw), "stop")
            out.append(Finished(reason, self._usage))
        return out

    def _call(self, function: Mapping[str, Any]) -> ToolCallDone:
        self._calls += 1
        name = str(function["name"])
        arguments = function.get("args") or {}
        if not isinstance(arguments, dict):
            raise FatalProviderError(f"args of function call {name!r} are not a JSON object")
        call_id = str(function.get("id") or f"{LOCAL_CALL_ID}{uuid.uuid4().hex[:16]}")
        return ToolCallDone(ToolCall(call_id, name, arguments))


class GeminiCodec:
    """The Gemini generateContent wire format."""

    kind = ProviderKind.GEMINI

    def __init__(self, *, base: str, headers: Mapping[str, str], model: str) -> None:
        self.model_url = f"{base}/{API_VERSION}/models/{quote(model, safe='')}"
        self.headers = dict(headers)

    def build(self, request: ModelRequest) -> WireRequest:
        body: dict[str, Any] = {
            "contents": gemini_contents(request),
            "generationConfig": {"maxOutputTokens": request.max_tokens},
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        if request.tools:
            declarations = [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in request.tools
            ]
            body["tools"] = [{"functionDeclarations": declarations}]
        if request.stream:
            url = self.model_url + ":streamGenerateContent?alt=sse"
        else:
            url = self.model_url + ":generateContent"
        return WireRequest(url, self.headers, body)

    def stream_decoder(self) -> GeminiResponses:
        return GeminiResponses()

    def decode_body(self, data: Any) -> list[ModelEvent]:
        """One response, or the JSON array a stream without `alt=sse` would be."""
        decoder = GeminiResponses()
        out: list[ModelEvent] = []
        for item in data if isinstance(data, list) else [data]:
            out.extend(decoder.response(item))
        if not decoder.done:
            raise FatalProviderError("a Gemini response without a finishReason")
        return out


class GeminiClient(CodecClient):
    """Gemini with the `x-goog-api-key` header."""

    def __init__(self, config: AgentConfig, http: httpx.AsyncClient) -> None:
        codec = GeminiCodec(
            base=base_url(config), headers={"x-goog-api-key": config.api_key}, model=config.model
        )
        super().__init__(config, http, codec)
