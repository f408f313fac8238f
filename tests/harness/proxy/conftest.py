"""One proxy for this package's tests (mitmproxy keeps one master per process anyway)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fake_providers.provider import FakeProvider, ThreadedFakeProvider
from harness.proxy.service import ProxyRoute, ProxyService, close_shared_proxy, shared_proxy


@pytest.fixture(scope="package", autouse=True)
def proxy() -> Iterator[ProxyService]:
    """The process's proxy (the one `--via proxy` targets use too), stopped after this
    package so its thread is gone before timing-sensitive tests elsewhere run."""
    yield shared_proxy()
    close_shared_proxy()


@pytest.fixture
def routed(
    proxy: ProxyService, request: pytest.FixtureRequest
) -> Iterator[tuple[FakeProvider, ProxyRoute]]:
    """A fake provider on its own thread, and a proxy route to it named after the test."""
    with ThreadedFakeProvider() as provider:
        route = proxy.open_route_blocking(request.node.name, provider.origin)
        try:
            yield provider, route
        finally:
            proxy.close_route_blocking(route)


@pytest.fixture
def agent_env(routed: tuple[FakeProvider, ProxyRoute], monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as an agent that honours HTTPS_PROXY, with no base URL set anywhere."""
    for name in list(os.environ):
        if name.endswith(("_BASE_URL", "_PROXY")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in routed[1].env().items():
        monkeypatch.setenv(name, value)
