"""Gates force ordering without sleeps: a stream waits at a gate until the scenario opens it.

A `Hold` step in a fault plan parks the stream at a position (before headers, or before
event N). The scenario awaits `wait_reached()`, does its thing (cancel, start a new
turn, ...), then `release()`s the gate. Gates are thread-safe so synchronous tests and
the control API (`POST /__harness/gates/NAME/release`) can open them too.
"""

from __future__ import annotations

import threading

from fake_providers.signals import ChangeSignal

MAX_GATES = 10_000


class Gate:
    """A one-way barrier: closed until released, then open for every stream that arrives."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._arrivals = 0
        self._released = False
        self._changed = ChangeSignal()

    def __repr__(self) -> str:
        state = "released" if self._released else f"held x{self._arrivals}"
        return f"Gate({self.name!r}, {state})"

    @property
    def arrivals(self) -> int:
        """How many streams have reached this gate so far."""
        return self._arrivals

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Open the gate: held streams go on, later ones pass straight through."""
        with self._lock:
            self._released = True
        self._changed.notify()

    async def wait_reached(self, count: int = 1, timeout: float | None = 10.0) -> None:
        """Wait until `count` streams are parked at (or have passed) this gate."""
        await self._changed.wait_until(
            lambda: self._arrivals >= count, timeout, f"{count} stream(s) at gate {self.name!r}"
        )

    async def pass_through(self) -> None:
        """Called by the server when a stream reaches the gate; returns once it is open."""
        with self._lock:
            self._arrivals += 1
        self._changed.notify()
        await self._changed.wait_until(lambda: self._released, None, f"gate {self.name!r}")


class GateRegistry:
    """Gates by name, so text specs (`hold-before=3,gate=main`) and the control API share them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, Gate] = {}

    def get(self, name: str) -> Gate:
        with self._lock:
            gate = self._gates.get(name)
            if gate is None:
                if len(self._gates) >= MAX_GATES:  # forget released gates: nobody waits there
                    self._gates = {n: g for n, g in self._gates.items() if not g.released}
                gate = self._gates[name] = Gate(name)
            return gate

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return {
                n: {"arrivals": g.arrivals, "released": g.released} for n, g in self._gates.items()
            }

    def clear(self) -> None:
        """Forget all gates, releasing any stream still held so nothing stays stuck."""
        with self._lock:
            gates, self._gates = list(self._gates.values()), {}
        for gate in gates:
            gate.release()
