"""OpenAI Chat Completions wire format: `POST /v1/chat/completions`.

Streams `chat.completion.chunk` objects as `data:` lines ending in `data: [DONE]`. The chunk
envelope (id, created, model) is encoded once per request and each chunk only encodes its
choice, which keeps the per-event cost to one small `json.dumps`. Azure reuses this encoder
through `ChatEncoder.choice_extra`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fake_providers.content import Completion, FinishReason, Usage
from fake_providers.kinds import ProviderKind
from fake_providers.wire.base import RequestError, RequestFacts, dumps, json_bytes, text_json

FINISH_REASONS: Mapping[FinishReason, str] = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
}
SYSTEM_FINGERPRINT = "fp_cancel_harness"
DONE = b"data: [DONE]\n\n"
MALFORMED = (
    b'data: {"id":"chatcmpl-malformed","object":"chat.completion.chunk","choices":'
    b'[{"index":0,"delta":{"content":"trunc\n\n'
)

# (type, code) per status, as the real API reports them; other statuses fall back by class.
_ERROR_TYPES: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    529: ("server_error", "overloaded"),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """The `{"error": {...}}` object OpenAI-style APIs return, with a type/code for `status`."""
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _ERROR_TYPES.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def optional_int(body: Mapping[str, Any], *names: str) -> int | None:
    """The first of `names` present in `body`, which must be an integer; 400 otherwise."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(400, f"Invalid type for '{name}': expected an integer.")
        return value
    return None


def require_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"Missing required parameter: '{name}' (a non-empty string).")
    return value


def chat_usage(usage: Usage) -> dict[str, Any]:
    """Chat-style usage: prompt/completion/total tokens plus the zeroed detail objects."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(frozen=True, slots=True)
class ChatEncoder:
    """The Chat Completions `WireFormat`; `choice_extra` is merged into every streamed choice."""

    kind: ProviderKind = ProviderKind.OPENAI_CHAT
    choice_extra: Mapping[str, Any] | None = None

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        return self.facts_with_default_model(body, None)

    def facts_with_default_model(
        self, body: Mapping[str, Any], default_model: str | None
    ) -> RequestFacts:
        """Validate like the real API; `default_model` stands in when the body has no model."""
        if default_model is not None and body.get("model") is None:
            model = default_model
        else:
            model = require_str(body, "model")
        if not isinstance(body.get("messages"), list):
            raise RequestError(400, "Missing required parameter: 'messages' (a list).")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, Mapping) and options.get("include_usage")
        return RequestFacts(
            kind=self.kind,
            model=model,
            stream=stream,
            include_usage=include_usage is True,
            max_tokens=optional_int(body, "max_completion_tokens", "max_tokens"),
        )

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        head = (
            'data: {"id":'
            + dumps(completion.response_id)
            + ',"object":"chat.completion.chunk","created":'
            + str(int(completion.created))
            + ',"model":'
            + dumps(completion.model)
            + ',"system_fingerprint":"'
            + SYSTEM_FINGERPRINT
            + '","choices":['
        ).encode()
        tail = b'],"usage":null}\n\n' if facts.include_usage else b"]}\n\n"
        extra = dumps(dict(self.choice_extra))[1:-1] if self.choice_extra else ""
        open_choice = '{"index":0,"delta":'
        close_mid = ',"logprobs":null,"finish_reason":null' + ("," + extra if extra else "") + "}"

        # Text deltas are the hot path: only the text itself is encoded per event.
        text_head = head + (open_choice + '{"content":').encode()
        text_tail = ("}" + close_mid).encode() + tail

        def chunk(delta_json: str) -> bytes:
            return head + (open_choice + delta_json + close_mid).encode() + tail

        # The API opens a text answer with content "" but a tool-only answer with null.
        opening = '""' if completion.text_chunks or not completion.tool_calls else "null"
        yield chunk('{"role":"assistant","content":' + opening + ',"refusal":null}')
        for text in completion.text_chunks:
            yield text_head + text_json(text) + text_tail
        for index, call in enumerate(completion.tool_calls):
            function = {"name": call.name, "arguments": ""}
            first = {"index": index, "id": call.id, "type": "function", "function": function}
            yield chunk('{"tool_calls":[' + dumps(first) + "]}")
            for fragment in call.argument_chunks():
                piece = {"index": index, "function": {"arguments": fragment}}
                yield chunk('{"tool_calls":[' + dumps(piece) + "]}")
        finish = FINISH_REASONS[completion.finish]
        close_final = ',"logprobs":null,"finish_reason":"' + finish + '"'
        close_final += ("," + extra if extra else "") + "}"
        yield head + (open_choice + "{}" + close_final).encode() + tail
        if facts.include_usage:
            usage = dumps(chat_usage(completion.usage)).encode()
            yield head + b'],"usage":' + usage + b"}\n\n"
        yield DONE

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        return json_bytes(self.completion_object(completion))

    def completion_object(self, completion: Completion) -> dict[str, Any]:
        """The non-streaming `chat.completion` object, as a dict others may extend."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": completion.text if completion.text or not completion.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if completion.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in completion.tool_calls
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": FINISH_REASONS[completion.finish],
            **(self.choice_extra or {}),
        }
        return {
            "id": completion.response_id,
            "object": "chat.completion",
            "created": int(completion.created),
            "model": completion.model,
            "choices": [choice],
            "usage": chat_usage(completion.usage),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def error_body(self, status: int, message: str) -> bytes:
        return json_bytes(openai_error(status, message))

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        """A `data:` line whose object has an `error` key; the SDK raises `APIError` on it."""
        return b"data: " + json_bytes(openai_error(500, message)) + b"\n\n"

    def malformed_event(self) -> bytes:
        return MALFORMED


OPENAI_CHAT = ChatEncoder()
