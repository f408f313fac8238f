"""The known-bad switches: each brings back exactly one incident from INCIDENTS.md.

This is the one place that names them. The agent never asks which are on: it is built
with a `Policy` (policy.py), the correct one by default, and each defect is one `Policy`
subclass in defective.py overriding the seam where its bug lives. Default: no defect.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

ENV_VAR = "REFERENCE_AGENT_DEFECTS"


class Defect(StrEnum):
    """A bug the reference agent can be told to have. Values are the public switch names."""

    # I1: the cancel never reaches the provider's streaming task; it reads to the end.
    PROVIDER_IGNORES_CANCEL = "provider-ignores-cancel"
    # I1 variant: the stream task only looks at the cancel when the next chunk arrives.
    CANCEL_CHECKED_ON_NEXT_CHUNK = "cancel-checked-on-next-chunk"
    # I1, the opposite mistake: background memory extraction dies with the user's Esc.
    BACKGROUND_TIED_TO_USER_CANCEL = "background-tied-to-user-cancel"
    # I2: the timeout bounds the caller's wait but the worker runs on and commits.
    COMMIT_AFTER_TIMEOUT = "commit-after-timeout"
    # I5: our own forced close is classified as a network error and retried.
    RETRY_AFTER_FORCED_CLOSE = "retry-after-forced-close"
    # I5: the interrupt flag is per turn, so a stale worker misses its own close.
    TURN_SCOPED_INTERRUPT_FLAG = "turn-scoped-interrupt-flag"
    # Related: cancel during tool execution leaves the tool's subprocess running.
    TOOL_SURVIVES_CANCEL = "tool-survives-cancel"
    # Related: cancel during a retry back-off; the sleep ends and a request goes out anyway.
    BACKOFF_IGNORES_CANCEL = "backoff-ignores-cancel"
    # Related: a provider that goes silent with no cancel; the agent waits forever.
    STALE_TIMEOUT_IGNORED = "stale-timeout-ignored"
    # I5, the over-correction: every dropped stream is taken for our own close, so genuine
    # network errors are no longer retried.
    DROP_TREATED_AS_CANCEL = "drop-treated-as-cancel"
    # Related: one global cancel token; Esc in one session stops every session's turn.
    CANCEL_ALL_SESSIONS = "cancel-all-sessions"
    # I3: cancel only looks at active runs; an accepted run that has not started is missed.
    LOSE_CANCEL_BEFORE_START = "lose-cancel-before-start"
    # I3: a cancel with nothing running is remembered and kills the next prompt.
    IDLE_CANCEL_POISONS_NEXT = "idle-cancel-poisons-next"
    # I3: the cancel stops the active run but a queued follow-up still runs.
    QUEUED_FOLLOWUP_SURVIVES_CANCEL = "queued-followup-survives-cancel"
    # I3: the queue is handed to a worker when a run ends; a cancel in that gap finds the
    # session idle and the next queued prompt runs anyway.
    HANDOFF_WINDOW = "handoff-window"
    # I4: a cancel naming a stale stream stops whatever runs now (the next turn).
    CANCEL_NOT_OWNER_SCOPED = "cancel-not-owner-scoped"
    # I4: a cancelled stream never gets its terminal event and is left open.
    NO_TERMINAL_CANCEL_EVENT = "no-terminal-cancel-event"
    # I1, the SDK form: a caller that stops reading leaves the stream draining to its end.
    DRAIN_ON_LEAVE = "drain-on-leave"
    # ACP: a content update for the turn arrives after the prompt was answered.
    ACP_UPDATE_AFTER_RESPONSE = "acp-update-after-response"
    # ACP: a cancelled prompt is answered with a stop reason other than "cancelled".
    ACP_WRONG_STOP_REASON = "acp-wrong-stop-reason"


class UnknownDefectError(ValueError):
    """A defect name we do not know; the message lists the valid ones."""


def parse_defect(name: str) -> Defect:
    try:
        return Defect(name.strip())
    except ValueError:
        valid = [d.value for d in Defect]
        close = difflib.get_close_matches(name.strip(), valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownDefectError(
            f"unknown defect '{name.strip()}'{hint}; valid: {', '.join(valid)}"
        ) from None


@dataclass(frozen=True, slots=True)
class Defects:
    """The set of active defects. Empty means the correct agent."""

    active: frozenset[Defect] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str | Defect] = ()) -> Defects:
        return cls(frozenset(parse_defect(n) if isinstance(n, str) else n for n in names))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Defects:
        raw = (environ if environ is not None else dict(os.environ)).get(ENV_VAR, "")
        return cls.of(n for n in raw.split(",") if n.strip())

    def on(self, defect: Defect) -> bool:
        return defect in self.active

    def __bool__(self) -> bool:
        return bool(self.active)

    def names(self) -> list[str]:
        return sorted(d.value for d in self.active)
