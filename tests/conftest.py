"""Shared fixtures: a fake provider on loopback, for async tests and for synchronous ones."""

from __future__ import annotations

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
