"""The shape every wire format has: request facts in, bytes out. Sans-IO, no sockets.

Each provider module exposes one `WireFormat` object. The server routes a request to it,
asks it for the request's facts (model, stream flag, limits), and has it encode the
completion, errors and faults as bytes. Nothing here knows about timing or connections.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fake_providers.content import Completion
from fake_providers.kinds import ProviderKind


class RequestError(Exception):
    """A request the provider would reject; the server answers `status` with `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the server needs to know about a model request, whatever its wire format."""

    kind: ProviderKind
    model: str
    stream: bool
    include_usage: bool = False
    max_tokens: int | None = None


class WireFormat(Protocol):
    """One provider's wire format. All methods are pure functions."""

    @property
    def kind(self) -> ProviderKind:
        """Stable name used in rules, ledgers and the CLI, e.g. `openai-chat`."""
        ...

    def facts(self, path_params: Mapping[str, str], body: Mapping[str, Any]) -> RequestFacts:
        """Validate a decoded JSON request body; raise `RequestError` as the provider would."""
        ...

    def stream_events(self, completion: Completion, facts: RequestFacts) -> Iterator[bytes]:
        """The event stream, produced lazily, one `bytes` per SSE event, terminator included."""
        ...

    def json_body(self, completion: Completion, facts: RequestFacts) -> bytes:
        """The non-streaming response body."""
        ...

    def error_body(self, status: int, message: str) -> bytes:
        """An HTTP error body in this provider's own error format."""
        ...

    def stream_error_event(self, message: str, completion: Completion) -> bytes:
        """An in-stream error event (e.g. Anthropic `overloaded_error`), ending the stream."""
        ...

    def malformed_event(self) -> bytes:
        """An event a client cannot parse (truncated JSON), for malformed-stream faults."""
        ...


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON, with one shared encoder (json.dumps with separators builds one per call)."""
    return _COMPACT.encode(value)


@functools.lru_cache(maxsize=8192)
def text_json(text: str) -> bytes:
    """A text delta as a JSON string literal. Cached: streamed text repeats its tokens."""
    return _COMPACT.encode(text).encode()


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """Frame one server-sent event; dicts are encoded as compact JSON."""
    payload = data if isinstance(data, str) else dumps(data)
    if event is None:
        return b"data: " + payload.encode() + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload.encode() + b"\n\n"


def json_bytes(data: Mapping[str, Any]) -> bytes:
    return dumps(data).encode()
