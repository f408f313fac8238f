"""The reference agent's HTTP+SSE API (docs/http-api.md), over real loopback sockets.

What a web UI relies on (INCIDENTS.md I3, I4): a prompt is accepted at once, each run's
stream ends with exactly one terminal event and closes, a cancel names the stream it was
pressed for and says whether it cancelled anything, and the provider connection of a
cancelled run is closed by the agent. Ordering comes from provider gates and ledger waits.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from fake_providers import FakeProvider
from fake_providers.ledger import ConnectionRecord, Ledger, RequestRecord, now_ns
from reference_agent.config import AgentConfig
from reference_agent.defects import Defects
from reference_agent.http_api import serve

pytestmark = pytest.mark.anyio

WAIT = 5.0  # bound on every wait
Event = tuple[str, dict[str, Any]]


@asynccontextmanager
async def api(provider: FakeProvider, *defects: str) -> AsyncIterator[httpx.AsyncClient]:
    config = AgentConfig(
        base_url=provider.url("openai"),
        api_key="sk-test",
        model="gpt-4o",
        stale_timeout=2.0,
        memory_extraction=False,
        defects=Defects.of(defects),
    )
    async with anyio.create_task_group() as tg:
        url = await tg.start(serve, config)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT, trust_env=False) as client:
            yield client
        tg.cancel_scope.cancel()


async def events(client: httpx.AsyncClient, stream_id: str) -> list[Event]:
    """The whole SSE stream of one run; fails if it does not end within WAIT."""
    seen: list[Event] = []
    kind = ""
    with anyio.fail_after(WAIT):
        async with client.stream("GET", f"/streams/{stream_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line.removeprefix("data: "))))
    return seen


class Reader:
    """Reads a stream in the background; `done` is set once the response has ended."""

    def __init__(self, client: httpx.AsyncClient, stream_id: str) -> None:
        self.client, self.stream_id = client, stream_id
        self.seen: list[Event] = []
        self.done = anyio.Event()

    async def run(self) -> None:
        self.seen = await events(self.client, self.stream_id)
        self.done.set()

    async def result(self) -> list[Event]:
        with anyio.fail_after(WAIT):
            await self.done.wait()
        return self.seen


async def session(client: httpx.AsyncClient) -> str:
    response = await client.post("/sessions")
    assert response.status_code == 201
    return str(response.json()["session_id"])


async def prompt(client: httpx.AsyncClient, session_id: str, text: str) -> dict[str, str]:
    response = await client.post(f"/sessions/{session_id}/prompts", json={"prompt": text})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def cancel(
    client: httpx.AsyncClient, session_id: str, stream_id: str | None = None
) -> dict[str, Any]:
    body = {} if stream_id is None else {"stream_id": stream_id}
    response = await client.post(f"/sessions/{session_id}/cancel", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def request_with(provider: FakeProvider, marker: str) -> RequestRecord:
    [request] = [r for r in provider.ledger.requests() if marker.encode() in r.body]
    return request


def terminals(seen: list[Event]) -> list[str]:
    return [kind for kind, _ in seen if kind != "delta"]


async def test_prompt_streams_deltas_then_exactly_one_completed_event(
    provider: FakeProvider,
) -> None:
    async with api(provider) as client:
        assert (await client.get("/health")).status_code == 200
        sid = await session(client)
        accepted = await prompt(client, sid, "hello")
        assert accepted["turn_id"] and accepted["stream_id"]
        seen = await events(client, accepted["stream_id"])
        assert terminals(seen) == ["completed"] and seen[-1][0] == "completed"
        deltas = [data["text"] for kind, data in seen if kind == "delta"]
        assert deltas and "".join(deltas) == seen[-1][1]["text"]
        assert {data["turn_id"] for _, data in seen} == {accepted["turn_id"]}
        assert seen[-1][1]["stop_reason"] == "completed"
        # A late subscriber gets the same stream replayed from its start.
        assert await events(client, accepted["stream_id"]) == seen
        transcript = (await client.get(f"/sessions/{sid}/transcript")).json()
        roles = [(m["role"], m["finish_reason"]) for m in transcript["messages"]]
        assert roles == [("user", None), ("assistant", "stop")]
        assert transcript["usage"]["output_tokens"] > 0


async def test_cancel_mid_stream_ends_the_stream_and_closes_the_provider_connection(
    provider: FakeProvider,
) -> None:
    provider.add_fault("hold-before=3,gate=g")
    async with api(provider) as client, anyio.create_task_group() as tg:
        sid = await session(client)
        accepted = await prompt(client, sid, "hello")
        reader = Reader(client, accepted["stream_id"])
        tg.start_soon(reader.run)
        await provider.gate("g").wait_reached()
        t = now_ns()
        answer = await cancel(client, sid, accepted["stream_id"])
        assert answer == {"ok": True, "cancelled": True, "stream_id": accepted["stream_id"]}
        seen = await reader.result()  # the stream closed after its terminal event
        assert terminals(seen) == ["cancelled"] and seen[-1][0] == "cancelled"
        [request] = provider.ledger.requests()

        def closed(ledger: Ledger) -> ConnectionRecord | None:
            return ledger.closed_by_client_within(t, WAIT, connection_id=request.connection_id)

        await provider.ledger.wait_for(closed, WAIT, "the agent to close the provider connection")
        transcript = (await client.get(f"/sessions/{sid}/transcript")).json()
        assert transcript["messages"] == []  # cancelled mid-stream: nothing committed


async def test_a_stale_stream_id_cancels_nothing_and_the_current_stream_runs_on(
    provider: FakeProvider,
) -> None:
    provider.add_fault("body-contains=second-xq2,hold-before=3,gate=g")
    async with api(provider) as client:
        sid = await session(client)
        first = await prompt(client, sid, "first-xq1")
        assert terminals(await events(client, first["stream_id"])) == ["completed"]
        second = await prompt(client, sid, "second-xq2")
        await provider.gate("g").wait_reached()
        answer = await cancel(client, sid, first["stream_id"])
        assert answer["cancelled"] is False and answer["stream_id"] == first["stream_id"]
        assert provider.ledger.connection(request_with(provider, "second-xq2").connection_id).open
        provider.gate("g").release()
        seen = await events(client, second["stream_id"])
        assert terminals(seen) == ["completed"]
        assert {data["turn_id"] for _, data in seen} == {second["turn_id"]}


async def test_defects_come_from_the_config(provider: FakeProvider) -> None:
    provider.add_fault("body-contains=second-xq2,hold-before=3,gate=g")
    async with api(provider, "cancel-not-owner-scoped") as client:
        sid = await session(client)
        first = await prompt(client, sid, "first-xq1")
        assert terminals(await events(client, first["stream_id"])) == ["completed"]
        second = await prompt(client, sid, "second-xq2")
        await provider.gate("g").wait_reached()
        assert (await cancel(client, sid, first["stream_id"]))["cancelled"] is True  # the bug
        assert terminals(await events(client, second["stream_id"])) == ["cancelled"]


async def test_cancel_stops_the_active_run_and_the_queued_follow_up(
    provider: FakeProvider,
) -> None:
    provider.add_fault("body-contains=active-xq3,hold-before=3,gate=g")
    async with api(provider) as client:
        sid = await session(client)
        active = await prompt(client, sid, "active-xq3")
        await provider.gate("g").wait_reached()
        queued = await prompt(client, sid, "queued-xq4")
        answer = await cancel(client, sid)
        assert answer["cancelled"] is True
        assert terminals(await events(client, active["stream_id"])) == ["cancelled"]
        seen = await events(client, queued["stream_id"])
        assert terminals(seen) == ["cancelled"] and seen[-1][1]["before_start"] is True
        assert [r.body for r in provider.ledger.requests() if b"queued-xq4" in r.body] == []
        transcript = (await client.get(f"/sessions/{sid}/transcript")).json()
        turns = [(m["role"], m["turn_id"], m["finish_reason"]) for m in transcript["messages"]]
        assert turns == [
            ("user", queued["turn_id"], None),
            ("assistant", queued["turn_id"], "cancelled"),
        ]
        assert transcript["usage"] == {"input_tokens": 0, "output_tokens": 0}


async def test_idle_cancel_is_a_noop_and_the_next_prompt_completes(
    provider: FakeProvider,
) -> None:
    async with api(provider) as client:
        sid = await session(client)
        answer = await cancel(client, sid)
        assert answer["cancelled"] is False and answer["stream_id"] is None
        accepted = await prompt(client, sid, "after the idle cancel")
        assert terminals(await events(client, accepted["stream_id"])) == ["completed"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/sessions/{sid}/prompts", b"{not json", 400, "not valid JSON"),
        ("POST", "/sessions/{sid}/prompts", b'{"prompt": 3}', 400, '"prompt"'),
        ("POST", "/sessions/{sid}/cancel", b'["stream-1"]', 400, "JSON object"),
        ("POST", "/sessions/nope/prompts", b'{"prompt": "hi"}', 404, "no session 'nope'"),
        ("GET", "/sessions/nope/transcript", b"", 404, "no session 'nope'"),
        ("GET", "/streams/nope/events", b"", 404, "no stream 'nope'"),
        ("GET", "/nowhere", b"", 404, "no route"),
    ],
)
async def test_bad_requests_get_one_clear_json_error(
    provider: FakeProvider, method: str, path: str, body: bytes, status: int, words: str
) -> None:
    async with api(provider) as client:
        sid = await session(client)
        response = await client.request(method, path.format(sid=sid), content=body)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        message = response.json()["error"]["message"]
        assert isinstance(message, str) and words in message
        assert (await client.get("/health")).status_code == 200  # the connection lives on


async def test_serve_subprocess_prints_its_url_and_stops_on_sigterm(
    provider: FakeProvider,
) -> None:
    argv = [sys.executable, "-m", "reference_agent", "serve", "--port", "0"]
    argv += ["--base-url", provider.url("openai"), "--api-key", "sk-test"]
    async with await anyio.open_process(argv, stderr=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            with anyio.fail_after(15):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
            text = line.decode()
            assert text.startswith("reference_agent serving http://127.0.0.1:")
            url = text.removeprefix("reference_agent serving ")
            async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
                assert (await client.get("/health")).status_code == 200
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(WAIT):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()


def test_serve_on_a_busy_port_is_one_clear_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "reference_agent", "serve", "--port", str(port)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
