"""What every provider client offers the engine: one streamed model call per `attempt`.

A client turns a neutral `ModelRequest` into one HTTP request in its provider's wire
format and yields neutral `ModelEvent`s as the stream arrives. It does not retry (see
`reference_agent.retry`) and it does not decide about cancellation: the engine owns the
cancel scope around the call, and a `CallHandle` carries the request-local state a
cancel needs (INCIDENTS.md I5): the `cancelled` flag, set right before our own forced
close, which tells a transport error caused by us from a genuine network failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from fake_providers.kinds import ProviderKind
from reference_agent.model import Message, ToolCall, Usage


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, object]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call, provider-neutral."""

    messages: tuple[Message, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    stream: bool = True
    purpose: str = "turn"  # turn | compaction | memory; sent as the x-agent-purpose header


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    call: ToolCall


@dataclass(frozen=True, slots=True)
class Finished:
    """The stream ended properly: why, and what it cost."""

    finish_reason: str  # normalised: stop | length | tool_calls
    usage: Usage


ModelEvent = TextDelta | ToolCallDone | Finished


@dataclass(frozen=True, slots=True)
class ModelReply:
    """A whole model answer, assembled from the events."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: Usage


# ----------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A model call failed. `transient` says whether retrying may help."""

    transient: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """Connect errors, 408/409/429/5xx/529, a peer that closed mid-stream without our cancel."""

    transient = True


class FatalProviderError(ProviderError):
    """4xx other than the retryable ones, or a response we cannot understand."""


class StaleStreamError(TransientProviderError):
    """The provider sent nothing for `stale_timeout` seconds."""


class StreamBrokenError(TransientProviderError):
    """A transport error mid-request (peer closed, reset, read error).

    Transient when the network did it; when we closed the stream ourselves the retry
    layer sees `CallHandle.cancelled` and turns it into `CallCancelled` instead.
    """


class CallCancelled(Exception):
    """The call ended because we cancelled it (our own forced close): never retried."""


# ------------------------------------------------------------------------ call handle


@dataclass(eq=False)
class CallHandle:
    """Request-local cancel state for one logical model call (all its attempts)."""

    purpose: str = "turn"
    cancelled: bool = False
    attempts: int = 0
    _response: httpx.Response | None = field(default=None, repr=False)
    _close_on_arrival: bool = field(default=False, repr=False)

    @property
    def response(self) -> httpx.Response | None:
        """The live response of the current attempt, while it is open."""
        return self._response

    @response.setter
    def response(self, value: httpx.Response | None) -> None:
        if value is not None and self._close_on_arrival:
            # Our forced close came before the headers: the response dies as it arrives,
            # the way closing the HTTP client would have ended it.
            self._close_on_arrival = False
            raise StreamBrokenError(f"{self.purpose} response closed by our own forced close")
        self._response = value

    async def force_close(self) -> None:
        """Set the flag, then close the live response (or the next to arrive) right now."""
        self.cancelled = True
        response = self._response
        if response is None:
            self._close_on_arrival = True
        elif not response.is_closed:
            await response.aclose()


class ProviderClient(Protocol):
    """One provider wire format over httpx."""

    kind: ProviderKind

    def attempt(self, request: ModelRequest, call: CallHandle) -> AsyncIterator[ModelEvent]:
        """Send one HTTP request and yield its events.

        Sets `call.response` while the response is open and clears it when closed. On
        failure raises `StreamBrokenError` (transport errors), `StaleStreamError` (nothing
        for `stale_timeout`), `TransientProviderError` (retryable statuses, connect
        errors) or `FatalProviderError`. It never retries and never reads
        `call.cancelled`: deciding what a failure means is the retry layer's job.
        """
        ...
