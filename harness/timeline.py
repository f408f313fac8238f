"""One clock for a scenario: harness steps, agent notes and socket facts, merged and rendered.

Every stamp is `time.monotonic_ns()`, the clock the fake provider's ledger uses, so "closed
12 ms after the cancel" is a subtraction. Rendering is compact: times in ms relative to the
scenario start, runs of written events folded into one line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fake_providers.ledger import ConnectionRecord, Ledger, RequestRecord
from fake_providers.roles import Role
from harness.target import TimelineNote, Transcript, TranscriptEntry

HARNESS, AGENT, PROVIDER = "harness", "agent", "provider"
TAIL_LINES = 25
TRACE_ENTRIES = 400  # at most this many entries (the last ones) in a case's trace
TRACE_EVENTS = 200  # event times kept per connection in a trace (first and last halves)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline; `count`/`last_ns` describe a folded run of events."""

    t_ns: int
    source: str
    what: str
    key: str = ""  # requests' events carry "events:<ordinal>" so runs can be folded
    count: int = 1
    first: int = 0
    last_ns: int = 0


def rel_ms(t_ns: int, start_ns: int) -> str:
    """`+412.3ms`: a monotonic stamp relative to the scenario start."""
    return f"{(t_ns - start_ns) / 1e6:+.1f}ms"


class Timeline:
    """What the harness did, in order; merged with the ledger and the agent's notes on demand."""

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = time.monotonic_ns() if start_ns is None else start_ns
        self._steps: list[Entry] = []
        self._marks: list[tuple[str, int, str]] = []  # (kind, t_ns, label): bounds, for reports

    def mark(self, kind: str, t_ns: int, label: str) -> None:
        """Note an instant a check judged by (`bound`: the latest a close was allowed), for the
        drawn timeline; the text timeline is unchanged (the failure message says it)."""
        self._marks.append((kind, t_ns, label))

    def stamp(self, what: str, t_ns: int | None = None) -> int:
        """Record a harness step (now, or at `t_ns`) and return its time."""
        t = time.monotonic_ns() if t_ns is None else t_ns
        self._steps.append(Entry(t, HARNESS, what))
        return t

    def rel(self, t_ns: int) -> str:
        return rel_ms(t_ns, self.start_ns)

    def entries(
        self, ledger: Ledger | None = None, notes: Iterable[TimelineNote] = ()
    ) -> list[Entry]:
        """All entries by time, event runs folded (a run breaks at any other entry)."""
        raw = [*self._steps, *(Entry(n.t_ns, AGENT, n.what) for n in notes)]
        if ledger is not None:
            raw.extend(ledger_entries(ledger))
        raw.sort(key=lambda e: e.t_ns)
        return _fold(raw)

    def render(
        self,
        ledger: Ledger | None = None,
        notes: Iterable[TimelineNote] = (),
        *,
        limit: int | None = TAIL_LINES,
    ) -> str:
        """The timeline as text; with `limit`, only the last lines (the failure is at the end)."""
        lines = [self._line(e) for e in self.entries(ledger, notes)]
        if limit is not None and len(lines) > limit:
            skipped = len(lines) - limit
            lines = [f"  ... {skipped} earlier line(s); -v shows them all", *lines[-limit:]]
        return "\n".join(lines)

    def trace(
        self, ledger: Ledger | None = None, notes: Iterable[TimelineNote] = ()
    ) -> dict[str, Any]:
        """The timeline as data for a drawn report: entries per lane, each connection's life
        (opened, closed, by whom, event times) and the marks; times in ms from the start."""
        entries = self.entries(ledger, notes)

        def at(t_ns: int) -> float:
            return round((t_ns - self.start_ns) / 1e6, 3)

        items = []
        for e in entries[-TRACE_ENTRIES:]:
            item: dict[str, Any] = {"t": at(e.t_ns), "lane": e.source, "what": self._what(e)}
            if e.source == HARNESS and e.what.startswith("cancel ") and "answered" not in e.what:
                item["mark"] = "cancel"
            elif e.source == PROVIDER and " closed by " in e.what:
                item["mark"] = "close"
            items.append(item)
        conns = []
        for conn in ledger.connections() if ledger is not None else ():
            times = [t for req in conn.requests for t in req.event_ns]
            if len(times) > TRACE_EVENTS:
                half = TRACE_EVENTS // 2
                times = times[:half] + times[-half:]
            conns.append(
                {
                    "id": conn.id,
                    "opened": at(conn.opened_ns),
                    "closed": at(conn.closed_ns) if conn.closed_ns is not None else None,
                    "closed_by": conn.closed_by.value if conn.closed_by else None,
                    "close_kind": conn.close_kind.value if conn.close_kind else None,
                    "roles": sorted({r.role.value for r in conn.requests}),
                    "events_sent": conn.events_sent,
                    "events": [at(t) for t in times],
                }
            )
        marks = [{"kind": k, "t": at(t), "label": label} for k, t, label in self._marks]
        ends = [i["t"] for i in items] + [m["t"] for m in marks]
        ends += [c["closed"] or c["opened"] for c in conns]
        return {
            "entries": items,
            "connections": conns,
            "marks": marks,
            "end": max(ends, default=0.0),
            "omitted": max(0, len(entries) - TRACE_ENTRIES),
        }

    def _line(self, entry: Entry) -> str:
        return f"  {self.rel(entry.t_ns):>10}  {entry.source:<8}  {self._what(entry)}"

    def _what(self, entry: Entry) -> str:
        what = entry.what
        if entry.count > 1:
            run = f"events #{entry.first}-#{entry.first + entry.count - 1} written"
            if entry.last_ns - entry.t_ns >= 100_000:  # 0.1 ms
                run += f" (until {self.rel(entry.last_ns)})"
            what = f"{what} {run}"
        elif entry.key:
            what = f"{what} event #{entry.first} written"
        return what


def ledger_entries(ledger: Ledger) -> list[Entry]:
    """The socket facts of every model connection, one entry per fact (events unfolded)."""
    out: list[Entry] = []
    for conn in ledger.connections():
        tag = f"conn#{conn.id}"
        out.append(Entry(conn.opened_ns, PROVIDER, f"{tag} accepted"))
        for req in conn.requests:
            out.extend(_request_entries(tag, req))
        if conn.closed_ns is not None:
            out.append(Entry(conn.closed_ns, PROVIDER, describe_close(conn)))
    return out


def describe_request(req: RequestRecord) -> str:
    """`request #3 POST /v1/chat/completions (call 2, retry 1, main [ch-5f3a9c21])`."""
    extra = [f"call {req.call_id}"]
    if req.attempt:
        extra.append(f"retry {req.attempt}")
    if req.role is Role.MAIN:
        extra.append(f"main [{req.prompt}]" if req.prompt else "main")
    else:
        extra.append(req.role.value)
    return f"request #{req.ordinal} {req.method} {req.path} ({', '.join(extra)})"


def describe_close(conn: ConnectionRecord) -> str:
    by = conn.closed_by.value if conn.closed_by else "?"
    kind = f" ({conn.close_kind.value})" if conn.close_kind else ""
    return f"conn#{conn.id} closed by {by}{kind} after {conn.events_sent} events"


def _request_entries(tag: str, req: RequestRecord) -> list[Entry]:
    out = [Entry(req.started_ns, PROVIDER, f"{tag} {describe_request(req)}")]
    if req.response_started_ns is not None:
        plan = f" plan: {req.plan}" if req.plan and req.plan != "default" else ""
        out.append(Entry(req.response_started_ns, PROVIDER, f"{tag} -> {req.status}{plan}"))
    key = f"events:{req.ordinal}"
    out.extend(
        Entry(t, PROVIDER, tag, key=key, first=i + 1, last_ns=t) for i, t in enumerate(req.event_ns)
    )
    if req.finished_ns is not None and req.outcome is not None:
        what = f"{tag} response {req.outcome.value} after {req.events_sent} events"
        out.append(Entry(req.finished_ns, PROVIDER, what))
    return out


def _fold(entries: list[Entry]) -> list[Entry]:
    out: list[Entry] = []
    for entry in entries:
        prev = out[-1] if out else None
        if entry.key and prev is not None and prev.key == entry.key:
            out[-1] = Entry(
                prev.t_ns, prev.source, prev.what, prev.key, prev.count + 1, prev.first, entry.t_ns
            )
        else:
            out.append(entry)
    return out


def quote(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _entry(e: TranscriptEntry) -> str:
    turn = f" (turn {e.turn_id})" if e.turn_id else ""
    return f"{e.role} {quote(e.content, 30)}{turn}"


def describe_change(before: Transcript, after: Transcript) -> str:
    """What changed between two transcripts, in a line."""
    parts: list[str] = []
    n = 0
    while (
        n < min(len(before.entries), len(after.entries)) and before.entries[n] == after.entries[n]
    ):
        n += 1
    if n < len(before.entries):
        gone = before.entries[n:]
        parts.append(f"{len(gone)} entries changed or removed from #{n + 1}")
    new = after.entries[n:]
    if new:
        shown = ", ".join(_entry(e) for e in new[:4]) + (" ..." if len(new) > 4 else "")
        parts.append(f"{len(new)} new entries: {shown}")
    if before.usage != after.usage:
        parts.append(f"usage {before.usage} -> {after.usage}")
    if before.turn_ids != after.turn_ids:
        parts.append(f"turn ids {list(before.turn_ids)} -> {list(after.turn_ids)}")
    return "; ".join(parts) or "no change"
