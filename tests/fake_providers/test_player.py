"""What each fault means on the wire, played through the sans-IO player (no socket, no clock)."""

from __future__ import annotations

import pytest
from playback import completion_events, playback

from fake_providers.content import MAX_TOKENS, ContentSpec
from fake_providers.wire import ANTHROPIC, OPENAI_CHAT, WireFormat

EVENTS = completion_events(3)
N = len(EVENTS)  # role, three text deltas, finish, [DONE]


@pytest.mark.parametrize(
    ("spec", "lines"),
    [
        ("", ["respond 200", f"finish {N} complete"]),
        ("hang-after=2", ["respond 200", "write 2", "park"]),
        (
            "hang-after=2,hang-for=1s",
            ["respond 200", "write 2", "sleep until 1s", f"finish {N - 2} complete"],
        ),
        ("hang-before-headers", ["park"]),
        ("hang-before-headers=2s", ["sleep until 2s", "respond 200", f"finish {N} complete"]),
        ("hold-before=3,gate=g", ["respond 200", "write 2", "gate g", f"finish {N - 2} complete"]),
        ("hold-before=headers", ["gate default", "respond 200", f"finish {N} complete"]),
        ("close-after=2", ["respond 200", "write 2", "close fin"]),
        ("reset-after=2", ["respond 200", "write 2", "close rst"]),
        ("close-after=0", ["respond 200", "write 0", "close fin"]),
        ("close-after=500", ["respond 200", f"write {N - 1}", "close fin"]),
        ("error-after=2", ["respond 200", "finish 3 stream-error"]),
        ("malformed-after=2", ["respond 200", f"finish {N + 1} complete"]),
        ("status=429,retry-after=1", ["reply 429"]),
        ("hang-before-headers=1s,status=503", ["sleep until 1s", "reply 503"]),
        ("drip=200", ["respond 200", f"finish {N} complete at 200B/s"]),
        ("drip=200,hang-after=1", ["respond 200", "write 1 at 200B/s", "park"]),
        ("hold-before=2,reset-after=1", ["respond 200", "write 1", "gate default", "close rst"]),
    ],
)
def test_each_fault_as_wire_commands(spec: str, lines: list[str]) -> None:
    assert playback(spec).lines == lines


@pytest.mark.parametrize(
    ("spec", "sent"),
    [
        ("", EVENTS),
        ("close-after=2", EVENTS[:2]),
        ("hang-after=4", EVENTS[:4]),
        ("hold-before=3,hang-after=5", EVENTS[:5]),
    ],
)
def test_the_client_gets_exactly_the_events_before_the_fault(spec: str, sent: list[bytes]) -> None:
    trace = playback(spec)
    assert trace.body() == b"".join(sent)
    assert trace.events == [len(e) for e in sent]


def test_malformed_event_is_inserted_and_the_stream_goes_on() -> None:
    body = playback("malformed-after=2").body()
    assert body == b"".join([*EVENTS[:2], OPENAI_CHAT.malformed_event(), *EVENTS[2:]])


@pytest.mark.parametrize("wire", [OPENAI_CHAT, ANTHROPIC])
def test_stream_error_is_the_providers_own_error_event_and_ends_the_stream(
    wire: WireFormat,
) -> None:
    body = playback("error-after=1", wire=wire).body()
    events = completion_events(3, wire)
    assert body.startswith(events[0])
    assert b"error" in body[len(events[0]) :]
    assert events[1] not in body


def test_refusal_is_a_whole_json_reply_with_its_headers() -> None:
    trace = playback("status=429,retry-after=2,retry-after-ms=1500")
    assert b'"Rate limit reached (injected fault)."' in trace.body()


def test_paced_events_go_out_on_absolute_deadlines_and_the_last_one_is_the_players() -> None:
    trace = playback("pace=10ms")
    assert trace.lines[:2] == ["respond 200", "write 0"]
    assert trace.lines[-3:] == [f"sleep until {(N - 1) * 0.01:g}s", "write 1", "finish 0 complete"]
    assert trace.times == pytest.approx([i * 0.01 for i in range(N)])


def test_a_paced_stretch_stops_at_the_next_fault() -> None:
    trace = playback("pace=10ms,hang-after=2")
    assert trace.lines == ["respond 200", "write 0", "tick at 0s", "tick at 0.01s", "park"]


def test_jittered_pace_replays_from_its_seed() -> None:
    first = playback("pace=10ms,jitter=30ms,seed=3").times
    assert first == playback("pace=10ms,jitter=30ms,seed=3").times
    assert first != playback("pace=10ms,jitter=30ms,seed=4").times


def test_no_request_makes_the_answer_longer_than_the_content_ceiling() -> None:
    spec = ContentSpec(tokens=10**9)
    completion = spec.build(
        model="m", response_id="r", created=1, max_tokens=10**20, input_tokens=1
    )
    assert len(completion.text_chunks) == MAX_TOKENS
    text = ContentSpec(text="word " * (2 * MAX_TOKENS)).build(
        model="m", response_id="r", created=1, max_tokens=None, input_tokens=1
    )
    assert len(text.text_chunks) == MAX_TOKENS
