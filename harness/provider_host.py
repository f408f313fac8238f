"""The fake provider of one case, on its own thread and event loop.

An in-process agent shares the runner's loop; if the provider shared it too, a loop busy
with the agent (or another case) would delay the provider's clock: paced events would go
out late and a client's FIN would be stamped late. On its own loop the provider keeps
socket truth. Its loop has a heartbeat like the runner's, so its stalls are measured too.
Everything the scenario touches (ledger, gates, rules) is thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

import anyio

from fake_providers import FakeProvider
from fake_providers.roles import MainCallProfile
from harness.seeds import SeededResolver
from harness.timing import StallLog, heartbeat

START_LIMIT = 30.0  # s for the provider's thread to come up (binding, TLS material)


class ProviderThread:
    """`async with ProviderThread(seed=...) as provider:` a started, seeded FakeProvider."""

    def __init__(
        self, *, seed: int, tls: bool = False, profile: MainCallProfile | None = None
    ) -> None:
        self.seed, self.tls, self.profile = seed, tls, profile
        self.stalls = StallLog("the provider thread")
        self.provider: FakeProvider | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._run, name="cancel-harness-provider")
        self._thread.daemon = True
        self._thread.start()
        await anyio.to_thread.run_sync(self._ready.wait, START_LIMIT)
        if self._error is not None:
            raise self._error
        if self.provider is None:
            raise RuntimeError(f"the fake provider's thread did not start in {START_LIMIT:g} s")
        return self.provider

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join, START_LIMIT)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the runner's thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        provider = FakeProvider(tls=self.tls)
        provider.resolver = SeededResolver(self.seed, provider.resolver.default)
        provider.resolver.profile = self.profile  # the agent's calibrated turn calls
        async with provider, anyio.create_task_group() as tg:
            tg.start_soon(heartbeat, self.stalls)
            self.provider = provider
            self._ready.set()
            await self._stop.wait()
            tg.cancel_scope.cancel()
