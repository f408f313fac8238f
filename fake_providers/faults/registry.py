"""Every fault the text spec knows, in the order `valid:` lists their keys. One line each."""

from __future__ import annotations

from fake_providers.faults.close_after import CloseAfter
from fake_providers.faults.context_window import ContextWindow
from fake_providers.faults.drip import Drip
from fake_providers.faults.fault import Fault
from fake_providers.faults.hang_after import HangAfter
from fake_providers.faults.hang_before_headers import HangBeforeHeaders
from fake_providers.faults.hold import Hold
from fake_providers.faults.http_error import HttpError
from fake_providers.faults.malformed import Malformed
from fake_providers.faults.pace import Pace
from fake_providers.faults.quota import Quota
from fake_providers.faults.reset_after import ResetAfter
from fake_providers.faults.stream_error import StreamError
from fake_providers.faults.truncate_after import TruncateAfter

FAULTS: tuple[type[Fault], ...] = (
    Pace,
    HangBeforeHeaders,
    HangAfter,
    Drip,
    CloseAfter,
    ResetAfter,
    HttpError,
    StreamError,
    Malformed,
    Hold,
    TruncateAfter,
    Quota,
    ContextWindow,
)

OWNER: dict[str, type[Fault]] = {key: fault for fault in FAULTS for key in fault.keys}
assert len(OWNER) == sum(len(f.keys) for f in FAULTS), "two faults claim the same spec key"
