"""The fault vocabulary: small named faults composed into a plan, and its one-line text spec.

In the spirit of Toxiproxy's toxics, every fault is a small frozen object with a few
parameters, in a file of its own, listed in `registry.FAULTS`. A `FaultPlan` is a tuple of
them plus the content to send; `FaultPlan.compile` lays them out as a `Schedule` of typed
actions, pure data that `fake_providers.player` turns into wire commands. The text spec
(`pace=50ms,hang-after=5`) always round-trips through `FaultPlan.spec()`.
"""

from fake_providers.faults.close_after import CloseAfter
from fake_providers.faults.drip import Drip
from fake_providers.faults.fault import Fault
from fake_providers.faults.hang_after import HangAfter
from fake_providers.faults.hang_before_headers import HangBeforeHeaders
from fake_providers.faults.hold import Hold
from fake_providers.faults.http_error import ERROR_STATUSES, HttpError
from fake_providers.faults.malformed import Malformed
from fake_providers.faults.pace import Pace
from fake_providers.faults.plan import FaultPlan, Match, Rule, Step
from fake_providers.faults.registry import FAULTS
from fake_providers.faults.reset_after import ResetAfter
from fake_providers.faults.schedule import Action, Schedule
from fake_providers.faults.spec import FAULT_KEYS, SELECTOR_KEYS, parse_rule
from fake_providers.faults.stream_error import StreamError
from fake_providers.faults.values import FaultSpecError

__all__ = [
    "ERROR_STATUSES",
    "FAULTS",
    "FAULT_KEYS",
    "SELECTOR_KEYS",
    "Action",
    "CloseAfter",
    "Drip",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "HangAfter",
    "HangBeforeHeaders",
    "Hold",
    "HttpError",
    "Malformed",
    "Match",
    "Pace",
    "ResetAfter",
    "Rule",
    "Schedule",
    "Step",
    "StreamError",
    "parse_rule",
]
