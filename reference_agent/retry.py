"""Retries of genuine transient failures, and never of our own forced close (INCIDENTS.md I5).

A model call is one logical call made of attempts. Between attempts the policy sleeps an
exponential back-off (or what the provider asked for in `retry-after` / `retry-after-ms`),
and that sleep is an ordinary checkpoint: a cancel ends it at once. A transport error
while the call's request-local `cancelled` flag is set is our own doing and ends the call
as `CallCancelled`: no retry, no fallback, no "reconnecting".
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from reference_agent.model import ToolCall, Usage
from reference_agent.providers.base import (
    CallCancelled,
    CallHandle,
    Finished,
    ModelReply,
    ModelRequest,
    ProviderClient,
    ProviderError,
    StreamBrokenError,
    TextDelta,
    ToolCallDone,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with a cap, seeded jitter, and the provider's own hints first."""

    max_retries: int = 2
    base: float = 0.5
    cap: float = 8.0
    seed: int = 0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        jitter = random.Random(self.seed * 7919 + retry).uniform(0.8, 1.0)
        return float(min(self.cap, self.base * 2.0**retry) * jitter)


def _request_local_flag(call: CallHandle) -> bool:
    return call.cancelled


@dataclass(frozen=True, slots=True)
class RetryHooks:
    """Where defects plug into the retry loop; the defaults are the correct behaviour."""

    # Is this dropped stream our own forced close? Correct: the call's request-local flag.
    our_close: Callable[[CallHandle], bool] = _request_local_flag
    # Was the call cancelled while we backed off? Correct: the same request-local flag.
    stop_retrying: Callable[[CallHandle], bool] = _request_local_flag
    # Correct: the back-off is an ordinary checkpoint and the flag is re-read after it.
    # The BACKOFF_IGNORES_CANCEL defect detaches the back-off and the retry it leads to.
    detached_backoff: bool = False


async def collect(
    events: AsyncIterator[object], on_text: Callable[[str], None] | None = None
) -> ModelReply:
    """Drain one attempt's events into a reply, reporting text deltas as they come."""
    text: list[str] = []
    calls: list[ToolCall] = []
    finish, usage = "stop", Usage()
    async for event in events:
        match event:
            case TextDelta(text=delta):
                text.append(delta)
                if on_text is not None:
                    on_text(delta)
            case ToolCallDone(call=call):
                calls.append(call)
            case Finished(finish_reason=reason, usage=used):
                finish, usage = reason, used
    return ModelReply("".join(text), tuple(calls), finish, usage)


async def call_with_retries(
    client: ProviderClient,
    request: ModelRequest,
    call: CallHandle,
    policy: RetryPolicy,
    *,
    on_text: Callable[[str], None] | None = None,
    on_retry: Callable[[int, float, ProviderError], None] | None = None,
    hooks: RetryHooks | None = None,
) -> ModelReply:
    """Make one logical model call; retry transient failures as the policy allows."""
    hooks = hooks or RetryHooks()
    retry = 0
    while True:
        try:
            with anyio.CancelScope(shield=hooks.detached_backoff and retry > 0):
                events = client.attempt(request, call)
                try:
                    return await collect(events, on_text)
                finally:
                    await _aclose(events)
        except StreamBrokenError as exc:
            if hooks.our_close(call):
                raise CallCancelled(f"{request.purpose} call closed by our own cancel") from exc
            failure: ProviderError = exc
        except ProviderError as exc:
            if not exc.transient:
                raise
            failure = exc
        if retry >= policy.max_retries:
            raise failure
        wait = policy.delay(retry, failure.retry_after)
        if on_retry is not None:
            on_retry(retry + 1, wait, failure)
        with anyio.CancelScope(shield=hooks.detached_backoff):
            await anyio.sleep(wait)
        if hooks.stop_retrying(call) and not hooks.detached_backoff:
            raise CallCancelled(f"{request.purpose} call cancelled during back-off")
        retry += 1


async def _aclose(events: AsyncIterator[object]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        await closer()
