"""The control API steers a provider from another process, over plain HTTP."""

from __future__ import annotations

import anyio
import httpx
import pytest

from fake_providers import FakeProvider
from fake_providers.control import ControlAPI
from fake_providers.gates import GateRegistry
from fake_providers.ledger import Ledger
from fake_providers.rules import PlanResolver

pytestmark = pytest.mark.anyio
CHAT = {"model": "gpt-4o", "stream": True, "messages": []}


async def test_faults_can_be_added_listed_and_cleared(provider: FakeProvider) -> None:
    control = provider.origin + "/__harness/faults"
    async with httpx.AsyncClient() as client:
        added = await client.post(control, content="stream=true,status=503\nnth=9,tokens=3")
        listed = await client.get(control)
        faulted = await client.post(provider.url() + "/chat/completions", json=CHAT)
        cleared = await client.delete(control)
        healthy = await client.post(provider.url() + "/chat/completions", json=CHAT)
    assert added.status_code == 201
    assert [r["spec"] for r in added.json()["rules"]] == [
        "stream=true,status=503",
        "nth=9,tokens=3",
    ]
    assert [r["used"] for r in listed.json()["rules"]] == [0, 0]
    assert faulted.status_code == 503
    assert cleared.json() == {"cleared": 2}
    assert healthy.status_code == 200


async def test_json_rules_and_bad_specs(provider: FakeProvider) -> None:
    control = provider.origin + "/__harness/faults"
    async with httpx.AsyncClient() as client:
        ok = await client.post(control, json={"rules": [{"spec": "reset-after=2"}, "tokens=4"]})
        bad = await client.post(control, json={"rules": ["pace=10ms", "hang-afterr=1"]})
        empty = await client.post(control, content=b"")
    assert ok.status_code == 201
    assert bad.status_code == 400
    assert "did you mean 'hang-after'" in bad.json()["error"]["message"]
    assert len(provider.resolver.rules()) == 2  # the bad batch added nothing
    assert empty.status_code == 400


async def test_ledger_over_http_leaves_out_its_own_connections(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(provider.url() + "/chat/completions", json=CHAT)
        ledger = (await client.get(provider.origin + "/__harness/ledger")).json()
        lean = (await client.get(provider.origin + "/__harness/ledger?events=0")).json()
    (conn,) = ledger["connections"]
    assert set(conn) >= {"id", "opened_ns", "closed_ns", "closed_by", "close_kind", "events_sent"}
    (req,) = conn["requests"]
    assert {"method", "path", "model", "ordinal", "started_ns"} <= set(req)
    assert req["events_sent"] == len(req["events"]) > 0
    assert "events" not in lean["connections"][0]["requests"][0]
    assert ledger["clock"] == "CLOCK_MONOTONIC"


async def test_gate_released_over_http(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
        await client.post(provider.origin + "/__harness/faults", content="hold-before=2,gate=g1")
        statuses: list[int] = []

        async def call() -> None:
            r = await client.post(provider.url() + "/chat/completions", json=CHAT)
            statuses.append(r.status_code)

        tg.start_soon(call)
        await provider.gate("g1").wait_reached()
        gates = (await client.get(provider.origin + "/__harness/gates")).json()["gates"]
        assert gates["g1"] == {"arrivals": 1, "released": False}
        await client.post(provider.origin + "/__harness/gates/g1/release")
    assert statuses == [200]


async def test_reset_clears_ledger_and_rules(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(provider.origin + "/__harness/faults", content="tokens=2")
        await client.post(provider.url() + "/chat/completions", json=CHAT)
        await client.post(provider.origin + "/__harness/reset")
    assert provider.ledger.requests() == []
    assert provider.resolver.rules() == []


async def test_control_refuses_non_loopback_peers() -> None:
    api = ControlAPI(Ledger(), PlanResolver(), GateRegistry())
    status, body = await api.handle("GET", "/__harness/ledger", "", b"", loopback=False)
    assert status == 403
    assert b"loopback clients only" in body


async def test_unknown_control_endpoint_lists_the_real_ones(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(provider.origin + "/__harness/nope")
    assert r.status_code == 404
    assert "GET /__harness/ledger" in r.json()["error"]["message"]


async def test_reset_over_http_gives_the_ledger_memory_back(provider: FakeProvider) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            await client.post(provider.url() + "/chat/completions", json=CHAT)
        await client.post(provider.origin + "/__harness/reset")
        ledger = (await client.get(provider.origin + "/__harness/ledger")).json()
    # The keep-alive connection that asked for the reset stays open, but holds nothing.
    assert ledger["totals"] == {"connections": 0, "requests": 0, "events": 0, "bytes": 0}
    assert provider.ledger.requests() == []
