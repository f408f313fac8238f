"""`cancel-harness serve`: a standalone fake provider for a person to point an agent at.

Prints the base URL per provider kind (and the CA with --tls), then one live line per
connection event, so you can watch your agent's cancel reach (or not reach) the socket.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from fake_providers import FakeProvider
from fake_providers.kinds import ProviderKind
from fake_providers.ledger import LedgerEvent, now_ns
from fake_providers.limits import Limits
from fake_providers.tls import TLSMaterial


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


def live_log_to_stdout(start_ns: int) -> LiveLog:
    """A `LiveLog` on this process's stdout (a picklable factory for worker processes)."""
    return LiveLog(sys.stdout, start_ns)


def print_banner(
    out: TextIO,
    *,
    origin: str,
    urls: dict[ProviderKind, str],
    providers: Sequence[ProviderKind],
    rules: Sequence[str],
    tls: TLSMaterial | None = None,
    ledger_log: Path | None = None,
    workers: int = 1,
) -> None:
    """The lines a person needs: base URLs, the CA to trust, the ledger, the faults."""
    print(f"cancel-harness fake provider listening on {origin}", file=out)
    for kind in providers or list(ProviderKind):
        print(f"  {kind:<17} {kind.base_url_env}={urls[kind]}", file=out)
    if tls is not None:
        env = " ".join(f"{k}={v}" for k, v in tls.env().items())
        print(f"  CA file           {tls.ca_path}", file=out)
        print(f"  trust it with     export {env}", file=out)
    print(f"  ledger            {origin}/__harness/ledger", file=out)
    if ledger_log is not None:
        print(f"  ledger log        {ledger_log} (one JSON line per connection)", file=out)
    print(f"  faults            {'; '.join(rules) if rules else 'none: answers at once'}", file=out)
    if workers > 1:
        print(
            f"  workers           {workers} processes on one port (SO_REUSEPORT); the control "
            "API answers for all of them",
            file=out,
        )
    print("Press Ctrl+C to stop.", file=out, flush=True)


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
        rules = [r.spec() or "(no faults)" for _, r, _ in provider.resolver.rules()]
        print_banner(
            out,
            origin=provider.origin,
            urls=provider.base_urls,
            providers=providers,
            rules=rules,
            tls=provider.tls,
            ledger_log=ledger_log,
        )
        if ready is not None:
            ready.set()
        await anyio.sleep_forever()


def serve_workers(
    workers: int,
    *,
    host: str,
    port: int,
    faults: list[str],
    providers: Sequence[ProviderKind],
    limits: Limits | None = None,
    ledger_log: Path | None = None,
    uvloop: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """`serve --workers N`: N processes on one port, one provider to the user (see
    `fake_providers.workers`). Blocks until Ctrl+C (0) or a worker dies (1)."""
    from fake_providers.faults import parse_rule
    from fake_providers.workers import ProviderPool, WorkerConfig

    config = WorkerConfig(
        host=host,
        port=port,
        faults=tuple(faults),
        limits=limits,
        ledger_log=ledger_log,
        uvloop=uvloop,
        observer=functools.partial(live_log_to_stdout, now_ns()),
    )
    with ProviderPool(workers, config) as pool:
        shape = FakeProvider(host=host, port=pool.port)  # for the URLs; never started
        shape.port = pool.port
        print_banner(
            out,
            origin=shape.origin,
            urls=shape.base_urls,
            providers=providers,
            rules=[parse_rule(f).spec() or "(no faults)" for f in faults],
            ledger_log=ledger_log,
            workers=workers,
        )
        try:
            code = pool.wait()
        except KeyboardInterrupt:
            return 0
        print(f"cancel-harness serve: a worker exited ({code}); stopping", file=sys.stderr)
        return 1
