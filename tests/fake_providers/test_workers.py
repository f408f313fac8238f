"""`serve --workers N`: several processes on one port, one provider to the user.

The kernel spreads connections over the workers (SO_REUSEPORT); what the user sees must be
one provider: unique connection ids and request ordinals, one `times=` count per rule, faults
and gate releases that reach every worker, one merged ledger. Every test talks to 127.0.0.1
and is bounded in count; the pool is started once for the module (a spawn costs ~1 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from fake_providers.merge import merge_gates, regroup_calls
from fake_providers.workers import ProviderPool, WorkerConfig

CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
WORKERS = 2


@pytest.fixture(scope="module")
def pool() -> Iterator[ProviderPool]:
    with ProviderPool(WORKERS, WorkerConfig(host="127.0.0.1", port=0)) as started:
        yield started


@pytest.fixture
def origin(pool: ProviderPool) -> Iterator[str]:
    base = f"http://127.0.0.1:{pool.port}"
    httpx.post(base + "/__harness/reset").raise_for_status()
    httpx.delete(base + "/__harness/faults").raise_for_status()
    yield base


def fresh_call(origin: str, body: dict[str, object] = CHAT) -> httpx.Response:
    """One request on a new connection (a new source port: the kernel picks a worker)."""
    with httpx.Client() as client:
        return client.post(origin + "/v1/chat/completions", json=body)


def ledger(origin: str) -> dict[str, object]:
    data: dict[str, object] = httpx.get(origin + "/__harness/ledger").json()
    return data


def test_connections_spread_over_the_workers_and_the_ledger_is_one(origin: str) -> None:
    calls = 24
    bodies = [{**CHAT, "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(calls)]
    assert all(fresh_call(origin, b).status_code == 200 for b in bodies)
    data = ledger(origin)
    conns = data["connections"]
    assert isinstance(conns, list)
    assert data["workers"] == WORKERS
    # With 24 connections from random source ports, all on one worker is a 2^-23 chance.
    assert {c["worker"] for c in conns} == set(range(WORKERS))
    assert sorted(c["id"] for c in conns) == list(
        range(min(c["id"] for c in conns), 1 + max(c["id"] for c in conns))
    )
    ordinals = [r["ordinal"] for c in conns for r in c["requests"]]
    assert len(ordinals) == len(set(ordinals)) == calls
    totals = data["totals"]
    assert isinstance(totals, dict)
    assert totals["requests"] == calls
    assert totals["events"] == sum(c["events_sent"] for c in conns)
    assert len(data["calls"]) == calls  # type: ignore[arg-type]


def test_a_fault_added_on_one_worker_applies_on_all_and_times_counts_once(origin: str) -> None:
    added = httpx.post(origin + "/__harness/faults", content="status=503,times=3")
    assert added.status_code == 201
    codes = [fresh_call(origin).status_code for _ in range(12)]
    assert codes.count(503) == 3
    assert codes[:3] == [503, 503, 503]
    rules = httpx.get(origin + "/__harness/faults").json()["rules"]
    assert [(r["spec"], r["used"]) for r in rules] == [("status=503,times=3", 3)]
    served = {c["worker"] for c in ledger(origin)["connections"]}  # type: ignore[union-attr]
    assert served == set(range(WORKERS))  # 12 connections: all on one worker is 2^-11
    assert httpx.delete(origin + "/__harness/faults").json() == {"cleared": 1}


def test_releasing_a_gate_releases_the_streams_held_on_every_worker(origin: str) -> None:
    httpx.post(origin + "/__harness/faults", content="hold-before=2,gate=g").raise_for_status()
    streams = 16
    results: list[httpx.Response | BaseException] = []

    def call() -> None:
        try:
            results.append(fresh_call(origin))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(streams)]
    for t in threads:
        t.start()
    arrivals, deadline = 0, time.monotonic() + 20
    while arrivals < streams and time.monotonic() < deadline:  # bounded poll of other processes
        gates = httpx.get(origin + "/__harness/gates").json()["gates"]
        arrivals = gates.get("g", {}).get("arrivals", 0)
    assert arrivals == streams
    assert all(t.is_alive() for t in threads)  # held: nothing finished before the release
    released = httpx.post(origin + "/__harness/gates/g/release")
    assert released.status_code == 200
    for t in threads:
        t.join(timeout=20)
    assert [type(r) for r in results] == [httpx.Response] * streams
    assert all(r.status_code == 200 and r.text.endswith("data: [DONE]\n\n") for r in results)  # type: ignore[union-attr]
    workers = {c["worker"] for c in ledger(origin)["connections"]}  # type: ignore[union-attr]
    assert workers == set(range(WORKERS))  # 16 connections: all on one worker is 2^-15


def test_reset_forgets_on_every_worker(origin: str) -> None:
    for _ in range(8):
        fresh_call(origin)
    assert len(ledger(origin)["connections"]) >= 8  # type: ignore[arg-type]
    httpx.post(origin + "/__harness/reset").raise_for_status()
    assert ledger(origin)["connections"] == []


def test_a_retry_that_reached_another_worker_joins_its_call() -> None:
    def req(ordinal: int, retry: str | None) -> dict[str, object]:
        headers = {} if retry is None else {"x-stainless-retry-count": retry}
        return {
            "ordinal": ordinal,
            "path": "/v1/chat/completions",
            "body_digest": "d",
            "headers": headers,
        }

    first, retry, other = req(1, "0"), req(2, "1"), req(3, "0")
    calls = regroup_calls([first, retry, other])
    assert calls == [
        {"id": 1, "attempts": [1, 2], "retries": 1},
        {"id": 2, "attempts": [3], "retries": 0},
    ]
    assert (retry["call_id"], retry["attempt"]) == (1, 1)


def test_gate_tables_merge_by_name() -> None:
    merged = merge_gates(
        [{"g": {"arrivals": 2, "released": False}}, {"g": {"arrivals": 3, "released": True}}]
    )
    assert merged == {"g": {"arrivals": 5, "released": True}}
