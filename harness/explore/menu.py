"""What explore may draw for a target: its capabilities, narrowed by a catalogue selector.

A `Menu` lists the profiles and the kinds of steps the strategies draw from. The target's
capabilities decide what is possible (no follow-ups without `queue`, no second session
without `sessions`, ...). A SELECTOR narrows it the way `cancel-harness run` narrows the
catalogue: the selected scenarios' families and tags name the parts of the menu they are
about (`explore retry.*` draws errors and back-offs, `explore tag:queue` follow-ups), and
the basics (a prompt, a held stream, a cancel) are always on the menu.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from harness.explore.schedule import Profile
from harness.scenario import Registry, ScenarioSpec
from harness.target import Capability


@dataclass(frozen=True, slots=True)
class Menu:
    """What the strategies may draw."""

    profiles: tuple[Profile, ...] = (Profile.PLAIN,)
    followups: bool = False  # prompts while the session is busy (queue, hand-off)
    named: bool = False  # cancels naming a stream: the current, a queued or a stale one
    sessions: bool = False  # a second session's activity
    twice: bool = False  # a second cancel, sequential or concurrent
    idle: bool = False  # cancels with nothing running, and after the commit
    errors: bool = False  # HTTP errors with retry-after, FIN, RST, in-stream errors
    retries: bool = False  # the agent retries as configured (the error model is exact)
    tools: bool = False  # tool loops, slow tools, process trees
    pacing: bool = False  # paced and dripped streams
    leave: bool = False  # the caller stops reading instead of cancelling

    def describe(self) -> str:
        on = [f.name for f in fields(self) if f.name != "profiles" and getattr(self, f.name)]
        return f"profiles {', '.join(self.profiles)}; " + (", ".join(on) or "basics only")


# What each capability makes possible.
_PROFILE_NEEDS = {
    Profile.DEADLINE: Capability.TIMEOUT,
    Profile.STALE: Capability.STALE_TIMEOUT,
    Profile.MEMORY: Capability.BACKGROUND,
    Profile.COMPACTION: Capability.COMPACTION,
}
_ITEM_NEEDS = {
    "followups": Capability.QUEUE,
    "named": Capability.STREAM_IDS,
    "sessions": Capability.SESSIONS,
    "retries": Capability.RETRIES,
    "tools": Capability.TOOLS,
    "leave": Capability.LEAVE_EARLY,
}

# What a catalogue family or tag is about: menu items and profiles.
_WORDS: dict[str, tuple[str, ...]] = {
    "esc": ("twice", "idle", "pacing", "leave", "json", "compaction"),
    "streaming": ("pacing",),
    "repeat": ("twice",),
    "idle": ("idle",),
    "leave": ("leave",),
    "compaction": ("compaction",),
    "background": ("memory", "compaction", "idle"),
    "late-cancel": ("idle", "memory"),
    "timeout": ("deadline", "stale"),
    "ghost-turn": ("deadline",),
    "stale": ("stale",),
    "retry": ("errors", "retries", "json"),
    "backoff": ("errors", "retries"),
    "network": ("errors", "retries"),
    "non-streaming": ("json",),
    "accept": ("followups", "named", "idle"),
    "queue": ("followups",),
    "hand-off": ("followups",),
    "owner": ("named",),
    "stream-id": ("named",),
    "tools": ("tools",),
    "subprocess": ("tools",),
    "isolation": ("sessions",),
    "sessions": ("sessions",),
    "next-turn": ("idle",),
}


def full_menu(capabilities: Iterable[Capability]) -> Menu:
    """Everything the capabilities allow."""
    caps = frozenset(capabilities)
    profiles = [Profile.PLAIN, Profile.JSON]
    profiles += [p for p, need in _PROFILE_NEEDS.items() if need in caps]
    items = {f.name: True for f in fields(Menu) if f.name != "profiles"}
    for item, need in _ITEM_NEEDS.items():
        items[item] = need in caps
    return Menu(profiles=tuple(profiles), **items)


def menu_for(
    capabilities: Iterable[Capability],
    selectors: Sequence[str] = (),
    registry: Registry | None = None,
) -> Menu:
    """The menu for a target, narrowed to the selected scenarios' families and tags.

    Raises `UnknownSelectorError` (from the registry) for a selector matching nothing.
    """
    full = full_menu(capabilities)
    if not selectors or registry is None:
        return full
    words = _words(registry.select(selectors))
    profiles = [Profile.PLAIN] + [p for p in full.profiles if p is not Profile.PLAIN and p in words]

    def keep(item: str) -> bool:
        return bool(getattr(full, item)) and item in words

    return Menu(
        profiles=tuple(profiles),
        followups=keep("followups"),
        named=keep("named"),
        sessions=keep("sessions"),
        twice=keep("twice"),
        idle=keep("idle"),
        errors=keep("errors"),
        retries=full.retries,  # how the agent retries is a fact, not a choice
        tools=keep("tools"),
        pacing=keep("pacing"),
        leave=keep("leave"),
    )


def _words(specs: Iterable[ScenarioSpec]) -> set[str]:
    words: set[str] = set()
    for spec in specs:
        for word in (spec.id.split(".")[0], *spec.tags):
            words.update(_WORDS.get(word, ()))
    return words
