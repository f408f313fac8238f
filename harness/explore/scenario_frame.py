"""The parts of a pasted scenario around its steps: each request's fault as code, the
decorator (what the scenario requires, the agent settings of its profile), the imports.
"""

from __future__ import annotations

from harness.explore.profiles import COMPACTION_CHARS, STALE_OTHERWISE
from harness.explore.schedule import (
    DEADLINE_TEMPO,
    STALE_TEMPO,
    Cancel,
    FaultKind,
    Leave,
    Profile,
    Prompt,
    Request,
    Schedule,
    ToolKind,
)

# Explore holds a slow tool until released; a pasted scenario sleeps instead: long where
# the cancel comes while it runs, short elsewhere.
TOOL_LONG, TOOL_SHORT = 100, 5


def fault_code(request: Request, gate: str, long: bool) -> str:
    fault, parts = request.fault, []
    if fault.pace:
        parts.append(f"pace(ctx.tempo({fault.pace:g}))")
    if fault.drip:
        parts.append(f"drip({fault.drip})")
    match fault.kind:
        case FaultKind.HOLD_HEADERS:
            parts.append(f'hold(before="headers", gate="{gate}")')
        case FaultKind.HOLD:
            parts.append(f'hold(before={fault.at + 1}, gate="{gate}")')
        case FaultKind.FIN:
            parts.append(f"close_after({fault.at})")
        case FaultKind.RST:
            parts.append(f"reset_after({fault.at})")
        case FaultKind.HTTP if fault.retry_after is not None:
            ra = f"ctx.tempo({fault.retry_after:g})"
            parts.append(
                f"http_error({fault.status}, retry_after=round({ra}, 3), "
                f"retry_after_ms=round({ra} * 1000))"
            )
        case FaultKind.HTTP:
            parts.append(f"http_error({fault.status})")
        case FaultKind.STREAM_ERROR:
            parts.append(f"stream_error({fault.at})")
        case FaultKind.HANG:
            parts.append(f"hang_after({fault.at})")
        case FaultKind.QUOTA:
            parts.append(f'quota("{fault.quota}", reset=ctx.tempo({fault.retry_after or 0:g}))')
        case FaultKind.CONTEXT:
            parts.append("context_window(ctx.kind)")
        case FaultKind.OK:
            pass
    if request.tool is ToolKind.BROKEN and not fault.fails:
        parts.append('says(tokens=0, tools=(ToolCall("call_1", "shell", \'{"command": "ec\'),))')
    elif request.tool is not None and not fault.fails:
        command = tool_command(request.tool, TOOL_LONG if long else TOOL_SHORT)
        parts.append(f"says(tokens=0, tools=(shell_tool(ctx, {command}),))")
    else:
        parts.append("says(tokens=8)")
    return " + ".join(parts)


def tool_command(kind: ToolKind, tempo: int) -> str:
    seconds = f"{{ctx.tempo({tempo}):.3f}}"
    match kind:
        case ToolKind.QUICK:
            return '"echo done"'
        case ToolKind.SLOW:
            return f'f"sleep {seconds}"'
        case ToolKind.TREE | ToolKind.BROKEN:
            return f"f\"sh -c 'sleep {seconds} & sleep {seconds} & wait'\""


def requires(schedule: Schedule) -> set[str]:
    steps, needs = schedule.steps, {"Capability.CANCEL"}
    prompts = [s for s in steps if isinstance(s, Prompt)]
    if any(s.followup for s in prompts):
        needs.add("Capability.QUEUE")
    if any(isinstance(s, Cancel) and s.names is not None for s in steps):
        needs.add("Capability.STREAM_IDS")
    if any(isinstance(s, Prompt | Cancel) and s.session > 0 for s in steps):
        needs.add("Capability.SESSIONS")
    if any(r.tool for s in prompts for r in s.requests):
        needs.add("Capability.TOOLS")
    if any(isinstance(s, Leave) for s in steps):
        needs.add("Capability.LEAVE_EARLY")
    profile_needs = {
        Profile.DEADLINE: "Capability.TIMEOUT",
        Profile.STALE: "Capability.STALE_TIMEOUT",
        Profile.MEMORY: "Capability.BACKGROUND",
        Profile.COMPACTION: "Capability.COMPACTION",
    }
    if schedule.profile in profile_needs:
        needs.add(profile_needs[schedule.profile])
    return needs


def settings(profile: Profile) -> str:
    stale = f"tempo({STALE_TEMPO})" if profile is Profile.STALE else f"{STALE_OTHERWISE:g}"
    fields = [
        f"max_retries={0 if profile is Profile.STALE else 2}",
        "backoff_base=tempo(1)",
        "backoff_max=tempo(40)",
        f"stale_timeout={stale}",
        f"memory_extraction={profile is Profile.MEMORY}",
    ]
    if profile is Profile.DEADLINE:
        fields.append(f"turn_timeout=tempo({DEADLINE_TEMPO})")
    if profile is Profile.COMPACTION:
        fields.append(f"compaction_threshold_chars={COMPACTION_CHARS}")
    if profile is Profile.JSON:
        fields.append("stream=False")
    return ",\n        ".join(fields) + ","


_IMPORTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fake_providers", ("ToolCall",)),
    ("harness.checks", ("CheckFailed",)),
    ("harness.context", ("ScenarioContext",)),
    (
        "harness.faults",
        (
            *("close_after", "context_window", "drip", "hang_after", "hold", "http_error"),
            *("pace", "quota", "reset_after", "says", "side_of", "stream_error"),
        ),
    ),
    ("harness.scenario", ("scenario",)),
    (
        "harness.steps",
        (
            *("connection_of", "leave", "main_requests", "no_live_tools", "reach"),
            *("shell_tool", "tool_started", "wait_limit"),
        ),
    ),
    ("harness.target", ("AgentSettings", "Capability")),
)


def imports(body: str) -> str:
    """The import block: only what the body (and the decorator) uses."""
    used = body + "\nscenario( ScenarioContext) AgentSettings( Capability."
    plain = [f"import {m}" for m in ("time", "anyio") if f"{m}." in body]
    froms = []
    for module, names in _IMPORTS:
        wanted = [n for n in names if f"{n}(" in used or f"{n}." in used or f"{n})" in used]
        if len(wanted) == 1:
            froms.append(f"from {module} import {wanted[0]}")
        elif wanted:
            froms.append(f"from {module} import (\n" + "".join(f"    {n},\n" for n in wanted) + ")")
    return "\n\n".join(
        b for b in ("\n".join(plain[:1]), "\n".join(plain[1:]), "\n".join(froms)) if b
    )


TEMPLATE = '''"""Found by `cancel-harness explore`; paste it into a module of your catalogue."""

from __future__ import annotations

{imports}


@scenario(
    id="explore.found-{digest}",
    title="Found by explore ({digest})",
    incident="explore",
    tags=("explore",),
    providers=("{kind}",),
    requires=frozenset({{{requires}}}),
    settings=lambda tempo: AgentSettings(
        {settings}
    ),
)
async def found_{digest}(ctx: ScenarioContext) -> None:
    """{doc}"""
{body}
'''
