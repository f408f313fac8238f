"""Why a case did not pass, in a line an agent's maintainer (or ours) can act on.

`diagnose` reads a case's message and timeline, as `cancel-harness run --json` writes them,
and names the cause and the side it lies on: the agent (a cancellation bug to report) or the
harness (a scenario premise, a wait that load or start-up outran, a classification mistake;
the sentence says which harness change would mend it). A few causes are found on the
timeline rather than in the message: a later prompt's model call taken for an earlier
prompt's, or an agent still starting when the case's time ran out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    AGENT = "agent"  # the agent under test did not honour the contract
    HARNESS = "harness"  # the verdict says more about the harness than the agent


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A short cause key, the side it lies on, and a sentence for whoever must act."""

    cause: str
    text: str
    side: Side

    @property
    def harness_side(self) -> bool:
        return self.side is Side.HARNESS


_AT = r"\s+\+(?P<ms>\d+(?:\.\d+)?)ms\s+"
_SUBMIT = re.compile(_AT + r"harness\s+submit .*?\[(?P<tag>ch-[0-9a-f]{8})\]")
_MAIN = re.compile(
    _AT + r"provider\s+conn#\d+ request #\d+ .*\(call [^)]*main \[(?P<tag>ch-[0-9a-f]{8})\]\)"
)
_STARTED = re.compile(_AT + r"harness\s+target \S+ started against")
_BUDGET = re.compile(r"did not finish within (?P<s>[\d.]+) s")


def misattributed(timeline: str) -> list[str]:
    """Main calls taken for an earlier prompt's, though a later prompt had been submitted.

    An agent may keep a cancelled prompt, unanswered, in its history (openai-agents'
    SQLiteSession, Claude Code): the next request then ends with two user messages in a row,
    the old prompt and the new one, and the provider credits the call to the first tag it
    finds. Returns the request lines so credited: main calls of an older prompt sent while a
    newer prompt, which never got a main call of its own, was the latest. (A stale worker's
    retry also carries an older tag, but then the newer prompt has its own main call.)
    """
    submits = [(float(m["ms"]), m["tag"]) for m in _SUBMIT.finditer(timeline)]
    order = {tag: i for i, (_, tag) in enumerate(submits)}
    mains = [(float(m["ms"]), m["tag"], m.group(0).strip()) for m in _MAIN.finditer(timeline)]
    credited = {tag for _, tag, _ in mains}
    found = []
    for at, tag, line in mains:
        latest = [t for ms, t in submits if ms <= at]
        newer = latest[-1] if latest else None
        if newer and tag in order and order[tag] < order[newer] and newer not in credited:
            found.append(line)
    return found


_CANCEL = re.compile(_AT + r"harness\s+(cancel \S+$|leave turn)", re.M)
_BURST = re.compile(_AT + r"provider\s+conn#\d+ events #(?P<a>\d+)-#(?P<b>\d+) written$", re.M)
_PACED = re.compile(r"pace=\d+ms")


def stalled_after_cancel(timeline: str) -> bool:
    """The provider wrote several paced events at one instant after the cancel: its event
    loop (shared with the harness, and with an in-process agent) stalled, and the events due
    meanwhile went out in a burst. A late close measured across such a stall says nothing
    about the agent."""
    cancel = _CANCEL.search(timeline)
    if cancel is None or not _PACED.search(timeline):
        return False
    after = float(cancel["ms"])
    return any(
        float(m["ms"]) > after and int(m["b"]) > int(m["a"]) for m in _BURST.finditer(timeline)
    )


def started_at(timeline: str) -> float | None:
    """When the agent was up (ms after the case began), or None if it never was."""
    m = _STARTED.search(timeline)
    return float(m["ms"]) if m else None


MISATTRIBUTED = Diagnosis(
    "prompt-misattributed",
    "the agent kept the cancelled prompt, unanswered, in its history, so its next call ends "
    "with two user messages in a row (the old prompt, then the new one) and the fake provider "
    "credited that call to the older prompt's tag: the rule for the new prompt never matched "
    "and the checks watched the wrong call (harness: fake_providers/roles.py `classify` must "
    "credit the tag that comes last in the latest user text, not the first one it finds)",
    Side.HARNESS,
)
START_UP = Diagnosis(
    "start-up-in-budget",
    "the agent's start-up and session set-up used most of the case's time limit, which counts "
    "them (harness: start the agent outside the case budget, or `run --timeout`)",
    Side.HARNESS,
)
LOAD_DEADLINE = Diagnosis(
    "deadline-under-load",
    "the scenario's own deadline (a few tempo) ran out before the agent's first model call "
    "reached the provider: on this loaded machine the library needs longer to start a run "
    "(harness: an indeterminate verdict that is re-run, or a deadline measured from the "
    "model call)",
    Side.HARNESS,
)
NO_MIDSTREAM_RETRY = Diagnosis(
    "no-mid-stream-retry",
    "the SDK retries a failure before the response starts (connect errors, 429, 5xx) as "
    "configured, but never a stream that dropped after its first events: the library has "
    "no stream resumption, which is no cancellation bug (harness: judge genuine-drop retries "
    "on a non-streaming request, or under a capability of their own)",
    Side.HARNESS,
)
SILENT_NO_CLOSE = Diagnosis(
    "no-close-on-cancel",
    "the provider went silent and the agent, told to cancel, kept the connection open: the "
    "cancel does not reach the streaming request itself, which notices it (if at all) only "
    "when the next chunk arrives; a model that is thinking, or a stalled network, keeps it "
    "open (incident I1, cancel-checked-on-next-chunk)",
    Side.AGENT,
)
STALL = Diagnosis(
    "loop-stall",
    "the close came late, but across a stall of the harness's own event loop: paced events "
    "due after the cancel went out in one burst, and the agent closed right after them "
    "(harness: an indeterminate verdict, re-run, when the loop's heartbeat shows a stall)",
    Side.HARNESS,
)
DRAIN_ON_LEAVE = Diagnosis(
    "drain-on-leave",
    "the caller broke out of the stream iterator (no cancel), and the library went on reading "
    "the model's stream in the background, keeping the provider connection open for as long "
    "as the model writes: a caller that leaves must make the request close (I1, 'breaking "
    "out of an SDK stream iterator')",
    Side.AGENT,
)
ACP_REPLAY_MERGE = Diagnosis(
    "acp-replay-merge",
    "the agent kept the cancelled prompt, unanswered, and the next prompt follows it; ACP "
    "session/load replays message chunks without message boundaries, so the harness read both "
    "prompts as one user entry and saw that entry 'changed' (harness: AcpTarget.transcript "
    "should split replayed user text at the prompts it sent, each ending with its tag)",
    Side.HARNESS,
)
FRESH_LOAD = Diagnosis(
    "acp-load-before-first-prompt",
    "the harness read the transcript with ACP session/load on a session that had no prompt "
    "yet, which the agent refuses: it persists a session only once it has a turn (harness: "
    "AcpTarget.transcript is empty for a session no prompt was sent to)",
    Side.HARNESS,
)

# (cause, pattern on the message, side, sentence); the first match wins.
_RULES: tuple[tuple[str, str, Side, str], ...] = (
    (
        "start-failed",
        r"the target did not start|ACP initialize failed",
        Side.AGENT,
        "the agent did not come up (see the message for its stderr tail): check its install, "
        "config home and that it needs no network or login to start",
    ),
    (
        "acp-request-refused",
        r"RequestError: ",
        Side.AGENT,
        "the agent answered an ACP request of the harness with an error",
    ),
    (
        "no-model-call",
        r"gave up waiting: .*the provider saw no request",
        Side.AGENT,
        "the agent sent no model request for the prompt within the step's wait (100 tempo, "
        "at least 2 s)",
    ),
    (
        "main-call-not-held",
        r"gave up waiting: .* at gate",
        Side.AGENT,
        "the prompt's main call never reached the gate the scenario held it at; the requests "
        "the provider saw are in the message",
    ),
    (
        "ended-before-staged",
        r"the agent failed before the cancel was staged",
        Side.AGENT,
        "the agent ended the turn on its own before the scenario could stage the cancel",
    ),
    (
        "no-close-on-cancel",
        r"expected the client to close the provider connection.*still open",
        Side.AGENT,
        "after the cancel the agent kept the provider's HTTP connection open: the cancel did "
        "not reach the streaming request (incident I1)",
    ),
    (
        "late-close",
        r"expected the client to close the provider connection.*only at",
        Side.AGENT,
        "the agent closed the provider connection after the cancel, but later than the bound",
    ),
    (
        "bytes-after-cancel",
        r"expected no bytes written to the agent",
        Side.AGENT,
        "the agent kept reading the model's stream after the cancel (incident I1)",
    ),
    (
        "request-after-cancel",
        r"expected no (request|model call) to the provider",
        Side.AGENT,
        "the agent sent a model request after the cancel: a retry or a follow-up call the "
        "cancel should have stopped (incident I5)",
    ),
    (
        "recorded-completed",
        r"not to be recorded as completed",
        Side.AGENT,
        "a turn reported cancelled or timed out was persisted as a completed answer (I2)",
    ),
    (
        "ghost-turn",
        r"no ghost turn",
        Side.AGENT,
        "the persisted session changed after the agent had reported the turn cancelled or "
        "timed out (incident I2): whatever it records of a stopped turn must be written "
        "before it reports the outcome",
    ),
    (
        "next-turn-growth",
        r"the transcript should grow by exactly that turn",
        Side.AGENT,
        "the turn after the cancel completed, but the persisted session did not grow by "
        "exactly that turn",
    ),
    (
        "next-turn",
        r"expected the next turn",
        Side.AGENT,
        "the turn after the cancel did not complete normally: the cancel poisoned the session",
    ),
    (
        "cancel-reported-completed",
        r"expected turn \S+ to end 'cancelled'; it ended 'completed'",
        Side.AGENT,
        "the turn was cancelled, yet the agent reported it completed (ACP stopReason "
        "end_turn): a client cannot tell a cancelled turn from a finished one (ACP: after "
        "session/cancel the prompt is answered with stopReason cancelled)",
    ),
    (
        "wrong-stop-reason",
        r"expected turn \S+ to end '",
        Side.AGENT,
        "the turn ended with another stop reason than the scenario expects",
    ),
    (
        "retries",
        r"expected exactly \d+ retries",
        Side.AGENT,
        "the number of retries differs from the configured policy",
    ),
    (
        "turn-hung",
        r"expected turn \S+ to end within",
        Side.AGENT,
        "the turn did not end within the wait (100 tempo, at least 2 s)",
    ),
    (
        "text-not-shown",
        r"expected turn \S+ to show",
        Side.HARNESS,
        "the scenario waits for the provider's text to appear at the front door before it "
        "cancels, and the agent showed only part of it while the provider was silent (it "
        "holds back the latest delta until the next one arrives): a display policy, so the "
        "cancel was never staged (harness: steps.consumed should fall back to its ledger wait "
        "when the front door shows a prefix of the words, instead of failing the case)",
    ),
    (
        "left-open-after-stop",
        r"connection to be closed once the agent stopped",
        Side.AGENT,
        "provider connections stayed open after the agent was stopped (a leaked connection)",
    ),
    (
        "in-flight-after-scenario",
        r"expected no main call still in flight",
        Side.AGENT,
        "a main call was still being answered after the scenario ended",
    ),
    (
        "background",
        r"expected the background call",
        Side.AGENT,
        "the agent's background call did not survive the cancel",
    ),
    (
        "case-timeout",
        r"did not finish within",
        Side.AGENT,
        "the case ran out of time; its last harness step is in the message",
    ),
)


def diagnose(message: str, timeline: str = "", scenario: str = "") -> Diagnosis:
    """The cause of a failed or broken case (unknown ones quote the message's first line)."""
    if _BUDGET.search(message):
        up = started_at(timeline)
        budget = float(_BUDGET.search(message)["s"]) * 1000  # type: ignore[index]
        if up is None or up > 0.4 * budget:
            return START_UP
    if re.search(r"grow by exactly that turn.*changed or removed from #", message) and re.search(
        r"agent\s+acp: ", timeline
    ):
        return ACP_REPLAY_MERGE
    if misattributed(timeline) and not re.search(r"no ghost turn|recorded as completed", message):
        return MISATTRIBUTED
    if re.search(r"close the provider connection.*only at", message) and stalled_after_cancel(
        timeline
    ):
        return STALL
    if scenario.startswith("esc.leave-early") and re.search(
        r"close the provider connection.*(still open|only at)", message
    ):
        return DRAIN_ON_LEAVE
    if re.search(r"close the provider connection.*still open.* and 0 more events", message):
        return SILENT_NO_CLOSE
    if re.search(r"RequestError: ", message) and not _SUBMIT.search(timeline):
        return FRESH_LOAD
    if re.search(r"ended timeout .*before its model call was held", message) or re.search(
        r"expected the next turn \S+ to complete normally; it ended 'timeout'", message
    ):
        return LOAD_DEADLINE
    if scenario.startswith("retry.genuine-drop") and "it ended 'error'" in message:
        return NO_MIDSTREAM_RETRY
    for cause, pattern, side, sentence in _RULES:
        if re.search(pattern, message, re.DOTALL):
            return Diagnosis(cause, sentence, side)
    first = message.splitlines()[0] if message else "no message"
    return Diagnosis("other", first[:240], Side.AGENT)


def warning_cause(warning: str) -> Diagnosis:
    """A side-traffic finding (a warning unless --strict-side-traffic)."""
    if "after the final cancel" in warning or "after the cancel" in warning:
        what = "a side call (title, memory, summary) began after the cancel"
    elif "still in flight" in warning:
        what = "a side call (title, memory, summary) was still running when the scenario ended"
    else:
        what = "side traffic outlived the cancel"
    return Diagnosis(
        "side-traffic",
        f"{what}: its own lifetime, not the turn's; a warning by default, a failure under "
        "--strict-side-traffic",
        Side.AGENT,
    )
