"""The ledger's bookkeeping and queries, driven directly (no sockets)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from fake_providers.ledger import (
    REDACTED,
    CloseKind,
    Closer,
    ConnectionRecord,
    Ledger,
    Outcome,
    RequestRecord,
    now_ns,
)
from fake_providers.signals import WaitTimeout


def request(
    ledger: Ledger, body: bytes = b"{}", headers: list[tuple[bytes, bytes]] | None = None
) -> object:
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    return ledger.start_request(
        conn,
        method="POST",
        path="/v1/chat/completions",
        query="",
        headers=headers or [],
        body=body,
        started_ns=now_ns(),
    )


def test_secrets_never_reach_the_ledger_or_its_json() -> None:
    ledger = Ledger()
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    secret_headers = [
        (b"Authorization", b"Bearer sk-live-123"),
        (b"x-api-key", b"sk-ant-456"),
        (b"api-key", b"azure-789"),
        (b"x-goog-api-key", b"goog-000"),
        (b"user-agent", b"agent/1"),
    ]
    req = ledger.start_request(
        conn,
        method="POST",
        path="/v1beta/models/g:streamGenerateContent",
        query="alt=sse&key=goog-111",
        headers=secret_headers,
        body=b"{}",
        started_ns=now_ns(),
    )
    dumped = json.dumps(ledger.to_json())
    for secret in ("sk-live-123", "sk-ant-456", "azure-789", "goog-000", "goog-111"):
        assert secret not in dumped
    assert req.header("authorization") == REDACTED
    assert req.header("user-agent") == "agent/1"
    assert "alt=sse" in req.query


def test_stainless_retry_count_groups_attempts_into_one_call() -> None:
    ledger = Ledger()
    for count in (b"0", b"1", b"2"):
        request(ledger, b'{"a":1}', [(b"x-stainless-retry-count", count)])
    request(ledger, b'{"a":1}', [(b"x-stainless-retry-count", b"0")])  # a new call, same body
    calls = ledger.logical_calls()
    assert [c.retries for c in calls] == [2, 0]
    assert [r.attempt for r in calls[0].attempts] == [0, 1, 2]


def test_identical_body_without_header_counts_as_a_retry() -> None:
    ledger = Ledger()
    request(ledger, b'{"turn":1}')
    request(ledger, b'{"turn":1}')
    request(ledger, b'{"turn":2}')
    assert [c.retries for c in ledger.logical_calls()] == [1, 0]


def test_first_close_wins_and_queries_see_it() -> None:
    ledger = Ledger()
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    t = now_ns()
    ledger.connection_closed(conn, Closer.CLIENT, CloseKind.RST)
    ledger.connection_closed(conn, Closer.SERVER, CloseKind.FIN)
    assert (conn.closed_by, conn.close_kind) == (Closer.CLIENT, CloseKind.RST)
    assert ledger.closed_by_client_within(t, 1.0) is conn
    assert ledger.closed_by_client_within(now_ns(), 1.0) is None
    assert ledger.open_connections() == []


def test_events_and_bytes_after_a_moment() -> None:
    ledger = Ledger()
    req = request(ledger)
    ledger.events_written(req, [10, 20])  # type: ignore[arg-type]
    t = now_ns()
    ledger.events_written(req, [5])  # type: ignore[arg-type]
    assert ledger.events_after(t) == 1
    assert ledger.bytes_after(t) == 5
    assert ledger.requests_after(t) == []
    ledger.request_finished(req, Outcome.COMPLETE)  # type: ignore[arg-type]
    data = ledger.to_json()["connections"][0]
    assert data["events_sent"] == 3
    assert [e["bytes"] for e in data["requests"][0]["events"]] == [10, 20, 5]


def test_blocking_wait_wakes_when_another_thread_records() -> None:
    ledger = Ledger()
    go = threading.Event()

    def record() -> None:
        go.wait()
        request(ledger)

    worker = threading.Thread(target=record)
    worker.start()
    go.set()
    found = ledger.wait_for_blocking(lambda ledger: ledger.requests(), timeout=5)
    worker.join()
    assert len(found) == 1


def test_wait_times_out_with_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match="waiting for the moon"):
        Ledger().wait_for_blocking(lambda ledger: None, timeout=0.01, what="the moon")


def test_reset_keeps_open_connections_only() -> None:
    ledger = Ledger()
    open_conn = ledger.open_connection("127.0.0.1:1", tls=False)
    closed = ledger.open_connection("127.0.0.1:2", tls=False)
    ledger.connection_closed(closed, Closer.CLIENT, CloseKind.FIN)
    ledger.reset()
    assert ledger.connections() == [open_conn]


class FakeClock:
    """A ledger clock the test moves by hand, so stamps are exact."""

    def __init__(self) -> None:
        self.t = 1_000

    def __call__(self) -> int:
        return self.t


def test_the_ledger_stamps_with_its_injected_clock() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock)
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    req = request_on(ledger, conn)
    clock.t = 2_000
    ledger.events_written(req, [10, 20])
    clock.t = 3_000
    ledger.events_written(req, [5])
    ledger.connection_closed(conn, Closer.CLIENT, CloseKind.FIN)
    assert (conn.opened_ns, conn.closed_ns) == (1_000, 3_000)
    assert list(req.event_ns) == [2_000, 2_000, 3_000]
    assert ledger.events_after(2_000) == 1
    assert ledger.closed_by_client_within(2_500, 0.000_000_5) is conn
    assert ledger.closed_by_client_within(2_000, 0.000_000_5) is None
    assert ledger.to_json()["now_ns"] == 3_000


def request_on(ledger: Ledger, conn: ConnectionRecord, body: bytes = b"{}") -> RequestRecord:
    return ledger.start_request(
        conn, method="POST", path="/v1/messages", query="", headers=[], body=body, started_ns=0
    )


def serve_one(ledger: Ledger, events: int = 3, body: bytes = b"{}") -> ConnectionRecord:
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    req = request_on(ledger, conn, body)
    ledger.events_written(req, [100] * events)
    ledger.request_finished(req, Outcome.COMPLETE)
    ledger.connection_closed(conn, Closer.CLIENT, CloseKind.FIN)
    return conn


def test_retention_keeps_the_recent_window_and_totals_stay_right() -> None:
    ledger = Ledger(retain_connections=10)
    in_flight = ledger.open_connection("127.0.0.1:9", tls=False)
    request_on(ledger, in_flight)
    for i in range(50):
        serve_one(ledger, body=b'{"n": %d}' % i)
    kept = ledger.connections()
    assert len(kept) <= 11
    assert in_flight in kept  # in flight: never summarised away
    assert kept[-1].id == 51  # the newest is always there
    assert ledger.totals() == {"connections": 51, "requests": 51, "events": 150, "bytes": 15_000}
    assert ledger.to_json()["totals"]["events"] == 150


def test_retention_by_bytes_drops_the_oldest_bodies() -> None:
    ledger = Ledger(retain_bytes=10_000)
    for _ in range(20):
        serve_one(ledger, body=b"x" * 1_000)
    assert sum(r.body_size for r in ledger.requests()) <= 10_000
    assert ledger.totals()["requests"] == 20


def test_retries_are_grouped_within_the_retained_window() -> None:
    ledger = Ledger(retain_connections=4)
    for _ in range(10):
        serve_one(ledger, body=b'{"same": 1}')
    calls = ledger.logical_calls()
    assert len(calls) == 1
    assert calls[0].attempts[-1].attempt == 9  # the tenth attempt of the same call


def test_the_ledger_log_gets_every_connection_once_it_has_ended(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(retain_connections=2)
    with ledger.log_to(path):
        for _ in range(5):
            serve_one(ledger)
        open_conn = ledger.open_connection("127.0.0.1:2", tls=False)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [c["id"] for c in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["requests"][0]["outcome"] == "complete"
    assert len(lines[0]["requests"][0]["events"]) == 3
    assert open_conn.id not in [c["id"] for c in lines]


def test_reset_forgets_totals_too_and_says_how_much_it_dropped() -> None:
    ledger = Ledger()
    for _ in range(3):
        serve_one(ledger, body=b"x" * 1000)
    assert ledger.reset() > 3 * 1000
    assert ledger.totals() == {"connections": 0, "requests": 0, "events": 0, "bytes": 0}
    assert serve_one(ledger).id == 4  # ids keep counting: old stamps never collide


def test_a_busy_keep_alive_connection_is_thinned_but_never_its_request_in_flight() -> None:
    ledger = Ledger(retain_bytes=50_000)
    conn = ledger.open_connection("127.0.0.1:1", tls=False)
    for _ in range(100):
        req = request_on(ledger, conn)
        ledger.events_written(req, [100] * 50)
        ledger.request_finished(req, Outcome.COMPLETE)
    in_flight = request_on(ledger, conn)
    ledger.events_written(in_flight, [100] * 5000)  # 80 kB of records on its own
    last = request_on(ledger, conn)
    ledger.request_finished(last, Outcome.COMPLETE)
    assert conn.open
    assert in_flight in conn.requests
    assert len(conn.requests) < 10
    assert ledger.totals()["requests"] == 102


def test_connections_opened_after_a_reset_never_reuse_a_kept_connections_id() -> None:
    ledger = Ledger()
    closed = ledger.open_connection("127.0.0.1:1", tls=False)
    kept = ledger.open_connection("127.0.0.1:2", tls=False)  # e.g. an idle keep-alive
    ledger.connection_closed(closed, Closer.CLIENT, CloseKind.FIN)
    ledger.reset()
    fresh = ledger.open_connection("127.0.0.1:3", tls=False)
    assert fresh.id != kept.id
    assert ledger.connection(fresh.id) is fresh
