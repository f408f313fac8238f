"""Target kinds: how the harness drives an agent. `make_target` turns `--target SPEC` into one.

    reference                 the reference agent, in-process
    NAME                      a target configured in ./cancel-harness.toml or ./pyproject.toml
    acp | acp:COMMAND         an ACP agent over stdio (plain: the reference agent's ACP door)
    http | http:URL           the HTTP+SSE API (plain: the reference agent's server);
                              a bare http(s)://... URL works too
    pty | pty:COMMAND         a terminal agent driven by keystrokes (plain: the reference chat)
    python:MODULE:FACTORY     a Python adapter: MODULE.FACTORY() returns a Target

Kinds load lazily, so `cancel-harness list` never imports pexpect or an ACP client.
See docs/targets.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from harness.target import Target

KINDS_HELP = (
    "reference, acp[:COMMAND], http[:URL], pty[:COMMAND], python:MODULE:FACTORY "
    "or a configured name"
)


class TargetSpecError(ValueError):
    """A `--target` the harness cannot build; the message says what is wrong and how to mend it."""


def make_target(spec: str, defects: Sequence[str] = ()) -> Target:
    """A fresh, unstarted target for `spec`, with the given defect switches."""
    defects = tuple(defects)
    if spec == "reference":
        return _reference(defects)
    if spec.startswith(("http://", "https://")):
        return _http(spec, defects)
    kind, sep, rest = spec.partition(":")
    if not sep:
        from harness.targets.config import build_target, load_targets

        configured = load_targets()
        if spec in configured:
            return build_target(configured[spec], defects)
        if spec in ("acp", "http", "pty"):
            return _builtin(spec, None, defects)
        raise _unknown(spec, list(configured))
    if kind in ("acp", "http", "pty", "python"):
        if not rest.strip():
            what = {"http": "URL", "python": "MODULE:FACTORY"}.get(kind, "COMMAND")
            raise TargetSpecError(
                f"target '{spec}' names no {what}; write {kind}:{what}"
                + (f", or plain {kind} for the reference agent" if kind != "python" else "")
            )
        return _builtin(kind, rest.strip(), defects)
    try:
        from harness.targets.config import load_targets

        names: Sequence[str] = list(load_targets())
    except TargetSpecError:
        names = []
    raise _unknown(spec, names)


def _reference(defects: Sequence[str]) -> Target:
    try:
        from harness.targets.reference import ReferenceTarget
    except ImportError as exc:
        raise TargetSpecError(
            f"the reference target cannot be loaded ({exc}); reinstall the project "
            "(pip install -e .) or check harness/targets/reference.py"
        ) from exc
    target: Target = ReferenceTarget(defects=defects)
    return target


def _http(url: str | None, defects: Sequence[str]) -> Target:
    from harness.targets.config import load_kind

    if url is not None and not url.startswith(("http://", "https://")):
        raise TargetSpecError(
            f"target 'http:{url}': expected an http(s) URL, such as http:http://127.0.0.1:8000"
        )
    module = load_kind("http", "HttpTarget")
    made: Target = module.HttpTarget(url=url, defects=defects)
    return made


def _builtin(kind: str, rest: str | None, defects: Sequence[str]) -> Target:
    """acp / http / pty (with a command or URL, or the reference agent's door) and python."""
    from harness.targets.config import check_command, load_kind

    target: Any
    if kind == "http":
        return _http(rest, defects)
    if kind == "python":
        from harness.targets.python import make_python_target

        return make_python_target(rest or "", defects)
    if kind == "acp":
        acp = load_kind(
            "acp",
            "AcpTarget",
            "reference_acp_command",
            "REFERENCE_CAPABILITIES",
            "THIRD_PARTY_CAPABILITIES",
        )
        if rest is None:
            from harness.targets.reference import reference_cli_args

            command = acp.reference_acp_command(defects)
            target = acp.AcpTarget(
                command=command,
                defects=defects,
                name="acp",
                capabilities=acp.REFERENCE_CAPABILITIES,
                settings_args=reference_cli_args,
            )
        else:
            command = check_command(rest, {}, f"target 'acp:{rest}'")
            target = acp.AcpTarget(
                command=command, defects=defects, capabilities=acp.THIRD_PARTY_CAPABILITIES
            )
    else:
        from harness.targets.pty import PtyTarget, reference_chat_target

        if rest is None:
            target = reference_chat_target(defects)
        else:
            target = PtyTarget(
                command=check_command(rest, {}, f"target 'pty:{rest}'"), defects=defects
            )
    made: Target = target
    return made


def _unknown(spec: str, configured: Sequence[str]) -> TargetSpecError:
    choices = ["reference", "acp", "http", "pty", *configured]
    close = difflib.get_close_matches(spec, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    names = (
        ", ".join(configured) if configured else "none in ./cancel-harness.toml or ./pyproject.toml"
    )
    return TargetSpecError(
        f"unknown target '{spec}'{hint}; use --target {KINDS_HELP} (configured: {names})"
    )
