"""The persisted transcript: what ghost-turn checks read (INCIDENTS.md I2, I3).

A turn is committed exactly once, in one SQLite transaction: its row and all its messages,
or nothing. A second commit of the same turn id is refused loudly, which is how a ghost
worker that outlived its timeout is caught instead of silently mutating a settled session.
`snapshot()` / `digest()` let a check assert "unchanged since then".
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_agent.model import Message, StopReason, ToolCall, Usage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
    ordinal INTEGER NOT NULL, prompt TEXT NOT NULL, stop_reason TEXT NOT NULL,
    committed_ns INTEGER NOT NULL, usage_in INTEGER NOT NULL, usage_out INTEGER NOT NULL,
    UNIQUE (session_id, ordinal)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
    turn_id TEXT NOT NULL REFERENCES turns(id), seq INTEGER NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, finish_reason TEXT, tool_calls TEXT NOT NULL, tool_call_id TEXT,
    usage_in INTEGER NOT NULL, usage_out INTEGER NOT NULL,
    UNIQUE (session_id, seq)
);
"""


class StoreError(Exception):
    """A store operation was refused; nothing was written."""


class UnknownSessionError(StoreError):
    """The session id was never created."""


class TurnAlreadyCommittedError(StoreError):
    """A turn id may be committed at most once (a second commit is a ghost turn)."""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One committed turn as persisted. `committed_ns` is `time.monotonic_ns()`."""

    id: str
    ordinal: int
    prompt: str
    stop_reason: StopReason
    committed_ns: int
    usage: Usage


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Everything a turn can change in one session; equal snapshots mean no mutation."""

    session_id: str
    transcript: tuple[Message, ...]
    usage: Usage
    turn_ids: tuple[str, ...]

    def canonical_json(self) -> str:
        """Stable text form (sorted keys, no whitespace): the input of `digest`."""
        doc = {
            "session_id": self.session_id,
            "transcript": [_message_doc(m) for m in self.transcript],
            "usage": [self.usage.input_tokens, self.usage.output_tokens],
            "turn_ids": list(self.turn_ids),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def __hash__(self) -> int:
        # ToolCall.arguments is a dict, so the generated field hash would fail.
        return hash(self.canonical_json())


def _message_doc(m: Message) -> dict[str, Any]:
    return {
        "role": m.role,
        "content": m.content,
        "turn_id": m.turn_id,
        "finish_reason": m.finish_reason,
        "tool_calls": _tool_calls_doc(m.tool_calls),
        "tool_call_id": m.tool_call_id,
        "usage": [m.usage.input_tokens, m.usage.output_tokens],
    }


def _tool_calls_doc(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


class Store:
    """One SQLite connection, shared by threads and tasks under a lock (calls are quick)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open or create the database; ":memory:" gives a private in-memory store."""
        target = str(path)
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
            if target != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{target}: could not enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return cls(conn, target)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ sessions

    def create_session(self, session_id: str) -> None:
        """Create an empty session; an existing id is refused (two owners of one id)."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO sessions (id, created_ns) VALUES (?, ?)",
                    (session_id, time.monotonic_ns()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"session {session_id!r} already exists") from None

    def session_exists(self, session_id: str) -> bool:
        with self._lock:
            return self._session_exists(session_id)

    def list_sessions(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT id FROM sessions ORDER BY created_ns, id")
            return [r[0] for r in rows]

    # -------------------------------------------------------------------- commit

    def commit_turn(
        self,
        session_id: str,
        turn_id: str,
        messages: Sequence[Message],
        stop_reason: StopReason,
        usage: Usage,
    ) -> TurnRecord:
        """Persist one turn atomically: its row and all `messages`, or nothing.

        The prompt is the first "user" message's content. A message whose `turn_id` is
        set must name this turn. Raises `TurnAlreadyCommittedError` on a second commit.
        """
        stop = StopReason(stop_reason)
        for m in messages:
            if m.turn_id and m.turn_id != turn_id:
                raise StoreError(f"message of turn {m.turn_id!r} in the commit of {turn_id!r}")
        prompt = next((m.content for m in messages if m.role == "user"), "")
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if not self._session_exists(session_id):
                    raise UnknownSessionError(f"unknown session {session_id!r}")
                if cur.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone():
                    raise TurnAlreadyCommittedError(f"turn {turn_id!r} is already committed")
                ordinal = cur.execute(
                    "SELECT COALESCE(MAX(ordinal) + 1, 0) FROM turns WHERE session_id = ?",
                    (session_id,),
                ).fetchone()[0]
                seq = cur.execute(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE session_id = ?",
                    (session_id,),
                ).fetchone()[0]
                now = time.monotonic_ns()
                turn = (turn_id, session_id, ordinal, prompt, stop.value, now)
                usage_cols = (usage.input_tokens, usage.output_tokens)
                cur.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)", turn + usage_cols)
                for i, m in enumerate(messages):
                    try:
                        calls = json.dumps(_tool_calls_doc(m.tool_calls), sort_keys=True)
                    except (TypeError, ValueError) as exc:
                        raise StoreError(
                            f"turn {turn_id!r}: message {i} cannot be serialised: {exc}"
                        ) from exc
                    row: tuple[object, ...] = (session_id, turn_id, seq + i, m.role, m.content)
                    u = m.usage
                    row += (m.finish_reason, calls, m.tool_call_id, u.input_tokens, u.output_tokens)
                    cur.execute(
                        "INSERT INTO messages VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row
                    )
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # some errors already rolled back
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        return TurnRecord(turn_id, ordinal, prompt, stop, now, usage)

    # --------------------------------------------------------------------- reads

    def transcript(self, session_id: str) -> list[Message]:
        """All committed messages of the session, oldest first."""
        with self._lock:
            self._require(session_id)
            return self._transcript(session_id)

    def turns(self, session_id: str) -> list[TurnRecord]:
        with self._lock:
            self._require(session_id)
            return self._turns(session_id)

    def usage(self, session_id: str) -> Usage:
        """Sum of the usage of the committed turns."""
        with self._lock:
            self._require(session_id)
            return self._usage(session_id)

    def snapshot(self, session_id: str) -> StoreSnapshot:
        """Transcript, usage and turn ids, read consistently (one lock, one connection)."""
        with self._lock:
            self._require(session_id)
            return StoreSnapshot(
                session_id,
                tuple(self._transcript(session_id)),
                self._usage(session_id),
                tuple(t.id for t in self._turns(session_id)),
            )

    def digest(self, session_id: str) -> str:
        """sha256 hex of the snapshot's canonical JSON."""
        return self.snapshot(session_id).digest()

    # ------------------------------------------------------------------ internals

    def _session_exists(self, session_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,))
        return row.fetchone() is not None

    def _require(self, session_id: str) -> None:
        if not self._session_exists(session_id):
            raise UnknownSessionError(f"unknown session {session_id!r}")

    def _transcript(self, session_id: str) -> list[Message]:
        rows = self._conn.execute(
            "SELECT role, content, turn_id, finish_reason, tool_calls, tool_call_id,"
            " usage_in, usage_out FROM messages WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        out = []
        for role, content, turn_id, finish, calls, call_id, u_in, u_out in rows:
            tool_calls = tuple(
                ToolCall(c["id"], c["name"], c["arguments"]) for c in json.loads(calls)
            )
            out.append(
                Message(role, content, turn_id, finish, tool_calls, call_id, Usage(u_in, u_out))
            )
        return out

    def _turns(self, session_id: str) -> list[TurnRecord]:
        rows = self._conn.execute(
            "SELECT id, ordinal, prompt, stop_reason, committed_ns, usage_in, usage_out"
            " FROM turns WHERE session_id = ? ORDER BY ordinal",
            (session_id,),
        )
        return [
            TurnRecord(tid, ordinal, prompt, StopReason(stop), ns, Usage(u_in, u_out))
            for tid, ordinal, prompt, stop, ns, u_in, u_out in rows
        ]

    def _usage(self, session_id: str) -> Usage:
        u_in, u_out = self._conn.execute(
            "SELECT COALESCE(SUM(usage_in), 0), COALESCE(SUM(usage_out), 0)"
            " FROM turns WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        return Usage(int(u_in), int(u_out))
