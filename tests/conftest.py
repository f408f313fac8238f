"""Shared fixtures: a fake provider on loopback, for async tests and for synchronous ones."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from fake_providers.provider import FakeProvider, ThreadedFakeProvider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    """A started `FakeProvider` on the test's own event loop (use in `@pytest.mark.anyio` tests)."""
    async with FakeProvider() as started:
        yield started


@pytest.fixture
def threaded_provider() -> Iterator[FakeProvider]:
    """A started provider on a background thread, for synchronous clients."""
    with ThreadedFakeProvider() as started:
        yield started


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Some tests press Ctrl+C on a command they started (`serve`, `proxy`). A suite started
    with SIGINT ignored (a job started with `&` from a script does that) passes the ignore
    on to those commands, and they never see the key. Give the suite a terminal's default,
    so its children start with it too (a handled signal is reset at exec; an ignored one
    is not)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
