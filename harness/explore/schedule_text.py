"""A schedule's replay text: compact JSON, versioned, checked when it is read back.

What a replay command and the example database carry. Reading it never trusts it: a bad
part is one `ScheduleError` line naming it, and every step must name a turn prompted before.
"""

from __future__ import annotations

import json
from typing import Any

from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness.explore.schedule import (
    STEP_TYPES,
    Await,
    Cancel,
    Fault,
    FaultKind,
    Leave,
    Point,
    Profile,
    Prompt,
    Reach,
    Release,
    Request,
    Schedule,
    ScheduleError,
    Step,
    ToolKind,
    Twice,
)

TEXT_VERSION = 1


def encode(schedule: Schedule) -> str:
    data = {
        "v": TEXT_VERSION,
        "profile": schedule.profile.value,
        "kind": schedule.kind.value,
        "steps": [_step_data(s) for s in schedule.steps],
    }
    return json.dumps(data, separators=(",", ":"))


def decode(text: str) -> Schedule:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ScheduleError(
            f"the schedule is not JSON ({exc}); paste it exactly as explore printed it, "
            "in single quotes"
        ) from None
    if not isinstance(data, dict) or data.get("v") != TEXT_VERSION:
        raise ScheduleError(
            f"expected a version-{TEXT_VERSION} schedule object, as explore prints them"
        )
    try:
        kind = ProviderKind.parse(str(data["kind"]))
        profile = Profile(data["profile"])
        steps = tuple(_step_from(item) for item in data["steps"])
    except UnknownProviderKind as exc:
        raise ScheduleError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ScheduleError(f"the schedule has a bad part ({exc!r}); {_FIX}") from None
    schedule = Schedule(profile, kind, steps)
    check(schedule)
    return schedule


_FIX = "paste it exactly as explore printed it"


def check(schedule: Schedule) -> None:
    """Every step names a turn that was prompted before it."""
    seen: set[int] = set()
    for n, step in enumerate(schedule.steps, start=1):
        if isinstance(step, Prompt):
            if step.turn in seen or not step.requests:
                raise ScheduleError(f"step {n} prompts turn {step.turn} again or with no request")
            seen.add(step.turn)
            continue
        turn = step.names if isinstance(step, Cancel) else getattr(step, "turn", None)
        if turn is not None and turn not in seen:
            raise ScheduleError(f"step {n} names turn {turn} before it was prompted; {_FIX}")


def _step_data(step: Step) -> dict[str, Any]:
    name = next(k for k, v in STEP_TYPES.items() if isinstance(step, v))
    data: dict[str, Any] = {"step": name}
    match step:
        case Prompt():
            data.update(turn=step.turn, session=step.session)
            data["requests"] = [_request_data(r) for r in step.requests]
            for flag in ("followup", "hold_compaction", "hold_memory"):
                if getattr(step, flag):
                    data[flag] = True
        case Reach():
            data.update(turn=step.turn, point=step.point.value)
            if step.request:
                data["request"] = step.request
        case Cancel():
            data["session"] = step.session
            if step.names is not None:
                data["names"] = step.names
            if step.twice is not Twice.NO:
                data["twice"] = step.twice.value
        case Leave() | Release() | Await():
            data["turn"] = step.turn
    return data


def _request_data(request: Request) -> dict[str, Any]:
    fault = request.fault
    data: dict[str, Any] = {"fault": fault.kind.value}
    for name in ("at", "status", "pace", "drip", "quota"):
        if getattr(fault, name):
            data[name] = getattr(fault, name)
    if fault.retry_after is not None:
        data["retry_after"] = fault.retry_after
    if request.tool is not None:
        data["tool"] = request.tool.value
    return data


def _step_from(data: dict[str, Any]) -> Step:
    name = data["step"]
    if name not in STEP_TYPES:
        raise ValueError(f"unknown step {name!r}")
    match name:
        case "prompt":
            return Prompt(
                turn=int(data["turn"]),
                session=int(data["session"]),
                requests=tuple(_request_from(r) for r in data["requests"]),
                followup=bool(data.get("followup", False)),
                hold_compaction=bool(data.get("hold_compaction", False)),
                hold_memory=bool(data.get("hold_memory", False)),
            )
        case "reach":
            return Reach(int(data["turn"]), Point(data["point"]), int(data.get("request", 0)))
        case "cancel":
            names = data.get("names")
            return Cancel(
                int(data["session"]),
                None if names is None else int(names),
                Twice(data.get("twice", "")),
            )
        case "leave":
            return Leave(int(data["turn"]))
        case "release":
            return Release(int(data["turn"]))
        case _:
            return Await(int(data["turn"]))


def _request_from(data: dict[str, Any]) -> Request:
    retry_after = data.get("retry_after")
    fault = Fault(
        FaultKind(data["fault"]),
        at=int(data.get("at", 0)),
        status=int(data.get("status", 0)),
        retry_after=None if retry_after is None else float(retry_after),
        pace=float(data.get("pace", 0.0)),
        drip=int(data.get("drip", 0)),
        quota=str(data.get("quota", "")),
    )
    tool = data.get("tool")
    return Request(fault, None if tool is None else ToolKind(tool))
