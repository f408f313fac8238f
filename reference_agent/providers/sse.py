"""An incremental server-sent-events parser: bytes in, (event name, data) out.

Chunks arrive cut anywhere (inside a UTF-8 sequence, between `\\r` and `\\n`), so the
parser keeps the unfinished line and decoder state between `feed` calls and only emits an
event once its terminating blank line has arrived. Follows the WHATWG rules: `\\r\\n`, `\\r`
and `\\n` all end lines, `:` starts a comment (`: ping`), multi-line `data` is joined with
`\\n`, and a block without any `data` line dispatches nothing.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event; `event` is "message" when the server named none."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Feed it raw body chunks; it returns the events each chunk completed."""

    __slots__ = ("_after_cr", "_data", "_decoder", "_event", "_id", "_pending", "_started")

    def __init__(self) -> None:
        # Invalid UTF-8 becomes U+FFFD, as the spec asks, instead of killing the stream.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the "\n" of a "\r\n" cut in two: that line already ended
            self._after_cr = False
        if text:
            self._after_cr = text.endswith("\r")
        text = self._pending + text
        events: list[SSEEvent] = []
        start = 0
        for match in _EOL.finditer(text):
            self._line(text[start : match.start()], events)
            start = match.end()
        self._pending = text[start:]
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
            self._event = ""
            self._data = []
            return
        if line.startswith(":"):
            return  # a comment, e.g. a keep-alive ": ping"
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored: we never reconnect on our own.
