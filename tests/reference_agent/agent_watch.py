"""The agent's events, awaitable: tests wait for what the agent did, never sleep."""

from __future__ import annotations

import anyio

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
