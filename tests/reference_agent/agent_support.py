"""Shared test support: awaitable agent events and ledger lookups (never sleep to wait)."""

from __future__ import annotations

import anyio

from fake_providers import FakeProvider
from fake_providers.ledger import ConnectionRecord, Ledger, RequestRecord
from reference_agent.model import AgentEvent

WAIT = 5.0  # bound on every wait for an agent event


class Watch:
    """Collects an agent's events (pass it as `on_event`) and lets a test await one."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []
        self._changed = anyio.Event()

    def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def kinds(self, kind: str) -> list[AgentEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(self, kind: str, timeout: float = WAIT) -> AgentEvent:
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed
                if found := self.kinds(kind):
                    return found[0]
                await changed.wait()


def request_with(provider: FakeProvider, *, purpose: str = "", body: str = "") -> RequestRecord:
    """The first request with that purpose header and body substring."""
    for r in provider.ledger.requests():
        if purpose in ("", r.header("x-agent-purpose")) and body.encode() in r.body:
            return r
    raise AssertionError(f"no request with purpose={purpose!r} body~{body!r}")


def connection_of(provider: FakeProvider, request: RequestRecord) -> ConnectionRecord:
    return provider.ledger.connection(request.connection_id)


async def closed_by_client(
    provider: FakeProvider, request: RequestRecord, after_ns: int, within_s: float
) -> ConnectionRecord:
    """Wait until the client closed that request's connection within `within_s` of T."""

    def closed(ledger: Ledger) -> ConnectionRecord | None:
        return ledger.closed_by_client_within(
            after_ns, within_s, connection_id=request.connection_id
        )

    return await provider.ledger.wait_for(closed, 2.0, "the client to close the connection")
