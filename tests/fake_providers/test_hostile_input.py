"""No input ends the server or its host's task group; each fuzzer finding has a test here."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator

import anyio
import httpx
import pytest

from fake_providers import CloseKind, Closer, FakeProvider, Outcome, WaitTimeout
from fake_providers.limits import Limits

pytestmark = pytest.mark.anyio
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def assert_streams(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(provider.url() + "/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.text.rstrip().endswith("data: [DONE]")


async def test_head_requests_get_headers_only_and_the_host_goes_on(
    provider: FakeProvider,
) -> None:
    async with httpx.AsyncClient() as client:
        models = await client.head(provider.url() + "/models")
        missing = await client.head(provider.origin + "/api/show")
        control = await client.head(provider.origin + "/__harness/ledger")
    assert (models.status_code, models.content) == (200, b"")
    assert int(models.headers["content-length"]) > 0
    assert (missing.status_code, control.status_code) == (404, 404)
    await assert_streams(provider)


async def test_json_nested_100k_deep_is_a_400_in_the_providers_format(
    provider: FakeProvider,
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient() as client:
        anthropic = await client.post(provider.origin + "/v1/messages", content=deep)
        control = await client.post(provider.origin + "/__harness/faults", content=b"{" + deep)
        nested = b'{"spec": ' + deep + b"}"
        control_obj = await client.post(provider.origin + "/__harness/faults", content=nested)
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"  # Anthropic's own error shape
    assert "nested too deeply" in anthropic.json()["error"]["message"]
    assert control.status_code == control_obj.status_code == 400
    req = provider.ledger.requests()[0]
    assert req.malformed == "request body is nested too deeply"
    await assert_streams(provider)


async def test_huge_numbers_anywhere_are_refused_in_one_line(provider: FakeProvider) -> None:
    digits = "9" * 5_000
    async with httpx.AsyncClient() as client:
        spec = await client.post(
            provider.origin + "/__harness/faults", content=f"hang-after={digits}"
        )
        body = f'{{"model": "gpt-4o", "messages": [], "max_tokens": {digits}}}'
        chat = await client.post(provider.url() + "/chat/completions", content=body)
        retry = await client.post(
            provider.url() + "/chat/completions",
            json=CHAT,
            headers={"x-stainless-retry-count": digits},
        )
    assert spec.status_code == 400
    assert "whole number of events from 0 to 1,000,000" in spec.json()["error"]["message"]
    assert chat.status_code == 400
    assert retry.status_code == 200


async def test_a_rule_without_a_spec_is_a_400_not_a_crash(provider: FakeProvider) -> None:
    control = provider.origin + "/__harness/faults"
    async with httpx.AsyncClient() as client:
        empty = await client.post(control, json={"rules": [{}]})
        wrong = await client.post(control, json={"rules": [{"spec": 5}]})
    assert empty.status_code == wrong.status_code == 400
    assert '{"spec": "..."}' in empty.json()["error"]["message"]
    await assert_streams(provider)


async def test_garbage_http_is_recorded_as_malformed_on_the_connection(
    provider: FakeProvider,
) -> None:
    async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
        await sock.send(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = await sock.receive()
    assert answer.startswith(b"HTTP/1.1 400 ")
    (conn,) = provider.ledger.connections()
    assert conn.malformed is not None and "malformed HTTP request" in conn.malformed
    assert provider.ledger.to_json()["connections"][0]["malformed"] == conn.malformed


async def test_body_over_the_limit_is_refused_before_it_is_read(provider: FakeProvider) -> None:
    async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
        await sock.send(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n"
        )
        answer = await sock.receive()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"type":"error"' in answer.replace(b" ", b"")  # Anthropic's shape: routed


async def test_tls_port_survives_a_client_that_speaks_plain_http() -> None:
    async with FakeProvider(tls=True) as provider:
        async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
            await sock.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            with anyio.fail_after(5), contextlib.suppress(anyio.EndOfStream, OSError):
                await sock.receive()
        conn = await provider.ledger.wait_for(
            lambda ledger: next((c for c in ledger.connections() if not c.open), None), 5
        )
        assert conn.write_error is not None and conn.write_error.startswith("TLS handshake")
        assert provider.tls is not None
        async with httpx.AsyncClient(verify=provider.tls.client_context()) as client:
            r = await client.post(provider.url() + "/chat/completions", json=CHAT)
        assert r.status_code == 200


# ------------------------------------------------------------------------------ timeouts

FAST = Limits(request_timeout=0.2, idle_timeout=0.3)


async def test_a_partial_request_is_cut_with_408_after_the_request_timeout() -> None:
    async with FakeProvider(limits=FAST) as provider:
        async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
            await sock.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            with anyio.fail_after(5):
                answer = await sock.receive()
        assert answer.startswith(b"HTTP/1.1 408 ")
        (conn,) = provider.ledger.connections()
        assert conn.closed_by is Closer.SERVER
        assert conn.malformed is not None and "request timeout" in conn.malformed


async def test_a_slowloris_trickle_does_not_reset_the_request_timeout() -> None:
    async with FakeProvider(limits=FAST) as provider:
        request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 100
        sent = 0
        async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
            with anyio.fail_after(5):
                for byte in request:  # one byte every 20 ms; the server must cut us first
                    if provider.ledger.connections()[0].closed_ns is not None:
                        break
                    await sock.send(bytes([byte]))
                    sent += 1
                    await anyio.sleep(0.02)
                answer = await sock.receive()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert sent < len(request)


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    async with FakeProvider(limits=FAST) as provider, httpx.AsyncClient() as client:
        await client.post(provider.url() + "/chat/completions", json=CHAT)
        conn = await provider.ledger.wait_for(
            lambda ledger: next((c for c in ledger.connections() if not c.open), None), 5
        )
        assert (conn.closed_by, conn.close_kind, conn.malformed) == (
            Closer.SERVER,
            CloseKind.FIN,
            None,
        )
        await client.post(provider.url() + "/chat/completions", json=CHAT)  # reconnects


async def test_a_silent_client_of_a_stream_in_flight_is_never_timed_out() -> None:
    async with FakeProvider(limits=FAST, faults=("hang-after=1",)) as provider:
        async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
            body = json.dumps(CHAT).encode()
            await sock.send(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await provider.ledger.wait_for_events(1)
            with pytest.raises(WaitTimeout):  # three times both timeouts, still open
                await provider.ledger.wait_for(lambda ledger: not ledger.open_connections(), 1.0)
        req = await provider.ledger.wait_for(
            lambda ledger: next((r for r in ledger.requests() if r.outcome), None), 5
        )
        assert req.outcome is Outcome.CLIENT_CLOSED


# ------------------------------------------------------------------------------- EMFILE


@pytest.fixture
def low_fd_server() -> Iterator[str]:
    """`cancel-harness serve` with `ulimit -n 64`, as the fuzzer ran it."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
    try:
        assert match
        yield match.group(1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.anyio(False)
def test_running_out_of_file_descriptors_is_survived(low_fd_server: str) -> None:
    port = int(low_fd_server.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
    for sock in idle:
        sock.close()
    r = httpx.post(low_fd_server + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200
