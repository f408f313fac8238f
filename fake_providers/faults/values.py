"""The values a fault spec carries: durations, counts, rates, seconds. Each has a bounded range.

Every number in a spec is checked against a documented range before it is converted, so no
input (a 5,000-digit count, `1e999`, a negative duration) reaches `int()` or `float()` in a
form that raises anything but `FaultSpecError`, with one line naming the token and the fix.
"""

from __future__ import annotations

import re

MAX_EVENTS = 1_000_000  # event positions (hang-after, close-after, ...) and `tokens`
MAX_DURATION = 86_400.0  # one day: hangs, pace, jitter, retry-after
MAX_RATE = 1_000_000_000.0  # drip, bytes per second
MAX_WHOLE = 2**63 - 1  # seeds, request ordinals, times

_DURATION = re.compile(r"^(-?)(\d{1,12}(?:\.\d{1,9})?)(us|ms|s|m)$")
_NUMBER = re.compile(r"^-?\d{1,19}(?:\.\d{1,9})?$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


_ONE_LINE = {**{i: f"\\x{i:02x}" for i in range(32)}, 0x7F: "\\x7f"}


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood; the message names the bad token and the fix.

    Always one line: control characters from the spec are shown escaped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message.translate(_ONE_LINE))


def shown(text: str) -> str:
    """A value as an error message quotes it: long ones are cut, so the message stays short."""
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def duration(text: str, *, key: str, positive: bool = False) -> float:
    """`50ms` -> 0.05. Units: us, ms, s, m. A bare number is refused: units prevent mistakes."""
    m = _DURATION.match(text.strip())
    if not m:
        raise FaultSpecError(
            f"{key}={shown(text)}: expected a duration with a unit, such as 50ms, 1.5s or 2m"
        )
    if m.group(1):
        raise FaultSpecError(f"{key}={shown(text)}: a duration cannot be negative; use 0 or more")
    seconds = float(m.group(2)) * _UNITS[m.group(3)]
    if positive and seconds <= 0:
        raise FaultSpecError(
            f"{key}={shown(text)}: expected a duration above 0, such as {key}=50ms"
        )
    if seconds > MAX_DURATION:
        raise FaultSpecError(f"{key}={shown(text)}: at most 24h (86400s) is allowed")
    return seconds


def whole(
    text: str, *, key: str, noun: str = "", low: int = 0, high: int = MAX_EVENTS, example: str = "5"
) -> int:
    """A whole number in [low, high]; `noun` says what it counts in the message."""
    what = f"a whole number of {noun}" if noun else "a whole number"
    if not text.isascii() or not text.isdigit():
        raise FaultSpecError(f"{key}={shown(text)}: expected {what}, such as {key}={example}")
    if len(text.lstrip("0")) > len(str(high)) or not low <= int(text) <= high:
        raise FaultSpecError(f"{key}={shown(text)}: expected {what} from {low} to {high:,}")
    return int(text)


def events(text: str, *, key: str) -> int:
    """An event position or count: 0 to MAX_EVENTS."""
    return whole(text, key=key, noun="events")


def rate(text: str, *, key: str) -> float:
    """Bytes per second above 0 (`200`, `200b/s`, `200bps`)."""
    m = re.match(r"^(\d{1,10}(?:\.\d{1,9})?)(?:b/s|bps)?$", text.lower())
    if not m or not 0 < float(m.group(1)) <= MAX_RATE:
        raise FaultSpecError(
            f"{key}={shown(text)}: expected bytes per second above 0 (at most {MAX_RATE:,.0f}), "
            f"such as {key}=200"
        )
    return float(m.group(1))


def seconds(text: str, *, key: str) -> float:
    """Plain seconds, as in a `retry-after` header: 0 to one day."""
    if not _NUMBER.match(text):
        raise FaultSpecError(f"{key}={shown(text)}: expected seconds, such as {key}=1")
    value = float(text)
    if not 0 <= value <= MAX_DURATION:
        raise FaultSpecError(f"{key}={shown(text)}: expected seconds from 0 to {MAX_DURATION:.0f}")
    return value


def boolean(text: str, *, key: str) -> bool:
    if text.lower() in {"true", "yes", "1"}:
        return True
    if text.lower() in {"false", "no", "0"}:
        return False
    raise FaultSpecError(f"{key}={shown(text)}: expected true or false")


def format_number(value: float) -> str:
    """A plain number as a spec writes it (`1`, `0.25`, never `1e+06`), so it parses back."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """The shortest spec text that parses back to `seconds` (`0.05` -> `50ms`)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    ms = seconds * 1000
    if ms >= 1 and abs(ms - round(ms)) < 1e-9:
        return f"{round(ms)}ms"
    if seconds < 1e-3:
        return f"{format_number(seconds * 1e6)}us"
    return f"{format_number(ms)}ms"
