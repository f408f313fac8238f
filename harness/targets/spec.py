"""`--target SPEC` as a `TargetConfig`, the same object a TOML table becomes.

reference                 the reference agent, in-process (always this)
NAME                      a target configured in TOML (may shadow plain acp, http, pty)
acp | acp:COMMAND         an ACP agent over stdio (plain: the reference agent's ACP door)
http | http:URL | URL     the HTTP+SSE API (plain: the reference agent's server)
pty | pty:COMMAND         a terminal agent driven by keystrokes (plain: the reference chat)
python:MODULE:FACTORY     a Python adapter: MODULE.FACTORY() returns a Target
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence

from harness.targets.config import TargetConfig, TargetKind, TargetSpecError

KINDS_HELP = (
    "reference, acp[:COMMAND], http[:URL], pty[:COMMAND], python:MODULE:FACTORY "
    "or a configured name"
)
PLAIN = (TargetKind.ACP, TargetKind.HTTP, TargetKind.PTY)  # the reference agent's doors
WITH_ARGUMENT = {
    TargetKind.ACP: "COMMAND",
    TargetKind.HTTP: "URL",
    TargetKind.PTY: "COMMAND",
    TargetKind.PYTHON: "MODULE:FACTORY",
}

type Configured = Callable[[], Mapping[str, TargetConfig]]


def parse_spec(spec: str, configured: Configured) -> TargetConfig:
    """The target `spec` names; `configured()` (the TOML targets) is read only when needed."""
    where = f"target '{spec}'"
    if spec == "reference":
        return TargetConfig(TargetKind.REFERENCE, where)
    if spec.startswith(("http://", "https://")):
        return TargetConfig(TargetKind.HTTP, where, url=spec)
    head, sep, rest = spec.partition(":")
    if not sep:
        targets = configured()
        if spec in targets:
            return targets[spec]
        if spec in PLAIN:
            return TargetConfig(TargetKind(spec), where)
        raise _unknown(spec, list(targets))
    if head not in WITH_ARGUMENT:
        raise _unknown(spec, _names(configured))
    kind, rest = TargetKind(head), rest.strip()
    if not rest:
        what = WITH_ARGUMENT[kind]
        plain = f", or plain {kind} for the reference agent" if kind in PLAIN else ""
        raise TargetSpecError(f"{where} names no {what}; write {kind}:{what}{plain}")
    if kind is TargetKind.PYTHON:
        return TargetConfig(kind, where, factory=rest)
    if kind is TargetKind.HTTP:
        if not rest.startswith(("http://", "https://")):
            raise TargetSpecError(
                f"{where}: expected an http(s) URL, such as http:http://127.0.0.1:8000"
            )
        return TargetConfig(kind, where, url=rest)
    return TargetConfig(kind, where, command=rest)


def _names(configured: Configured) -> list[str]:
    try:
        return list(configured())
    except TargetSpecError:
        return []  # a broken file does not matter to a spec that names no configured target


def _unknown(spec: str, configured: Sequence[str]) -> TargetSpecError:
    choices = ["reference", *PLAIN, *configured]
    close = difflib.get_close_matches(spec, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    names = (
        ", ".join(configured) if configured else "none in ./cancel-harness.toml or ./pyproject.toml"
    )
    return TargetSpecError(
        f"unknown target '{spec}'{hint}; use --target {KINDS_HELP} (configured: {names})"
    )
