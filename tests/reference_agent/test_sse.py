"""The incremental SSE parser: events must not depend on where the network cut the bytes."""

from __future__ import annotations

import pytest

from fake_providers.wire.anthropic import PING
from reference_agent.providers.sse import SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_named_and_unnamed_events() -> None:
    events = parse(b'event: ping\ndata: {"type":"ping"}\n\ndata: hello\n\n')
    assert events == [SSEEvent("ping", '{"type":"ping"}'), SSEEvent("message", "hello")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    raw = b"event: x" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert parse(raw) == [SSEEvent("x", "a\nb")]


def test_any_split_gives_the_same_events() -> None:
    raw = (
        b"\xef\xbb\xbf: keep-alive comment\r\n\r\n"
        b"event: delta\r\ndata: caf\xc3\xa9 \xe2\x82\xac\r\n\r\n"
        b"id: 7\r\ndata:no-space\r\ndata\r\n\r\n" + PING
    )
    whole = parse(raw)
    assert whole == [
        SSEEvent("delta", "café €"),
        SSEEvent("message", "no-space\n", "7"),
        SSEEvent("ping", '{"type":"ping"}', "7"),
    ]
    for cut in range(1, len(raw)):
        assert parse(raw[:cut], raw[cut:]) == whole, cut
    assert parse(*(raw[i : i + 1] for i in range(len(raw)))) == whole


def test_a_split_crlf_is_one_line_end() -> None:
    assert parse(b"data: a\r", b"\n", b"\n") == [SSEEvent("message", "a")]
    assert parse(b"data: a\r", b"\r") == [SSEEvent("message", "a")]


def test_comments_and_blocks_without_data_dispatch_nothing() -> None:
    assert parse(b": ping\n\nevent: lonely\n\nretry: 10\n\n") == []


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: part") == []
    assert parser.feed(b"ial\n") == []
    assert parser.feed(b"\n") == [SSEEvent("message", "partial")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse(b"data: \xff\n\n") == [SSEEvent("message", "\ufffd")]
