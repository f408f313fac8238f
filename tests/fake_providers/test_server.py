"""The server over real loopback sockets: closes, faults, gates, keep-alive, control, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from pathlib import Path

import anyio
import httpx
import pytest

from fake_providers import CloseKind, Closer, FakeProvider, Outcome
from fake_providers.ledger import RequestRecord, now_ns
from fake_providers.server import LightTasks

pytestmark = pytest.mark.anyio
# The plans here hang: the server never closes, so a client close at any time after the
# close call is that call's doing. The bound only stops a broken test, and no stall of a
# loaded machine can reach it.
CLOSED_SOON = 5.0

CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def raw_request(body: dict[str, object] = CHAT) -> bytes:
    data = json.dumps(body).encode()
    return REQUEST % (len(data), data)


async def test_client_fin_is_seen_while_the_server_hangs(provider: FakeProvider) -> None:
    provider.add_fault("hang-before-headers")
    async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
        await sock.send(raw_request())
        await provider.ledger.wait_for(lambda ledger: ledger.requests(), 2)
        t = now_ns()
    conn = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), CLOSED_SOON
    )
    assert conn.close_kind is CloseKind.FIN
    assert conn.requests[0].outcome is Outcome.CLIENT_CLOSED
    assert conn.events_sent == 0


async def test_a_client_that_left_just_before_the_park_still_finishes_the_request(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving seen under load: the pacer wakes the responder for its last event,
    the reader sees the client's FIN before the responder runs again, looks for a parked
    request (none yet) and stops reading; the responder then parks with no await in
    between. The park must see that the client has gone, or the request stays in flight
    forever and the harness blames the agent for a call it closed.

    `held` (called right before the park) stands in for the reader, recording the client's
    close at that instant; the socket itself stays open, so no later read can mask it."""
    ledger = provider.ledger
    real_held = ledger.held

    def held_after_the_client_left(req: RequestRecord, detail: str) -> None:
        real_held(req, detail)
        record = ledger.connections()[0]
        ledger.connection_closed(record, Closer.CLIENT, CloseKind.FIN)

    monkeypatch.setattr(ledger, "held", held_after_the_client_left)
    provider.add_fault("hang-after=2")
    async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
        await sock.send(raw_request())
        finished = await ledger.wait_for(
            lambda led: [r for r in led.requests() if r.outcome is not None] or None,
            CLOSED_SOON,
        )
    assert finished[0].outcome is Outcome.CLIENT_CLOSED
    assert finished[0].events_sent == 2


async def test_client_rst_is_told_apart_from_fin(provider: FakeProvider) -> None:
    provider.add_fault("hang-after=2")
    sock = socket.create_connection(("127.0.0.1", provider.port))
    sock.sendall(raw_request())
    await provider.ledger.wait_for_events(2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t = now_ns()
    sock.close()
    conn = await provider.ledger.wait_for(
        lambda ledger: ledger.closed_by_client_within(t, CLOSED_SOON), CLOSED_SOON
    )
    assert conn.close_kind is CloseKind.RST
    assert conn.events_sent == 2


@pytest.mark.parametrize(
    ("spec", "error", "kind"),
    [
        ("reset-after=3", httpx.ReadError, CloseKind.RST),
        ("close-after=3", httpx.RemoteProtocolError, CloseKind.FIN),
    ],
)
async def test_server_rst_and_fin_reach_httpx_as_different_errors(
    provider: FakeProvider, spec: str, error: type[Exception], kind: CloseKind
) -> None:
    provider.add_fault(spec)
    events: list[str] = []
    async with httpx.AsyncClient() as client:
        with pytest.raises(error):
            async with client.stream("POST", provider.url() + "/chat/completions", json=CHAT) as r:
                async for line in r.aiter_lines():
                    if line:
                        events.append(line)
    conn = provider.ledger.connections()[0]
    assert (conn.closed_by, conn.close_kind) == (Closer.SERVER, kind)
    assert conn.events_sent == 3
    assert len(events) == 3


async def test_gate_holds_the_stream_until_released(provider: FakeProvider) -> None:
    provider.add_fault("tokens=6,hold-before=4,gate=main")
    gate = provider.gate("main")
    async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
        lines: list[str] = []

        async def consume() -> None:
            async with client.stream("POST", provider.url() + "/chat/completions", json=CHAT) as r:
                lines.extend([line async for line in r.aiter_lines() if line])

        tg.start_soon(consume)
        await gate.wait_reached()
        req = provider.ledger.requests()[0]
        assert req.events_sent == 3  # the first three went out, the fourth is held
        assert req.outcome is None
        gate.release()
    assert lines[-1] == "data: [DONE]"
    assert provider.ledger.requests()[0].outcome is Outcome.COMPLETE


async def test_hold_before_headers_sends_nothing(provider: FakeProvider) -> None:
    provider.add_fault("hold-before=headers")
    async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
        statuses: list[int] = []

        async def call() -> None:
            r = await client.post(provider.url() + "/chat/completions", json=CHAT)
            statuses.append(r.status_code)

        tg.start_soon(call)
        await provider.gate().wait_reached()
        assert provider.ledger.requests()[0].response_started_ns is None
        provider.gate().release()
    assert statuses == [200]


async def test_keep_alive_serves_sequential_requests_on_one_connection(
    provider: FakeProvider,
) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            r = await client.post(provider.url() + "/chat/completions", json=CHAT)
            assert r.text.rstrip().endswith("data: [DONE]")
    conns = provider.ledger.connections()
    assert len(conns) == 1
    assert [r.ordinal for r in conns[0].requests] == [1, 2, 3]


async def test_unknown_paths_and_model_probes_answer_at_once(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        missing = await client.post(provider.origin + "/api/show", json={})
        models = await client.get(provider.url() + "/models")
    assert missing.status_code == 404
    assert "no route for POST /api/show" in missing.json()["error"]["message"]
    assert models.status_code == 200
    assert any(m["id"] == "gpt-4o" for m in models.json()["data"])


async def test_malformed_json_body_is_a_provider_style_400(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        chat = await client.post(provider.url() + "/chat/completions", content=b"{nope")
        anthropic = await client.post(provider.origin + "/v1/messages", content=b"[]")
        after = await client.post(provider.url() + "/chat/completions", json=CHAT)
    assert chat.status_code == 400
    assert "not valid JSON" in chat.json()["error"]["message"]
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"
    assert after.status_code == 200


async def test_error_status_carries_retry_after_headers(provider: FakeProvider) -> None:
    provider.add_fault("status=429,retry-after=2,retry-after-ms=1500")
    async with httpx.AsyncClient() as client:
        r = await client.post(provider.origin + "/v1/messages", json={**CHAT, "max_tokens": 5})
    assert r.status_code == 429
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("2", "1500")
    assert r.json()["error"]["type"] == "rate_limit_error"


async def test_model_name_spec_steers_an_unconfigurable_agent(provider: FakeProvider) -> None:
    body = {**CHAT, "model": "gpt-4o~hang-after=2"}
    async with await anyio.connect_tcp("127.0.0.1", provider.port) as sock:
        await sock.send(raw_request(body))
        req = await provider.ledger.wait_for_events(2)
    assert req.model == "gpt-4o"
    assert req.plan == "model-name: hang-after=2"
    bad = {**CHAT, "model": "gpt-4o~hang-afterr=2"}
    async with httpx.AsyncClient() as client:
        r = await client.post(provider.url() + "/chat/completions", json=bad)
    assert r.status_code == 400
    assert "did you mean 'hang-after'" in r.json()["error"]["message"]


async def test_pace_spaces_events_against_the_clock(provider: FakeProvider) -> None:
    provider.add_fault("tokens=5,pace=20ms")
    async with httpx.AsyncClient() as client:
        await client.post(provider.url() + "/chat/completions", json=CHAT)
    request = provider.ledger.requests()[0]
    times = list(request.event_ns)
    assert len(times) >= 5
    # Event i goes out no earlier than i * 20 ms after the pacing began, which is after the
    # request arrived. (Not "after the first event": on a loaded machine the first event can
    # be late, and the deadlines of the others do not move with it.)
    assert all(t - request.started_ns >= i * 20_000_000 - 1_000_000 for i, t in enumerate(times))


async def test_drip_trickles_bytes(provider: FakeProvider) -> None:
    provider.add_fault("stream=false,tokens=3,drip=4000")
    async with httpx.AsyncClient() as client:
        t = now_ns()
        r = await client.post(provider.url() + "/chat/completions", json={**CHAT, "stream": False})
        elapsed = (now_ns() - t) / 1e9
    assert r.json()["choices"][0]["message"]["content"]
    assert elapsed >= 0.8 * len(r.content) / 4000


async def test_shutdown_closes_hanging_streams_from_the_server_side() -> None:
    async with FakeProvider(faults=("hang-after=1",)) as provider:
        sock = socket.create_connection(("127.0.0.1", provider.port))
        sock.sendall(raw_request())
        await provider.ledger.wait_for_events(1)
    conn = provider.ledger.connections()[0]
    assert conn.closed_by is Closer.SERVER
    assert conn.requests[0].outcome is Outcome.SHUTDOWN
    sock.settimeout(2)
    assert sock.recv(65536)  # the event that was sent...
    sock.close()


async def test_shutdown_ends_every_connection_whatever_it_was_doing() -> None:
    """Hanging, mid paced stream, or idle between requests: each is closed by the server."""
    async with FakeProvider() as provider:
        provider.add_fault("hang-after=1,times=1")
        provider.add_fault("pace=1s,times=1")
        hanging = socket.create_connection(("127.0.0.1", provider.port))
        hanging.sendall(raw_request())
        await provider.ledger.wait_for_events(1)
        paced = socket.create_connection(("127.0.0.1", provider.port))
        paced.sendall(raw_request())
        await provider.ledger.wait_for(lambda ledger: len(ledger.requests()) == 2)
        idle = socket.create_connection(("127.0.0.1", provider.port))
        idle.sendall(raw_request({**CHAT, "stream": False}))
        await provider.ledger.wait_for(
            lambda ledger: ledger.requests()[2:3] and ledger.requests()[2].outcome
        )
    conns = provider.ledger.connections()
    assert [c.closed_by for c in conns] == [Closer.SERVER] * 3
    assert [r.outcome for c in conns for r in c.requests] == [
        Outcome.SHUTDOWN,
        Outcome.SHUTDOWN,
        Outcome.COMPLETE,
    ]
    for sock in (hanging, paced, idle):
        sock.settimeout(5)
        received = b""
        while chunk := sock.recv(65536):  # until the server's FIN
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        sock.close()


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    async with FakeProvider(host="::1") as provider, httpx.AsyncClient() as client:
        assert provider.origin.startswith("http://[::1]:")
        r = await client.post(provider.url() + "/chat/completions", json=CHAT)
        assert r.status_code == 200
        assert provider.ledger.connections()[0].peer.startswith("[::1]")


async def test_localhost_binds_both_families_on_one_port() -> None:
    async with FakeProvider(host="localhost") as provider, httpx.AsyncClient() as client:
        for host in ("127.0.0.1", "[::1]"):
            r = await client.get(f"http://{host}:{provider.port}/v1/models")
            assert r.status_code == 200


async def test_tls_streams_to_a_client_that_trusts_the_exported_ca() -> None:
    async with FakeProvider(tls=True) as provider:
        assert provider.tls is not None
        assert provider.tls.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        verify = provider.tls.client_context()
        url = provider.url() + "/chat/completions"
        async with (
            httpx.AsyncClient(verify=verify) as client,
            client.stream("POST", url, json=CHAT) as r,
        ):
            lines = [line async for line in r.aiter_lines() if line]
        assert provider.url().startswith("https://")
        assert lines[-1] == "data: [DONE]"
        assert provider.ledger.connections()[0].tls
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(provider.url() + "/models")


async def test_ledger_log_keeps_the_whole_history_on_disk(tmp_path: Path) -> None:
    log = tmp_path / "ledger.jsonl"
    # The client outlives the provider, so its keep-alive connection is still open at the end.
    async with httpx.AsyncClient() as client, FakeProvider(ledger_log=log) as provider:
        for _ in range(2):
            await client.post(provider.url() + "/chat/completions", json={**CHAT, "stream": False})
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [len(c["requests"]) for c in lines] == [2]  # one keep-alive connection, two calls
    assert lines[0]["closed_by"] == "server"  # the provider shut down under it
    assert all(r["outcome"] == "complete" for r in lines[0]["requests"])


async def test_closing_outlasts_a_task_that_took_its_cancel_for_another() -> None:
    """A cancel that an anyio scope swallows (its own cancel landed at the same moment) must
    not leave the server waiting forever for that task when it stops."""
    tasks = LightTasks()
    waiting = anyio.Event()

    async def swallows_one_cancel() -> None:
        waiting.set()
        # What a scope exit does with a cancel it believes it sent: the task goes on.
        with contextlib.suppress(asyncio.CancelledError):
            await anyio.sleep_forever()
        await anyio.sleep_forever()

    tasks.spawn(swallows_one_cancel())
    await waiting.wait()
    closing = asyncio.ensure_future(tasks.close())
    done, _ = await asyncio.wait([closing], timeout=5)
    assert closing in done, "the server still waits for a task it cancelled once"
    assert len(tasks) == 0
