"""`cancel-harness serve`: a standalone fake provider for a person to point an agent at.

Prints the base URL per provider kind (and the CA with --tls), then one live line per
connection event, so you can watch your agent's cancel reach (or not reach) the socket.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from fake_providers import FakeProvider
from fake_providers.kinds import ProviderKind
from fake_providers.ledger import LedgerEvent, now_ns
from fake_providers.limits import Limits


class LiveLog:
    """Formats ledger changes as one line each, stamped relative to the server start."""

    def __init__(self, out: TextIO, start_ns: int) -> None:
        self.out = out
        self.start_ns = start_ns

    def __call__(self, event: LedgerEvent) -> None:
        conn, req = event.connection, event.request
        if not conn.model_traffic:
            return
        stamp = f"{(now_ns() - self.start_ns) / 1e9:9.3f}s"
        head = f"{stamp}  conn#{conn.id}"
        match event.what:
            case "accepted":
                line = f"{head} accepted from {conn.peer}"
            case "request" if req is not None:
                stream = "stream" if req.stream else "no-stream" if req.stream is False else ""
                model = f" model={req.model}" if req.model else ""
                line = f"{head} {req.method} {req.path}{model} {stream} (request #{req.ordinal})"
            case "response" if req is not None:
                line = f"{head} -> {req.status} plan: {req.plan or 'default'}"
            case "held" | "finished" if req is not None and event.detail:
                line = f"{head} {event.detail}"
            case "finished" if req is not None and req.outcome is not None:
                line = f"{head} response {req.outcome.value} after {req.events_sent} events"
            case "closed":
                since = ""
                if conn.last_event_ns is not None and conn.closed_ns is not None:
                    since = f", {(conn.closed_ns - conn.last_event_ns) / 1e6:.1f} ms after the last"
                kind = conn.close_kind.value if conn.close_kind else "?"
                by = conn.closed_by.value if conn.closed_by else "?"
                line = f"{head} closed by {by} ({kind}) after {conn.events_sent} events{since}"
            case _:
                return
        print(line, file=self.out, flush=True)


async def serve(
    *,
    host: str,
    port: int,
    tls: bool,
    faults: list[str],
    providers: Sequence[ProviderKind],
    tls_dir: Path | None,
    out: TextIO = sys.stdout,
    ready: anyio.Event | None = None,
    limits: Limits | None = None,
    ledger_log: Path | None = None,
) -> None:
    """Run until cancelled (Ctrl+C). Raises FaultSpecError/ProviderStartError on bad input."""
    provider = FakeProvider(
        host=host,
        port=port,
        tls=tls,
        faults=tuple(faults),
        tls_dir=tls_dir,
        limits=limits,
        ledger_log=ledger_log,
    )
    async with provider:
        provider.ledger.subscribe(LiveLog(out, now_ns()))
        print(f"cancel-harness fake provider listening on {provider.origin}", file=out)
        for kind in providers or list(ProviderKind):
            print(f"  {kind:<17} {kind.base_url_env}={provider.url(kind)}", file=out)
        if provider.tls is not None:
            env = " ".join(f"{k}={v}" for k, v in provider.tls.env().items())
            print(f"  CA file           {provider.tls.ca_path}", file=out)
            print(f"  trust it with     export {env}", file=out)
        print(f"  ledger            {provider.origin}/__harness/ledger", file=out)
        if ledger_log is not None:
            print(f"  ledger log        {ledger_log} (one JSON line per connection)", file=out)
        rules = [r.spec() or "(no faults)" for _, r, _ in provider.resolver.rules()]
        print(
            f"  faults            {'; '.join(rules) if rules else 'none: answers at once'}",
            file=out,
        )
        print("Press Ctrl+C to stop.", file=out, flush=True)
        if ready is not None:
            ready.set()
        await anyio.sleep_forever()
