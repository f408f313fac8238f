"""The persisted transcript: atomic, commit-once turns and comparable snapshots."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_agent.model import Message, StopReason, ToolCall, Usage
from reference_agent.store import (
    Store,
    StoreError,
    TurnAlreadyCommittedError,
    UnknownSessionError,
)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    s.create_session("s1")
    yield s
    s.close()


def turn_messages(n: int, prompt: str = "hi") -> list[Message]:
    return [
        Message("user", prompt),
        Message(
            "assistant",
            "",
            finish_reason="tool_calls",
            tool_calls=(ToolCall(f"c{n}", "echo", {"text": f"x{n}", "nested": [1, {"a": None}]}),),
            usage=Usage(10, 2),
        ),
        Message("tool", f"x{n}", tool_call_id=f"c{n}"),
        Message("assistant", f"answer {n}", finish_reason="stop", usage=Usage(12, 3)),
    ]


TURN_USAGE = Usage(22, 5)


def commit(store: Store, session: str, turn: str, n: int = 0, usage: Usage = TURN_USAGE) -> None:
    store.commit_turn(
        session, turn, turn_messages(n, f"prompt {turn}"), StopReason.COMPLETED, usage
    )


def test_a_failed_commit_leaves_nothing(store: Store) -> None:
    before = store.snapshot("s1")
    bad = [
        Message("user", "hi"),
        Message("assistant", "", tool_calls=(ToolCall("c", "x", {"o": object()}),)),
    ]
    with pytest.raises(StoreError, match="cannot be serialised"):
        store.commit_turn("s1", "t1", bad, StopReason.COMPLETED, Usage(5, 5))
    assert store.transcript("s1") == []
    assert store.turns("s1") == []
    assert store.usage("s1") == Usage()
    assert store.snapshot("s1") == before
    # Nothing was half-written: the same turn id commits cleanly afterwards.
    commit(store, "s1", "t1")
    assert [t.id for t in store.turns("s1")] == ["t1"]


def test_a_turn_is_committed_at_most_once(store: Store) -> None:
    commit(store, "s1", "t1")
    before = store.snapshot("s1")
    with pytest.raises(TurnAlreadyCommittedError):
        store.commit_turn(
            "s1", "t1", [Message("assistant", "ghost")], StopReason.COMPLETED, Usage(1, 1)
        )
    store.create_session("s2")
    with pytest.raises(TurnAlreadyCommittedError):  # turn ids are global, not per session
        store.commit_turn(
            "s2", "t1", [Message("assistant", "ghost")], StopReason.COMPLETED, Usage()
        )
    assert store.snapshot("s1") == before
    assert store.transcript("s2") == []


def test_refusals_are_loud(store: Store) -> None:
    with pytest.raises(UnknownSessionError):
        commit(store, "nope", "t1")
    with pytest.raises(UnknownSessionError):
        store.transcript("nope")
    with pytest.raises(StoreError, match="already exists"):
        store.create_session("s1")
    with pytest.raises(StoreError, match="of turn 'other'"):
        store.commit_turn(
            "s1", "t1", [Message("user", "x", turn_id="other")], StopReason.COMPLETED, Usage()
        )
    assert store.turns("s1") == []


def test_transcript_order_turns_and_usage_across_turns(store: Store) -> None:
    for n in range(3):
        commit(store, "s1", f"t{n}", n, Usage(100 + n, n))
    summary = Message("summary", "the story so far", finish_reason="stop")
    store.commit_turn(
        "s1", "t3", [Message("user", "go on"), summary], StopReason.CANCELLED, Usage(7, 0)
    )

    expected = [
        Message(m.role, m.content, f"t{n}", m.finish_reason, m.tool_calls, m.tool_call_id, m.usage)
        for n in range(3)
        for m in turn_messages(n, f"prompt t{n}")
    ] + [Message("user", "go on", "t3"), Message("summary", "the story so far", "t3", "stop")]
    assert store.transcript("s1") == expected

    turns = store.turns("s1")
    assert [(t.id, t.ordinal, t.prompt, t.stop_reason) for t in turns] == [
        ("t0", 0, "prompt t0", StopReason.COMPLETED),
        ("t1", 1, "prompt t1", StopReason.COMPLETED),
        ("t2", 2, "prompt t2", StopReason.COMPLETED),
        ("t3", 3, "go on", StopReason.CANCELLED),
    ]
    assert turns[0].committed_ns <= turns[-1].committed_ns
    assert store.usage("s1") == Usage(100 + 101 + 102 + 7, 0 + 1 + 2)


def test_snapshot_is_unchanged_by_other_sessions(store: Store) -> None:
    commit(store, "s1", "a1")
    store.create_session("s2")
    before, digest = store.snapshot("s1"), store.digest("s1")
    for n in range(3):
        commit(store, "s2", f"b{n}", n)
    after = store.snapshot("s1")
    assert after == before and hash(after) == hash(before)
    assert store.digest("s1") == digest == after.digest()
    assert {before, after} == {before}

    commit(store, "s1", "a2")
    assert store.snapshot("s1") != before
    assert store.digest("s1") != digest
    assert store.list_sessions() == ["s1", "s2"]


def test_file_store_uses_wal_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    first = Store.open(path)
    first.create_session("s1")
    commit(first, "s1", "t1")
    digest = first.digest("s1")
    # A second connection (e.g. the harness reading) sees the committed turn at once.
    reader = Store.open(path)
    assert reader.digest("s1") == digest
    reader.close()
    first.close()

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Store.open(path)
    assert again.session_exists("s1") and not again.session_exists("s2")
    assert again.digest("s1") == digest
    assert again.usage("s1") == Usage(22, 5)
    again.close()


def test_concurrent_commits_from_two_threads(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "agent.db")
    store.create_session("s1")
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def writer(prefix: str) -> None:
        try:
            go.wait()
            for n in range(50):
                commit(store, "s1", f"{prefix}{n}", n, Usage(1, 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    turns = store.turns("s1")
    assert [t.ordinal for t in turns] == list(range(100))
    assert store.usage("s1") == Usage(100, 100)
    transcript = store.transcript("s1")
    assert len(transcript) == 400
    # Each turn's messages stay contiguous: no interleaving between concurrent commits.
    by_turn = [transcript[i].turn_id for i in range(0, 400, 4)]
    assert by_turn == [t.id for t in turns]
    assert all(len({m.turn_id for m in transcript[i : i + 4]}) == 1 for i in range(0, 400, 4))
    store.close()
