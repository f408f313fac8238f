"""Prompts the harness sends, each carrying a short tag so its model calls can be found.

The harness cannot ask an agent to label its requests, but it writes the prompts. Every
prompt of a case ends with a tag such as `[ch-5f3a9c21]`: lowercase hex, no characters a
JSON or shell encoder would escape, drawn from the case's seeded RNG so a replay sends the
same text. The fake provider finds the tag in a request's latest user message and calls that
request the prompt's main call (fake_providers.roles); the tag in a process environment
marks the processes the case's tools started (harness.processes).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TAG_PATTERN = re.compile(r"ch-[0-9a-f]{8}")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt as the user typed it (`said`) and as sent (`text`, with its tag)."""

    said: str
    tag: str

    @property
    def text(self) -> str:
        return f"{self.said} [{self.tag}]"

    def __str__(self) -> str:
        return self.text


def new_tag(rng: random.Random) -> str:
    """A fresh tag from the case's RNG (`ch-` and 8 hex digits)."""
    return f"ch-{rng.getrandbits(32):08x}"
