"""The official SDKs, with their default base URLs, reach the fake provider through the proxy."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from fake_providers.ledger import Closer
from fake_providers.provider import FakeProvider
from harness.proxy.service import ProxyRoute, ProxyService

pytestmark = pytest.mark.usefixtures("agent_env")
HI = [{"role": "user", "content": "hi"}]


def test_openai_default_base_url_reaches_the_fake_provider(
    routed: tuple[FakeProvider, ProxyRoute], proxy: ProxyService
) -> None:
    provider, route = routed
    provider.add_fault("text=through the proxy")
    client = openai.OpenAI(api_key="sk-proxy-test")
    assert str(client.base_url) == "https://api.openai.com/v1/"
    answer = client.chat.completions.create(model="gpt-4o", messages=HI)
    streamed = client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert answer.choices[0].message.content == "through the proxy"
    assert text == "through the proxy"
    assert [r.path for r in provider.ledger.requests()] == ["/v1/chat/completions"] * 2
    seen = proxy.ledger.connections(route.name)
    assert {c.host for c in seen} == {"api.openai.com:443"}
    assert all(r.status == 200 and r.bytes_to_agent > 0 for c in seen for r in c.requests)


def test_anthropic_default_base_url_reaches_the_fake_provider(
    routed: tuple[FakeProvider, ProxyRoute],
) -> None:
    provider, _ = routed
    provider.add_fault("text=via mitmproxy")
    client = anthropic.Anthropic(api_key="sk-ant-proxy-test")
    message = client.messages.create(model="harness-claude", max_tokens=50, messages=HI)
    with client.messages.stream(model="harness-claude", max_tokens=50, messages=HI) as stream:
        text = "".join(stream.text_stream)
    assert message.content[0].text == "via mitmproxy"
    assert text == "via mitmproxy"
    assert [(r.path, r.stream) for r in provider.ledger.requests()] == [
        ("/v1/messages", False),
        ("/v1/messages", True),
    ]
    assert "sk-ant-proxy-test" not in str(provider.ledger.to_json(bodies=True))


def test_closing_a_stream_reaches_the_provider_as_the_agents_close(
    routed: tuple[FakeProvider, ProxyRoute], proxy: ProxyService
) -> None:
    provider, route = routed
    provider.add_fault("stream=true,pace=10ms,hang-after=3")
    client = openai.OpenAI(api_key="sk-proxy-test", max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    for _ in zip(range(3), stream, strict=False):
        pass
    t = time.monotonic_ns()
    stream.close()
    # hang-after: the stream never ends by itself, so a generous bound still catches a close
    # that was not passed on, and holds with every core busy
    upstream = provider.ledger.wait_for_blocking(
        lambda led: led.closed_by_client_within(t, 10.0), 15.0
    )
    agent = proxy.ledger.wait_for_blocking(
        lambda led: next((c for c in led.connections(route.name) if not c.open), None)
    )
    assert upstream.closed_by is Closer.CLIENT and upstream.events_sent == 3
    assert agent.closed_by is Closer.CLIENT and agent.close_kind == "fin"
    assert agent.closed_ns is not None and agent.closed_ns <= upstream.closed_ns


def test_faults_and_error_statuses_reach_the_agent_through_the_proxy(
    routed: tuple[FakeProvider, ProxyRoute],
) -> None:
    provider, _ = routed
    provider.add_fault("status=429,retry-after=0", times=1)
    provider.add_fault("stream=true,reset-after=2")
    client = openai.OpenAI(api_key="sk-proxy-test", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    stream = client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
    assert [r.status for r in provider.ledger.requests()] == [429, 200]
