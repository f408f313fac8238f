"""Pass-through: the real provider's live stream played through the fault plan by the relay.

A TLS fake provider on loopback stands in for api.openai.com (`upstream_for`): the relay
speaks TLS to it and trusts its CA, as it would the real host's.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from fake_providers.ledger import Closer
from fake_providers.provider import FakeProvider, ThreadedFakeProvider
from harness.proxy.relay import PassThroughRelay
from harness.proxy.service import ProxyRoute, ProxyService
from harness.proxy.upstream import EventSplitter, upstream_headers

CHAT = "https://api.openai.com/v1/chat/completions"
BODY = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def real() -> Iterator[FakeProvider]:
    with ThreadedFakeProvider(tls=True) as provider:
        yield provider


CLOSE_S = 10.0  # a close that reaches the other side at all does so long before this


def relayed(
    proxy: ProxyService, real: FakeProvider, *faults: str
) -> tuple[PassThroughRelay, ProxyRoute]:
    assert real.tls is not None
    relay = PassThroughRelay(
        faults=faults,
        verify=ssl.create_default_context(cafile=str(real.tls.ca_path)),
        upstream_for={"api.openai.com": real.origin},
    ).start()
    return relay, proxy.open_route_blocking("pass-through", relay.origin, relay=True)


def agent(route: ProxyRoute) -> httpx.Client:
    context = ssl.create_default_context(cafile=route.ca_file)
    return httpx.Client(proxy=route.url, verify=context, trust_env=False)


def test_sse_events_are_split_at_blank_lines() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: 1\n\nda") == [b"data: 1\n\n"]
    assert splitter.feed(b"ta: 2\r\n\r\nevent: x\ndata: 3\n\n") == [
        b"data: 2\n\n",
        b"event: x\ndata: 3\n\n",
    ]
    assert splitter.rest() == b""


def test_upstream_gets_the_agents_headers_minus_the_proxys() -> None:
    raw = [(b"Authorization", b"Bearer k"), (b"Proxy-Authorization", b"Basic x")]
    raw += [(b"x-cancel-harness-upstream", b"https://api.openai.com:443"), (b"Host", b"127.0.0.1")]
    raw += [(b"Accept-Encoding", b"gzip")]
    assert upstream_headers(raw, "api.openai.com:443") == [
        ("Authorization", "Bearer k"),
        ("accept-encoding", "identity"),
        ("host", "api.openai.com"),
    ]


def test_a_hold_on_the_live_stream_and_the_agents_close_reach_the_real_host(
    proxy: ProxyService, real: FakeProvider
) -> None:
    relay, route = relayed(proxy, real, "stream=true,hold-before=3,gate=main")
    try:
        with (
            agent(route) as http,
            http.stream(
                "POST", CHAT, json=BODY, headers={"authorization": "Bearer sk-live-key"}
            ) as answer,
        ):
            events: list[str] = []
            for line in answer.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                if len(events) == 2:
                    break
            t = time.monotonic_ns()
        # The hold never ends by itself, so a close that was not passed on never comes: the
        # bound can be generous and still catch it, and holds with every core busy (2 s
        # did not, once, with two test suites at once).
        upstream = real.ledger.wait_for_blocking(
            lambda led: led.closed_by_client_within(t, CLOSE_S), CLOSE_S + 5
        )
        relayed_conn = relay.ledger.wait_for_blocking(
            lambda led: led.closed_by_client_within(t, CLOSE_S), CLOSE_S + 5
        )
    finally:
        proxy.close_route_blocking(route)
        relay.close()
    [request] = real.ledger.requests()
    assert request.header("authorization") == "[redacted]"  # the key went upstream, unlogged
    assert upstream.closed_by is Closer.CLIENT
    assert relayed_conn.requests[0].events_sent == 2  # held before the third
    assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
    assert "sk-live-key" not in str(relay.ledger.to_json(bodies=True))


def test_an_error_status_is_answered_without_calling_the_real_host(
    proxy: ProxyService, real: FakeProvider
) -> None:
    relay, route = relayed(proxy, real, "status=429,retry-after=1,times=1")
    try:
        with agent(route) as http:
            refused = http.post(CHAT, json=BODY)
            passed = http.post(CHAT, json={**BODY, "stream": False})
    finally:
        proxy.close_route_blocking(route)
        relay.close()
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    assert passed.status_code == 200 and passed.json()["object"] == "chat.completion"
    assert len(real.ledger.requests()) == 1
