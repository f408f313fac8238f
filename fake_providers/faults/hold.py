"""`hold-before=3[,gate=NAME]`: park the stream at a gate until a scenario releases it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.fault import Fault
from fake_providers.faults.schedule import Layout, WaitAtGate
from fake_providers.faults.values import FaultSpecError

MAX_GATE_NAME = 100


@dataclass(frozen=True, slots=True)
class Hold(Fault):
    """Hold the stream before event `before` (0: before headers) until the gate is released."""

    before: int
    gate_name: str = "default"

    keys: ClassVar = ("hold-before", "gate")
    examples: ClassVar = {
        "hold-before": "hold-before=3 (or hold-before=headers)",
        "gate": "hold-before=3,gate=main",
    }

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        if "hold-before" not in spec:
            raise FaultSpecError("gate names a hold: write hold-before=3,gate=NAME")
        where = spec["hold-before"] or ""
        before = 0 if where == "headers" else values.events(where, key="hold-before")
        gate = spec.get("gate") or "default"
        if len(gate) > MAX_GATE_NAME or "/" in gate:
            raise FaultSpecError(
                f"gate={gate[:20]}...: a gate name has at most {MAX_GATE_NAME} characters "
                "and no '/', such as gate=main"
            )
        return cls(before, gate)

    def tokens(self) -> tuple[str, ...]:
        where = "headers" if self.before == 0 else str(self.before)
        if self.gate_name == "default":
            return (f"hold-before={where}",)
        return (f"hold-before={where}", f"gate={self.gate_name}")

    def compile(self, layout: Layout) -> None:
        if self.before == 0:
            layout.before_headers.append(WaitAtGate(self.gate_name))
        else:
            layout.after(self.before - 1, WaitAtGate(self.gate_name))
