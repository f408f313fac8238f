"""Which request is a turn's own model call: main, side or probe, from what the harness sees.

An agent under test owes us nothing: no header, no naming convention. The harness knows
the prompts it sent (each carries a short tag such as `ch-5f3a9c21`) and the provider sees
each request's conversation (`conversation.Shape`). From those alone:

- **probe**: not a model call at all (model listing, token counting, unknown paths).
- **main**: a model call whose conversation ends with the user's words or a tool result,
  whose latest user message carries a prompt the harness sent (any prompt, when none were
  registered), and that does not ask for structured output. A tool loop's later calls are
  main calls of the same prompt.
- **side**: every other model call: titles, summaries, memory extraction and compaction over
  the history (they end with the assistant's answer), classifiers and "next speaker" checks
  (structured output), calls that do not carry the turn's prompt as their latest message.

`x-agent-purpose` is an optional hint an agent may send to help: a value other than
`turn`/`main` marks a call as side traffic. It can only demote a call, never promote one,
so an agent gains nothing by omitting it and loses nothing by sending it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum

from fake_providers.conversation import Shape

HINT_HEADER = "x-agent-purpose"
MAIN_HINTS = frozenset({"turn", "main"})


class Role(StrEnum):
    MAIN = "main"
    SIDE = "side"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class MainCallProfile:
    """What an agent's turn calls look like, learned from one plain turn (calibration).

    Some side calls look like a turn's: a title generated from the prompt ends with the
    prompt as its user message. Where a plain turn showed such calls, they differed from
    the turn call in the tools offered or the model; the profile keeps the turn call's.
    """

    tools: int  # tools the agent's turn calls offer
    models: frozenset[str]  # models its turn calls use

    def describe(self) -> str:
        return f"{self.tools} tool(s), model {'/'.join(sorted(self.models))}"


@dataclass(frozen=True, slots=True)
class Classification:
    """A request's role, the prompt tag its latest user message carries, and why."""

    role: Role
    prompt: str | None = None
    reason: str = ""


def classify(
    shape: Shape | None,
    tags: Collection[str],
    hint: str | None = None,
    *,
    model: str = "",
    profile: MainCallProfile | None = None,
) -> Classification:
    """The role of a request with this conversation shape (None: not a model call).

    With a calibrated `profile`, a call that would pass for a turn's but offers none of the
    agent's tools, or uses another model, is side traffic.
    """
    if shape is None:
        return Classification(Role.PROBE, None, "not a model call")
    # A cancelled turn can leave its prompt unanswered in the history, so the latest run of
    # user text may hold two prompts: the call is for the one said last.
    said = shape.latest_user_text
    prompt = max((t for t in tags if t in said), key=said.rfind, default=None)
    if shape.last_role not in ("user", "tool"):
        said = shape.last_role or "nothing"
        return Classification(
            Role.SIDE, prompt, f"the conversation ends with {said}, not the user's turn"
        )
    if shape.structured:
        return Classification(Role.SIDE, prompt, "it asks for structured output")
    if tags and prompt is None:
        return Classification(
            Role.SIDE, None, "its latest user message carries no prompt the harness sent"
        )
    if hint is not None and hint.strip().lower() not in MAIN_HINTS:
        return Classification(Role.SIDE, prompt, f"the agent marked it {HINT_HEADER}: {hint}")
    if profile is not None and profile.tools > 0 and shape.tools == 0:
        return Classification(
            Role.SIDE,
            prompt,
            f"it offers no tools, while the agent's turn calls offer {profile.tools} (calibrated)",
        )
    if profile is not None and model and model not in profile.models:
        return Classification(
            Role.SIDE,
            prompt,
            f"it uses model {model}, while the agent's turn calls use "
            f"{'/'.join(sorted(profile.models))} (calibrated)",
        )
    return Classification(Role.MAIN, prompt, "the turn's own model call")


class PromptTags:
    """The tags of the prompts the harness sent to this provider's agent. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tags: dict[str, None] = {}

    def add(self, tag: str) -> None:
        if not tag or any(ch.isspace() for ch in tag):
            raise ValueError(f"a prompt tag is one word without spaces; got {tag!r}")
        with self._lock:
            self._tags[tag] = None

    def clear(self) -> None:
        with self._lock:
            self._tags.clear()

    def snapshot(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._tags)

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._tags)
