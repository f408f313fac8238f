"""The retry layer with a real provider client over a mocked httpx (respx).

Genuine transient failures are retried as the policy says; our own forced close is not
(INCIDENTS.md I5); the back-off sleep is a cancellation checkpoint. Time is driven with
millisecond back-offs and ordered with anyio Events, never with sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
import respx

from reference_agent.config import AgentConfig
from reference_agent.model import Message
from reference_agent.providers import (
    CallCancelled,
    CallHandle,
    FatalProviderError,
    ModelReply,
    ModelRequest,
    ProviderClient,
    ProviderError,
    StreamBrokenError,
    TransientProviderError,
    make_client,
    make_http_client,
)
from reference_agent.retry import RetryHooks, RetryPolicy, call_with_retries

pytestmark = pytest.mark.anyio

URL = "https://api.test/v1/chat/completions"
CONFIG = AgentConfig(base_url="https://api.test/v1/", api_key="sk-test", stale_timeout=5.0)
REQUEST = ModelRequest(messages=(Message("user", "hi"),))
TEXT = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
SSE = {"content-type": "text/event-stream"}
FAST = RetryPolicy(max_retries=2, base=0.001, cap=0.01)
OVERLOADED = {"error": {"message": "overloaded", "type": "server_error"}}

TRANSPORT_ERRORS = pytest.mark.parametrize(
    "error",
    [httpx.RemoteProtocolError, httpx.ReadError],
    ids=lambda e: e.__name__,
)


class Chunks(httpx.AsyncByteStream):
    """A response body that yields `chunks`, then raises `error` (a mid-stream failure)."""

    def __init__(self, *chunks: bytes, error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error


def ok() -> httpx.Response:
    return httpx.Response(200, headers=SSE, content=TEXT + END)


def broken(error: type[httpx.TransportError]) -> httpx.Response:
    message = "peer closed connection without sending complete message body"
    return httpx.Response(200, headers=SSE, stream=Chunks(TEXT, error=error(message)))


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json=OVERLOADED)


@asynccontextmanager
async def chat_client() -> AsyncIterator[ProviderClient]:
    async with make_http_client(CONFIG) as http:
        yield make_client(CONFIG, http)


class Retries:
    """An `on_retry` recorder: (retry number, wait, error) per retry."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float, ProviderError]] = []
        self.first = anyio.Event()

    def __call__(self, n: int, wait: float, error: ProviderError) -> None:
        self.seen.append((n, wait, error))
        self.first.set()


async def run(
    policy: RetryPolicy = FAST,
    *,
    call: CallHandle | None = None,
    on_text: Callable[[str], None] | None = None,
    on_retry: Callable[[int, float, ProviderError], None] | None = None,
    hooks: RetryHooks | None = None,
) -> ModelReply:
    async with chat_client() as client:
        with anyio.fail_after(5):
            return await call_with_retries(
                client,
                REQUEST,
                call or CallHandle(),
                policy,
                on_text=on_text,
                on_retry=on_retry,
                hooks=hooks,
            )


# ------------------------------------------------------------- our own close vs the network


@TRANSPORT_ERRORS
async def test_transport_error_after_our_own_cancel_is_not_retried(
    error: type[httpx.TransportError],
) -> None:
    call = CallHandle()

    def cancel_on_first_text(delta: str) -> None:
        call.cancelled = True  # our cancel: the flag is set before the stream breaks

    retries = Retries()
    with respx.mock(assert_all_called=False) as router:
        route = router.post(URL).mock(side_effect=[broken(error), ok()])
        with pytest.raises(CallCancelled):
            await run(call=call, on_text=cancel_on_first_text, on_retry=retries)
    assert route.call_count == 1
    assert call.attempts == 1
    assert retries.seen == []


@TRANSPORT_ERRORS
async def test_the_same_error_without_a_cancel_is_retried(
    error: type[httpx.TransportError],
) -> None:
    call = CallHandle()
    retries = Retries()
    with respx.mock() as router:
        route = router.post(URL).mock(side_effect=[broken(error), ok()])
        reply = await run(call=call, on_retry=retries)
    assert route.call_count == 2
    assert reply.text == "Hi"  # the second attempt's answer, not the broken one's
    assert reply.finish_reason == "stop"
    assert [(n, type(e)) for n, _, e in retries.seen] == [(1, StreamBrokenError)]
    assert not call.cancelled


# ------------------------------------------------------------------------ back-off timing


@pytest.mark.parametrize(
    ("retry_after_ms", "cap", "expected"),
    [("7", 1.0, 0.007), ("60000", 0.002, 0.002)],
    ids=["honoured", "capped"],
)
async def test_429_retry_after_ms_is_honoured_up_to_the_cap(
    retry_after_ms: str, cap: float, expected: float
) -> None:
    retries = Retries()
    policy = RetryPolicy(max_retries=1, base=5.0, cap=cap)  # base alone would wait seconds
    with respx.mock() as router:
        route = router.post(URL).mock(
            side_effect=[status(429, **{"retry-after-ms": retry_after_ms}), ok()]
        )
        reply = await run(policy, on_retry=retries)
    assert reply.text == "Hi"
    assert route.call_count == 2
    [(n, wait, err)] = retries.seen
    assert (n, err.status) == (1, 429)
    assert wait == pytest.approx(expected)


def test_policy_delay_prefers_the_providers_hint_capped() -> None:
    policy = RetryPolicy(max_retries=5, base=0.1, cap=0.8)
    assert policy.delay(4, 0.25) == 0.25  # the hint wins over the exponential
    assert policy.delay(0, 100.0) == 0.8  # but never beyond the cap
    assert policy.delay(0, -1.0) == 0.0


def test_exponential_backoff_grows_then_is_capped() -> None:
    policy = RetryPolicy(max_retries=8, base=0.1, cap=0.8)
    delays = [policy.delay(k, None) for k in range(8)]
    for k, d in enumerate(delays):
        ceiling = min(0.8, 0.1 * 2**k)
        assert 0.8 * ceiling <= d <= ceiling  # jitter only shortens, by at most 20 %
    assert delays[:4] == sorted(delays[:4]) and len(set(delays[:4])) == 4
    assert max(delays) <= 0.8
    assert delays == [RetryPolicy(8, 0.1, 0.8).delay(k, None) for k in range(8)]  # seeded


# ----------------------------------------------------------------------- what is retried


async def test_fatal_400_is_not_retried() -> None:
    retries = Retries()
    with respx.mock() as router:
        route = router.post(URL).mock(side_effect=[status(400), ok()])
        with pytest.raises(FatalProviderError, match="HTTP 400") as caught:
            await run(on_retry=retries)
    assert caught.value.status == 400
    assert route.call_count == 1
    assert retries.seen == []


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_is_respected_exactly(max_retries: int) -> None:
    retries = Retries()
    policy = RetryPolicy(max_retries=max_retries, base=0.001, cap=0.002)
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=status(503))
        with pytest.raises(TransientProviderError) as caught:
            await run(policy, on_retry=retries)
    assert caught.value.status == 503
    assert route.call_count == max_retries + 1
    assert [n for n, _, _ in retries.seen] == list(range(1, max_retries + 1))


# ------------------------------------------------------------- cancel during the back-off


async def cancel_during_backoff(policy: RetryPolicy, hooks: RetryHooks | None) -> respx.Route:
    """503 first; cancel the caller's scope once the retry loop is in its back-off sleep."""
    retries = Retries()
    scope = anyio.CancelScope()
    with respx.mock(assert_all_called=False) as router:
        route = router.post(URL).mock(side_effect=[status(503), ok()])
        async with chat_client() as client:

            async def call() -> None:
                with scope:
                    await call_with_retries(
                        client, REQUEST, CallHandle(), policy, on_retry=retries, hooks=hooks
                    )

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    # on_retry runs right before the sleep, with no checkpoint in between.
                    await retries.first.wait()
                    scope.cancel()
    return route


async def test_cancel_during_backoff_ends_the_call_without_another_request() -> None:
    # A 30 s back-off: only the cancel can end this call within the 5 s bound.
    route = await cancel_during_backoff(RetryPolicy(max_retries=2, base=30.0, cap=30.0), None)
    assert route.call_count == 1


async def test_detached_backoff_defect_sends_the_request_anyway() -> None:
    hooks = RetryHooks(detached_backoff=True)
    route = await cancel_during_backoff(RetryPolicy(max_retries=2, base=0.02, cap=0.02), hooks)
    assert route.call_count == 2  # the cancelled call still went back to the provider
