"""The one target builder: a checked `TargetConfig` (from `--target` or TOML) in, a fresh
unstarted target out.

Each kind's module is imported only when a target of that kind is built, so
`cancel-harness list` never imports pexpect or the ACP client. The capabilities are the
config's full set, or the kind's default changed by `capabilities_add/remove`; every
target carries `providers` and `close_within` (the kind's defaults unless configured).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from harness.target import Target
from harness.targets.config import (
    DEFAULT_STARTUP_TIMEOUT,
    TargetConfig,
    TargetKind,
    TargetSpecError,
    Via,
    command_parts,
)

if TYPE_CHECKING:
    from harness.targets.acp import AcpTarget
    from harness.targets.http import HttpTarget
    from harness.targets.pty import PtyTarget
    from harness.targets.reference import ReferenceTarget


def build_target(config: TargetConfig, defects: Sequence[str] = ()) -> Target:
    """A fresh, unstarted target for `config`, with the given defect switches."""
    defects = tuple(defects)
    made: AcpTarget | HttpTarget | PtyTarget | ReferenceTarget
    match config.kind:
        case TargetKind.PYTHON:
            return route_via(_python(config, defects), config.via, config.where)
        case TargetKind.REFERENCE:
            made = _reference(config, defects)
        case TargetKind.ACP:
            made = _acp(config, defects)
        case TargetKind.HTTP:
            made = _http(config, defects)
        case TargetKind.PTY:
            made = _pty(config, defects)
    if config.providers is not None:
        made.providers = config.providers
    if config.close_within is not None:  # else the kind's own default stays
        made.close_within = config.close_within
    return route_via(made, config.via, config.where)


def route_via(target: Target, via: Via, where: str) -> Target:
    """The target as it reaches the provider: directly, or through the proxy (docs/proxy.md)."""
    if via is Via.DIRECT:
        return target
    from harness.targets.reference import ReferenceTarget

    already_running = bool(getattr(target, "url", None)) and not getattr(target, "command", None)
    if isinstance(target, ReferenceTarget) or already_running:
        raise TargetSpecError(
            f"{where}: --via proxy needs an agent the harness starts with its environment "
            "(acp, http or pty with a command, or a python adapter); the in-process reference "
            "agent and a server already running cannot be given a proxy: use --target acp or http"
        )
    try:
        from harness.proxy.target import ProxiedTarget
    except ImportError as exc:
        raise TargetSpecError(
            f"{where}: --via proxy needs mitmproxy ({exc}); install the proxy extra: "
            "pip install -e '.[proxy]'"
        ) from None
    return ProxiedTarget.around(target)


def _reference(config: TargetConfig, defects: tuple[str, ...]) -> ReferenceTarget:
    try:
        from harness.targets.reference import ReferenceTarget
    except ImportError as exc:
        raise _unavailable("the reference target", exc) from None
    target = ReferenceTarget(defects=defects)
    target.name = config.label(defects) or target.name
    target.capabilities = config.capabilities_over(ReferenceTarget.capabilities)
    return target


def _acp(config: TargetConfig, defects: tuple[str, ...]) -> AcpTarget:
    try:
        from harness.targets.acp import (
            REFERENCE_CAPABILITIES,
            THIRD_PARTY_CAPABILITIES,
            AcpTarget,
            reference_acp_command,
        )
        from harness.targets.reference import reference_cli_args
    except ImportError as exc:
        raise _unavailable("acp targets", exc) from None
    timeout = config.startup_timeout or DEFAULT_STARTUP_TIMEOUT
    if config.command is None:  # the reference agent's ACP door
        return AcpTarget(
            command=reference_acp_command(defects),
            env=dict(config.env),
            defects=defects,
            startup_timeout=timeout,
            name=config.label(defects) or "acp",
            capabilities=config.capabilities_over(REFERENCE_CAPABILITIES),
            settings_args=reference_cli_args,
        )
    return AcpTarget(
        command=check_command(config.command, config.env, config.where),
        env=dict(config.env),
        defects=defects,
        startup_timeout=timeout,
        name=config.label(defects),
        capabilities=config.capabilities_over(THIRD_PARTY_CAPABILITIES),
    )


def _http(config: TargetConfig, defects: tuple[str, ...]) -> HttpTarget:
    try:
        from harness.targets.http import DEFAULT_CAPABILITIES, HttpTarget
    except ImportError as exc:
        raise _unavailable("http targets", exc) from None
    command = config.command
    return HttpTarget(
        command=None if command is None else check_command(command, config.env, config.where),
        url=config.url,
        env=dict(config.env),
        defects=defects,
        startup_timeout=config.startup_timeout or DEFAULT_STARTUP_TIMEOUT,
        name=config.label(defects) or "http",
        capabilities=config.capabilities_over(DEFAULT_CAPABILITIES),
    )


def _pty(config: TargetConfig, defects: tuple[str, ...]) -> PtyTarget:
    try:
        from harness.targets.pty import (
            DEFAULT_CAPABILITIES,
            REFERENCE_CHAT_CAPABILITIES,
            PtyTarget,
            reference_chat_args,
            reference_chat_command,
        )
    except ImportError as exc:
        raise _unavailable("pty targets", exc) from None
    timeout = config.startup_timeout or DEFAULT_STARTUP_TIMEOUT
    if config.command is None:  # the reference agent's terminal chat
        target = PtyTarget(
            command=reference_chat_command(defects),
            env=config.env,
            defects=defects,
            startup_timeout=timeout,
            name=config.label(defects) or "pty",
            capabilities=config.capabilities_over(REFERENCE_CHAT_CAPABILITIES),
            settings_args=reference_chat_args,
        )
    else:
        target = PtyTarget(
            command=check_command(config.command, config.env, config.where),
            env=config.env,
            defects=defects,
            startup_timeout=timeout,
            name=config.label(defects),
            capabilities=config.capabilities_over(DEFAULT_CAPABILITIES),
        )
    if config.prompt_marker is not None:
        target.prompt_marker = config.prompt_marker
    if config.cancel_keys is not None:
        target.cancel_keys = config.cancel_keys
    return target


def _python(config: TargetConfig, defects: tuple[str, ...]) -> Target:
    """The user's factory makes the object; TOML may then set what it declares."""
    from harness.targets.python import make_python_target

    target = make_python_target(config.factory or "", defects)
    try:
        if config.capabilities is not None or config.capabilities_add or config.capabilities_remove:
            target.capabilities = config.capabilities_over(frozenset(target.capabilities))
        if config.providers is not None:
            setattr(target, "providers", config.providers)  # noqa: B010 (not in the Protocol)
        if config.close_within is not None:
            setattr(target, "close_within", config.close_within)  # noqa: B010
    except AttributeError:
        raise TargetSpecError(
            f"{config.where}: its target object does not let the harness set capabilities, "
            "providers or close_within; declare them in the adapter instead"
        ) from None
    return target


def _unavailable(what: str, exc: ImportError) -> TargetSpecError:
    return TargetSpecError(
        f"{what} cannot be loaded ({exc}); reinstall the project (pip install -e .)"
    )


def check_command(
    command: str | Sequence[str], env: Mapping[str, str], where: str
) -> str | list[str]:
    """The command as given, once its program is known to exist (unless it is a template)."""
    program = command_parts(command, where)[0]
    path = env.get("PATH") if "{" not in env.get("PATH", "") else None
    if "{" not in program and shutil.which(program, path=path) is None:
        raise TargetSpecError(
            f"{where}: program '{program}' not found; install it, or give its full path"
        )
    return command if isinstance(command, str) else list(command)
