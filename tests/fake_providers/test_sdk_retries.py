"""SDK retries seen from the socket: every retry is an attempt of ONE logical call.

The official SDKs retry 429 and 5xx answers up to `max_retries` times and number each
attempt in `x-stainless-retry-count`; the ledger groups them into one `LogicalCall`. The
injected errors carry `retry-after-ms` so the SDKs wait milliseconds instead of their
0.5 s+ exponential backoff. Sync clients run in a worker thread next to the provider.
"""

from __future__ import annotations

from typing import Any

import anthropic
import anyio
import anyio.to_thread
import openai
import pytest

from fake_providers import FakeProvider, Outcome
from fake_providers.content import default_text
from fake_providers.ledger import LogicalCall
from harness.timing import StallLog, StallMonitor, heartbeat

pytestmark = pytest.mark.anyio

TOKENS = 5
TEXT = "".join(default_text(TOKENS))
MESSAGES: Any = [{"role": "user", "content": "hi"}]
SDKS = pytest.mark.parametrize(
    "sdk", ["openai-sync", "openai-async", "anthropic-sync", "anthropic-async"]
)
ERRORS: dict[tuple[str, int], type[Exception]] = {
    ("openai", 429): openai.RateLimitError,
    ("openai", 500): openai.InternalServerError,
    ("anthropic", 429): anthropic.RateLimitError,
    ("anthropic", 500): anthropic.InternalServerError,
}


def _openai_text(result: Any, stream: bool) -> str:
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result if c.choices)
    return str(result.choices[0].message.content)


def _anthropic_text(result: Any, stream: bool) -> str:
    if stream:
        return "".join(
            e.delta.text for e in result if e.type == "content_block_delta" and e.delta.text
        )
    return "".join(block.text for block in result.content)


async def call(provider: FakeProvider, sdk: str, *, max_retries: int, stream: bool = False) -> str:
    """Make one model call with the given SDK flavour and return the text the user got."""
    family, flavour = sdk.split("-")
    if family == "openai":
        kwargs: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "stream": stream}
        url = provider.url("openai")
        if flavour == "async":
            async with openai.AsyncOpenAI(
                base_url=url, api_key="sk", max_retries=max_retries
            ) as aclient:
                result = await aclient.chat.completions.create(**kwargs)
                if stream:
                    result = [chunk async for chunk in result]
                return _openai_text(result, stream)

        def run_openai() -> str:
            with openai.OpenAI(base_url=url, api_key="sk", max_retries=max_retries) as client:
                return _openai_text(client.chat.completions.create(**kwargs), stream)

        return await anyio.to_thread.run_sync(run_openai)

    kwargs = {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": MESSAGES}
    kwargs["stream"] = stream
    url = provider.url("anthropic")
    if flavour == "async":
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key="sk", max_retries=max_retries
        ) as aclient:
            result = await aclient.messages.create(**kwargs)
            if stream:
                result = [event async for event in result]
            return _anthropic_text(result, stream)

    def run_anthropic() -> str:
        with anthropic.Anthropic(base_url=url, api_key="sk", max_retries=max_retries) as client:
            return _anthropic_text(client.messages.create(**kwargs), stream)

    return await anyio.to_thread.run_sync(run_anthropic)


def only_call(provider: FakeProvider) -> LogicalCall:
    calls = provider.ledger.logical_calls()
    assert len(calls) == 1, [c.retries for c in calls]
    return calls[0]


def retry_counts(call: LogicalCall) -> list[str | None]:
    return [r.header("x-stainless-retry-count") for r in call.attempts]


@SDKS
@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("max_retries", [0, 2])
async def test_retries_of_a_failing_call_are_one_logical_call(
    provider: FakeProvider, sdk: str, status: int, max_retries: int
) -> None:
    provider.add_fault(f"status={status},retry-after-ms=1,tokens={TOKENS}")
    with pytest.raises(ERRORS[sdk.split("-")[0], status]):
        await call(provider, sdk, max_retries=max_retries)
    logical = only_call(provider)
    assert logical.retries == max_retries
    assert len(provider.ledger.requests()) == max_retries + 1
    assert retry_counts(logical) == [str(n) for n in range(max_retries + 1)]
    assert [r.attempt for r in logical.attempts] == list(range(max_retries + 1))
    assert {r.status for r in logical.attempts} == {status}
    assert len({r.body_digest for r in logical.attempts}) == 1


@SDKS
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_two_failures_then_success_is_one_call_with_two_retries(
    provider: FakeProvider, sdk: str, stream: bool
) -> None:
    provider.add_fault("status=500,retry-after-ms=1,times=2")
    provider.add_fault(f"tokens={TOKENS}")
    text = await call(provider, sdk, max_retries=2, stream=stream)
    assert text == TEXT
    logical = only_call(provider)
    assert logical.retries == 2
    assert retry_counts(logical) == ["0", "1", "2"]
    assert [r.status for r in logical.attempts] == [500, 500, 200]
    final = await provider.ledger.wait_for(
        lambda ledger: logical.attempts[-1].outcome, timeout=2, what="the final attempt"
    )
    assert final is Outcome.COMPLETE
    assert logical.attempts[-1].stream is stream


@SDKS
async def test_identical_calls_are_separate_logical_calls(provider: FakeProvider, sdk: str) -> None:
    """The same prompt sent twice by the user is two calls, not a call and its retry."""
    provider.add_fault(f"tokens={TOKENS}")
    assert await call(provider, sdk, max_retries=2) == TEXT
    assert await call(provider, sdk, max_retries=2) == TEXT
    calls = provider.ledger.logical_calls()
    assert [c.retries for c in calls] == [0, 0]
    assert [retry_counts(c) for c in calls] == [["0"], ["0"]]
    first, second = (c.attempts[0] for c in calls)
    assert first.body_digest == second.body_digest


@pytest.mark.parametrize("sdk", ["openai-async", "anthropic-async"])
async def test_sdk_waits_as_long_as_retry_after_ms_says(provider: FakeProvider, sdk: str) -> None:
    """A 100 ms hint is honoured: shorter than the SDKs' own 375-500 ms first backoff.

    The SDK and the provider share this test's event loop; on a loaded machine the loop may
    not run for a while, which lengthens the gap without being the SDK's choice. The time the
    loop measurably could not run is taken off before comparing with the SDKs' own backoff.
    """
    provider.add_fault("status=429,retry-after-ms=100,times=1")
    provider.add_fault(f"tokens={TOKENS}")
    stalls = StallLog("this test's loop")
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, stalls)
        assert await call(provider, sdk, max_retries=1) == TEXT
        tg.cancel_scope.cancel()
    first, retry = only_call(provider).attempts
    assert first.finished_ns is not None
    gap_s = (retry.started_ns - first.finished_ns) / 1e9
    stalled_s = StallMonitor((stalls,)).stalled_ns(first.finished_ns, retry.started_ns) / 1e9
    assert gap_s >= 0.1  # the hint was honoured...
    assert gap_s - stalled_s < 0.3  # ...and not the SDK's own, longer backoff


async def test_concurrent_identical_calls_keep_their_own_retries(provider: FakeProvider) -> None:
    """Two users send the same prompt at once; both hit a 429 and retry once."""
    provider.add_fault("status=429,retry-after-ms=1,hold-before=headers,times=2")
    provider.add_fault(f"tokens={TOKENS}")
    texts: list[str] = []

    async def one_call() -> None:
        texts.append(await call(provider, "openai-async", max_retries=1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one_call)
        tg.start_soon(one_call)
        await provider.gate().wait_reached(2, timeout=2)  # both first attempts are in
        provider.gate().release()
    assert texts == [TEXT, TEXT]
    assert len(provider.ledger.requests()) == 4
    assert [c.retries for c in provider.ledger.logical_calls()] == [1, 1]
