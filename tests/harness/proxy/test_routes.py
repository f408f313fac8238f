"""What the proxy does on the agent's side: routes per case, refusals, TLS failures, FIN/RST."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct

import httpx
import pytest

from fake_providers.ledger import Closer
from fake_providers.provider import FakeProvider, ThreadedFakeProvider
from harness.proxy.service import ProxyRoute, ProxyService

CHAT = "https://api.openai.com/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def client(route: ProxyRoute, *, verify: bool = True, proxy: str | None = None) -> httpx.Client:
    return httpx.Client(
        proxy=proxy or route.url,
        verify=ssl.create_default_context(cafile=route.ca_file) if verify else True,
        trust_env=False,
    )


def test_two_cases_side_by_side_each_reach_their_own_provider(proxy: ProxyService) -> None:
    with ThreadedFakeProvider() as first, ThreadedFakeProvider() as second:
        first.add_fault("text=first")
        second.add_fault("text=second")
        a = proxy.open_route_blocking("case-a", first.origin)
        b = proxy.open_route_blocking("case-b", second.origin)
        try:
            with client(a) as via_a, client(b) as via_b:
                said_b = via_b.post(CHAT, json=BODY).json()
                said_a = via_a.post(CHAT, json=BODY).json()
        finally:
            proxy.close_route_blocking(a)
            proxy.close_route_blocking(b)
    assert said_a["choices"][0]["message"]["content"] == "first"
    assert said_b["choices"][0]["message"]["content"] == "second"
    assert len(first.ledger.requests()) == len(second.ledger.requests()) == 1


def test_a_host_that_is_not_intercepted_is_refused_with_one_line(
    routed: tuple[FakeProvider, ProxyRoute], proxy: ProxyService
) -> None:
    provider, route = routed
    with client(route) as http, pytest.raises(httpx.ProxyError) as raised:
        http.get("https://telemetry.example.com/v1/events")
    assert "403" in str(raised.value)
    [conn] = proxy.ledger.connections(route.name)
    assert conn.refused == "telemetry.example.com is not intercepted"
    assert provider.ledger.requests() == []
    with client(route) as http:  # plain-http proxy requests are refused the same way
        answer = http.get("http://telemetry.example.com/")
    assert answer.status_code == 403
    assert answer.text.count("\n") == 1 and "--intercept telemetry.example.com" in answer.text


def test_an_agent_that_rejects_the_ca_is_told_to_trust_it(
    routed: tuple[FakeProvider, ProxyRoute], proxy: ProxyService
) -> None:
    provider, route = routed
    with client(route, verify=False) as http, pytest.raises(httpx.ConnectError):
        http.post(CHAT, json=BODY)  # certifi's roots only: the proxy's CA is unknown
    conn = proxy.ledger.wait_for_blocking(
        lambda led: next((c for c in led.connections(route.name) if c.tls_error), None)
    )
    assert "unknown ca" in (conn.tls_error or "")
    assert "SSL_CERT_FILE" in (conn.tls_error or "")
    assert provider.ledger.requests() == []


def _tunnel(route: ProxyRoute) -> ssl.SSLSocket:
    """A raw client: CONNECT, then TLS with the proxy's CA, as an agent's stack would."""
    raw = socket.create_connection((route.host, route.port), timeout=5)
    raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=route.ca_file)
    return context.wrap_socket(raw, server_hostname="api.openai.com")


@pytest.mark.parametrize("how", ["fin", "rst", "tls close_notify"])
def test_the_agents_close_is_recorded_and_relayed(
    routed: tuple[FakeProvider, ProxyRoute], proxy: ProxyService, how: str
) -> None:
    provider, route = routed
    provider.add_fault("stream=true,hold-before=2,gate=main")
    tls = _tunnel(route)
    body = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    tls.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    seen = b""
    while b"data:" not in seen:  # the first event has come through; the second is held
        chunk = tls.recv(65536)
        assert chunk, "the proxy closed before the first event"
        seen += chunk
    if how == "rst":
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "fin":
        tls.shutdown(socket.SHUT_WR)
        # Read what is left until the proxy closes too: a close() with unread bytes (the
        # first event) would make the kernel follow the FIN with an RST.
        with contextlib.suppress(OSError, ssl.SSLError):
            while tls.recv(65536):
                pass
    else:  # end TLS first, as Node's sockets do
        tls.settimeout(0.5)
        with contextlib.suppress(OSError, ssl.SSLError):
            tls.unwrap()
    tls.close()
    agent = proxy.ledger.wait_for_blocking(
        lambda led: next((c for c in led.connections(route.name) if not c.open), None)
    )
    upstream = provider.ledger.wait_for_blocking(
        lambda led: next((c for c in led.connections() if not c.open), None)
    )
    assert agent.closed_by is Closer.CLIENT
    assert (agent.close_kind.value if agent.close_kind else agent.close_detail) == how
    assert upstream.closed_by is Closer.CLIENT and upstream.events_sent == 1


def test_a_route_off_loopback_needs_its_token(proxy: ProxyService) -> None:
    with ThreadedFakeProvider() as provider:
        route = proxy.open_route_blocking("tokened", provider.origin, token="s3cret")
        try:
            with client(route) as http:
                ok = http.post(CHAT, json=BODY)
            anonymous = f"http://{route.host}:{route.port}"
            with client(route, proxy=anonymous) as http, pytest.raises(httpx.ProxyError) as no:
                http.post(CHAT, json=BODY)
            wrong = f"http://harness:wrong@{route.host}:{route.port}"
            with client(route, proxy=wrong) as http, pytest.raises(httpx.ProxyError):
                http.post(CHAT, json=BODY)
        finally:
            proxy.close_route_blocking(route)
    assert ok.status_code == 200 and route.url.startswith("http://harness:s3cret@")
    assert "407" in str(no.value)
    assert len(provider.ledger.requests()) == 1
    header = base64.b64encode(b"harness:s3cret").decode()
    assert header not in str(proxy.ledger.to_json()) and "s3cret" not in str(proxy.ledger.to_json())
