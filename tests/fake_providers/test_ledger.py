"""The ledger's bookkeeping and queries, driven directly (no sockets)."""

from __future__ import annotations

import json
import threading

import pytest

from fake_providers.ledger import REDACTED, CloseKind, Closer, Ledger, Outcome, now_ns
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


def test_connections_opened_after_a_reset_never_reuse_a_kept_connections_id() -> None:
    ledger = Ledger()
    closed = ledger.open_connection("127.0.0.1:1", tls=False)
    kept = ledger.open_connection("127.0.0.1:2", tls=False)  # e.g. an idle keep-alive
    ledger.connection_closed(closed, Closer.CLIENT, CloseKind.FIN)
    ledger.reset()
    fresh = ledger.open_connection("127.0.0.1:3", tls=False)
    assert fresh.id != kept.id
    assert ledger.connection(fresh.id) is fresh
