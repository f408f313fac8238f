"""What every fault is: a small named object that parses, formats and compiles itself.

As with Toxiproxy's toxics, a fault owns its parameters and nothing else. It is a frozen
dataclass that knows the spec keys it answers to (`keys`, the first one names it), how to
build itself from their values (`from_spec`), how to write itself back (`tokens`), and
which actions it adds to a response's schedule (`compile`). The registry lists them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from fake_providers.faults import values
from fake_providers.faults.schedule import Layout
from fake_providers.faults.values import FaultSpecError


class Fault(ABC):
    """Base of every fault step. Subclasses are frozen, slotted dataclasses."""

    __slots__ = ()

    keys: ClassVar[tuple[str, ...]]
    """Spec keys this fault owns; the first one names it (`hang-after`, then `hang-for`)."""
    examples: ClassVar[Mapping[str, str]]
    """For each key, a spec using it: shown when the key is misused, round-trip tested."""
    flags: ClassVar[frozenset[str]] = frozenset()
    """Keys that may stand without a value (`hang-before-headers`)."""

    @classmethod
    @abstractmethod
    def from_spec(cls, values: Mapping[str, str | None]) -> Self:
        """Build from the values of this fault's keys present in a spec (at least one)."""

    @abstractmethod
    def tokens(self) -> tuple[str, ...]:
        """The spec tokens that build this fault again."""

    @abstractmethod
    def compile(self, layout: Layout) -> None:
        """Add this fault's actions to a response being laid out."""

    @classmethod
    def main(cls, values: Mapping[str, str | None]) -> str | None:
        """The value of the naming key; refuses the other keys alone, with an example."""
        if cls.keys[0] in values:
            return values[cls.keys[0]]
        other = next(k for k in cls.keys if k in values)
        raise FaultSpecError(
            f"{other} needs {cls.keys[0]}: write {cls.examples.get(other, cls.keys[0])}"
        )


@dataclass(frozen=True, slots=True)
class AfterEvents(Fault):
    """The common shape: one key, `KEY=N`, placing the fault after N events."""

    events: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Self:
        return cls(values.events(cls.main(spec) or "", key=cls.keys[0]))

    def tokens(self) -> tuple[str, ...]:
        return (f"{self.keys[0]}={self.events}",)
