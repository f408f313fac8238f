"""The pacer's tick: a pacer that fell behind catches up in bounded slices.

Driven by hand on a real asyncio loop with stand-in transports and runs (the tick only needs
`write`/`is_closing` and `step`/`more`/`next_due`), so nothing here depends on timing: the
streams are all due in the past, and the test calls the tick itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fake_providers.ledger import Ledger
from fake_providers.writer import TICK_BUDGET, Pacer, _Playing


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


def request(ledger: Ledger, conn: Any) -> Any:
    return ledger.start_request(
        conn, method="POST", path="/", query="", headers=[], body=b"", started_ns=0
    )


class Run:
    """`events` events, all due at time 0 (long past on the loop's clock)."""

    def __init__(self, events: int) -> None:
        self.left = events
        self.more = True
        self.next_due = 0.0

    def step(self) -> tuple[bytes, int]:
        self.left -= 1
        self.more = self.left > 0
        return b"e", 1


def test_a_tick_writes_at_most_its_budget_then_lets_the_loop_poll() -> None:
    async def scenario() -> tuple[list[int], bool, int, list[int]]:
        loop = asyncio.get_running_loop()
        ledger = Ledger()
        pacer = Pacer(ledger)
        pacer._loop = loop
        streams = TICK_BUDGET + TICK_BUDGET // 2
        transports = [Transport() for _ in range(streams)]
        playing = [
            _Playing(Run(2), t, request(ledger, conn), loop.create_future())  # type: ignore[arg-type]
            for t, conn in ((t, ledger.open_connection("p", tls=False)) for t in transports)
        ]
        for p in playing:
            pacer._file(p)
        pacer._tick()
        first = [len(t.writes) for t in transports]
        armed = pacer._timer is not None
        for _ in range(10):  # bounded: three ticks finish 2 events on 1.5 budgets of streams
            if all(p.done.done() for p in playing):
                break
            pacer._tick()
        recorded = sum(len(r.event_ns) for r in ledger.requests())
        return first, armed, recorded, [len(t.writes) for t in transports]

    first, armed, recorded, final = asyncio.run(scenario())
    assert sum(first) == TICK_BUDGET  # the first tick stopped at its budget
    assert armed  # and left a timer for the rest, behind the loop's next I/O poll
    assert final == [2] * len(final)  # every stream got both its events, none twice
    assert recorded == 2 * len(final)


def test_every_stream_keeps_its_place_when_a_slot_is_split() -> None:
    # Streams filed first into a slot are written first: the split keeps the rest in order.
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        ledger = Ledger()
        pacer = Pacer(ledger)
        pacer._loop = loop
        order: list[int] = []

        class Tagged(Transport):
            def __init__(self, tag: int) -> None:
                super().__init__()
                self.tag = tag

            def write(self, data: bytes) -> None:
                order.append(self.tag)

        conn = ledger.open_connection("p", tls=False)
        for tag in range(TICK_BUDGET + 10):
            req = request(ledger, conn)
            pacer._file(_Playing(Run(1), Tagged(tag), req, loop.create_future()))  # type: ignore[arg-type]
        pacer._tick()
        pacer._tick()
        return order

    assert asyncio.run(scenario()) == list(range(TICK_BUDGET + 10))
