"""Job slots: how many cases of a run go at once, and how a re-run gets the machine to itself.

A case whose verdict was indeterminate is re-run alone: it gives back its own slot, then
gathers every slot (one re-run at a time, so two gathering re-runs cannot deadlock), since the
harness's own concurrency is part of the load that made the verdict indeterminate.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio


class Slot:
    """One case's hold on a job slot; given back at most once."""

    def __init__(self, slots: JobSlots) -> None:
        self.slots, self.held = slots, True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.slots.limiter.release_on_behalf_of(self)


class JobSlots:
    """`config.jobs` job slots; `alone` takes them all for a re-run."""

    def __init__(self, jobs: int) -> None:
        self.limiter = anyio.CapacityLimiter(jobs)
        self.gathering = anyio.Lock()  # one re-run gathers slots at a time: no deadlock

    async def take(self) -> Slot:
        slot = Slot(self)
        await self.limiter.acquire_on_behalf_of(slot)
        return slot


@contextlib.asynccontextmanager
async def alone(slots: JobSlots | None, held: Slot | None) -> AsyncIterator[None]:
    """Hold every job slot (giving back the case's own first), so nothing runs beside it."""
    if slots is None or slots.limiter.total_tokens <= 1:
        yield
        return
    if held is not None:
        held.give_back()
    async with slots.gathering:
        taken = [await slots.take() for _ in range(int(slots.limiter.total_tokens))]
        try:
            yield
        finally:
            for slot in taken:
                slot.give_back()
