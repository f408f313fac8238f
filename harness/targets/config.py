"""Named targets from TOML: `[targets.NAME]` in ./cancel-harness.toml, or
`[tool.cancel-harness.targets.NAME]` in ./pyproject.toml (docs/targets.md).

    [targets.my-agent]
    kind = "acp"
    command = ["npx", "my-acp-agent"]
    env = { OPENAI_BASE_URL = "{base_url}", OPENAI_API_KEY = "{api_key}" }
    capabilities_add = ["tools"]

Every mistake is one TargetSpecError line naming the file, the target and the field.
"""

from __future__ import annotations

import difflib
import importlib
import re
import shlex
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.target import Capability, Target
from harness.targets import TargetSpecError

KINDS = ("acp", "http", "pty", "python", "reference")
CAPABILITY_FIELDS = ("capabilities", "capabilities_add", "capabilities_remove")
PROCESS_FIELDS = ("command", "env", "startup_timeout")
FIELDS: dict[str, tuple[str, ...]] = {  # what each kind takes besides `kind`
    "acp": (*PROCESS_FIELDS, *CAPABILITY_FIELDS),
    "http": (*PROCESS_FIELDS, "url", *CAPABILITY_FIELDS),
    "pty": (*PROCESS_FIELDS, "cancel_keys", "prompt_marker", *CAPABILITY_FIELDS),
    "python": ("factory", *CAPABILITY_FIELDS),
    "reference": CAPABILITY_FIELDS,
}
ALL_FIELDS = ("kind", *dict.fromkeys(f for fs in FIELDS.values() for f in fs))
KEY_NAMES = {"esc": "\x1b", "escape": "\x1b", "ctrl-c": "\x03", "ctrl+c": "\x03", "enter": "\r"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
FILES = (
    ("cancel-harness.toml", ("targets",)),
    ("pyproject.toml", ("tool", "cancel-harness", "targets")),
)


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One `[targets.NAME]` table, checked."""

    name: str
    kind: str
    where: str  # "cancel-harness.toml: target 'NAME'", for messages
    command: str | tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    factory: str | None = None
    startup_timeout: float | None = None
    capabilities: frozenset[Capability] | None = None
    capabilities_add: frozenset[Capability] = frozenset()
    capabilities_remove: frozenset[Capability] = frozenset()
    cancel_keys: tuple[str, ...] | None = None
    prompt_marker: str | None = None


def load_targets(directory: Path | None = None) -> dict[str, TargetConfig]:
    """Every configured target in `directory` (default: the current directory)."""
    base = directory if directory is not None else Path.cwd()
    found: dict[str, TargetConfig] = {}
    for filename, section in FILES:
        path = base / filename
        if not path.is_file():
            continue
        shown = filename if directory is None else str(path)
        table = _section(_read(path, shown), section, shown)
        for name, entry in table.items():
            where = f"{shown}: target '{name}'"
            if name in found:
                raise TargetSpecError(
                    f"{where} is also defined in {found[name].where.split(':')[0]}; "
                    "keep one of the two"
                )
            found[name] = parse_target(name, entry, where)
    return found


def _read(path: Path, shown: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise TargetSpecError(f"{shown}: not valid TOML ({exc}); fix the file") from None
    except OSError as exc:
        raise TargetSpecError(f"{shown}: cannot read it ({exc.strerror or exc})") from None


def _section(data: dict[str, Any], keys: Sequence[str], shown: str) -> dict[str, Any]:
    table: Any = data
    for key in keys:
        if not isinstance(table, dict):
            break
        table = table.get(key, {})
    if not isinstance(table, dict):
        header = ".".join(k if NAME.fullmatch(k) else f'"{k}"' for k in keys)
        raise TargetSpecError(f"{shown}: [{header}] must be a table of [{header}.NAME] tables")
    return table


def parse_target(name: str, entry: object, where: str) -> TargetConfig:
    """Check one target table; the first mistake is a one-line TargetSpecError."""
    if not NAME.fullmatch(name):
        raise TargetSpecError(
            f"{where}: a target name takes letters, digits, '-', '_' and '.'; rename it"
        )
    if name == "reference":
        raise TargetSpecError(f"{where}: the name 'reference' is built in; pick another name")
    if not isinstance(entry, dict):
        raise TargetSpecError(f"{where}: must be a table ([targets.{name}] with kind = ...)")
    kind = entry.get("kind")
    if kind is None:
        raise TargetSpecError(
            f"{where}: field 'kind' is missing; add kind = \"acp\" (one of {', '.join(KINDS)})"
        )
    if kind not in KINDS:
        raise TargetSpecError(f"{where}: field 'kind' is {kind!r}; use one of {', '.join(KINDS)}")
    for key in entry:
        if key == "kind" or key in FIELDS[kind]:
            continue
        if key in ALL_FIELDS:
            raise TargetSpecError(
                f"{where}: field '{key}' does not apply to kind '{kind}'; it takes "
                f"{', '.join(FIELDS[kind])}"
            )
        close = difflib.get_close_matches(key, ALL_FIELDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TargetSpecError(
            f"{where}: unknown field '{key}'{hint}; kind '{kind}' takes {', '.join(FIELDS[kind])}"
        )
    fields = _Fields(entry, where)
    config = TargetConfig(
        name=name,
        kind=kind,
        where=where,
        command=fields.command(),
        env=fields.env(),
        url=fields.url(),
        factory=fields.text("factory"),
        startup_timeout=fields.seconds("startup_timeout"),
        capabilities=fields.capabilities("capabilities"),
        capabilities_add=fields.capabilities("capabilities_add") or frozenset(),
        capabilities_remove=fields.capabilities("capabilities_remove") or frozenset(),
        cancel_keys=fields.keys(),
        prompt_marker=fields.text("prompt_marker"),
    )
    if config.capabilities is not None and (config.capabilities_add or config.capabilities_remove):
        raise TargetSpecError(
            f"{where}: give either 'capabilities' (the full set) or 'capabilities_add' / "
            "'capabilities_remove' (changes to the kind's default), not both"
        )
    if kind == "python" and config.factory is None:
        raise TargetSpecError(
            f"{where}: field 'factory' is missing; add factory = \"pkg.module:make_target\""
        )
    if kind == "http" and config.url is not None and config.command is not None:
        raise TargetSpecError(
            f"{where}: give 'url' (a server already running) or 'command' (one to start), not both"
        )
    return config


class _Fields:
    """Typed reads of one target table; a wrong type names the field and an example."""

    def __init__(self, entry: dict[str, Any], where: str) -> None:
        self.entry, self.where = entry, where

    def bad(self, key: str, expected: str) -> TargetSpecError:
        return TargetSpecError(
            f"{self.where}: field '{key}' is {self.entry[key]!r}; expected {expected}"
        )

    def text(self, key: str) -> str | None:
        value = self.entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.bad(key, "a non-empty string")
        return value

    def command(self) -> str | tuple[str, ...] | None:
        value = self.entry.get("command")
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise self.bad("command", 'a command line, such as "my-agent --acp" or ["my-agent"]')

    def env(self) -> dict[str, str]:
        value = self.entry.get("env", {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.bad("env", 'a table of strings, such as { OPENAI_BASE_URL = "{base_url}" }')
        return dict(value)

    def url(self) -> str | None:
        value = self.text("url")
        if value is not None and not value.startswith(("http://", "https://")):
            raise self.bad("url", 'an http(s) URL, such as "http://127.0.0.1:8000"')
        return value

    def seconds(self, key: str) -> float | None:
        value = self.entry.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.bad(key, "seconds above 0, such as 30")
        return float(value)

    def capabilities(self, key: str) -> frozenset[Capability] | None:
        value = self.entry.get(key)
        if value is None:
            return None
        known = [c.value for c in Capability]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.bad(key, 'a list of capability names, such as ["cancel", "transcript"]')
        for item in value:
            if item not in known:
                close = difflib.get_close_matches(item, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TargetSpecError(
                    f"{self.where}: field '{key}': unknown capability '{item}'{hint}; "
                    f"known: {', '.join(known)}"
                )
        return frozenset(Capability(v) for v in value)

    def keys(self) -> tuple[str, ...] | None:
        value = self.entry.get("cancel_keys")
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(v, str) and v for v in items)
        ):
            raise self.bad("cancel_keys", 'key names or strings, such as ["esc"] or ["ctrl-c"]')
        return tuple(_key(str(v)) for v in items)


def _key(text: str) -> str:
    """A key name (esc, ctrl-c, enter) as the bytes a terminal sends; anything else as is."""
    return KEY_NAMES.get(text.lower(), text)


# ------------------------------------------------------------------------- building


def build_target(config: TargetConfig, defects: Sequence[str] = ()) -> Target:
    """A fresh, unstarted target from its configuration."""
    if config.capabilities_add or config.capabilities_remove:
        default = _build(config, defects, None).capabilities
        chosen = (frozenset(default) | config.capabilities_add) - config.capabilities_remove
        return _build(config, defects, chosen)
    return _build(config, defects, config.capabilities)


def _build(
    config: TargetConfig, defects: Sequence[str], capabilities: frozenset[Capability] | None
) -> Target:
    name = config.name + ("+" + ",".join(defects) if defects else "")
    process: dict[str, Any] = {"defects": tuple(defects), "name": name}
    if config.env:
        process["env"] = dict(config.env)
    if config.startup_timeout is not None:
        process["startup_timeout"] = config.startup_timeout
    if capabilities is not None:
        process["capabilities"] = capabilities
    target: Any
    if config.kind == "reference":
        from harness.targets.reference import ReferenceTarget

        target = ReferenceTarget(defects=defects)
        target.name = name
    elif config.kind == "python":
        from harness.targets.python import make_python_target

        target = make_python_target(config.factory or "", defects)
    elif config.kind == "acp":
        acp = load_kind(
            "acp",
            "AcpTarget",
            "reference_acp_command",
            "REFERENCE_CAPABILITIES",
            "THIRD_PARTY_CAPABILITIES",
        )
        if config.command is None:
            from harness.targets.reference import reference_cli_args

            command: Any = acp.reference_acp_command(tuple(defects))
            process.setdefault("capabilities", acp.REFERENCE_CAPABILITIES)
            process["settings_args"] = reference_cli_args
        else:
            command = check_command(config.command, config.env, config.where)
            process.setdefault("capabilities", acp.THIRD_PARTY_CAPABILITIES)
        target = acp.AcpTarget(command=command, **process)
    elif config.kind == "http":
        http = load_kind("http", "HttpTarget")
        if config.command is not None:
            process["command"] = check_command(config.command, config.env, config.where)
        target = http.HttpTarget(url=config.url, **process)
    else:
        target = _build_pty(config, process)
    if capabilities is not None and config.kind in ("reference", "python"):
        try:
            target.capabilities = capabilities
        except AttributeError:
            raise TargetSpecError(
                f"{config.where}: its target object does not allow setting capabilities; "
                "declare them in the adapter instead"
            ) from None
    made: Target = target
    return made


def _build_pty(config: TargetConfig, process: dict[str, Any]) -> Target:
    from harness.targets.pty import (
        REFERENCE_CHAT_CAPABILITIES,
        PtyTarget,
        reference_chat_args,
        reference_chat_command,
    )

    if config.prompt_marker is not None:
        process["prompt_marker"] = config.prompt_marker
    if config.cancel_keys is not None:
        process["cancel_keys"] = config.cancel_keys
    if config.command is not None:
        command = check_command(config.command, config.env, config.where)
        return PtyTarget(command=command, **process)
    process.setdefault("capabilities", REFERENCE_CHAT_CAPABILITIES)
    return PtyTarget(
        command=reference_chat_command(process["defects"]),
        settings_args=reference_chat_args,
        **process,
    )


def load_kind(kind: str, *names: str) -> Any:
    """`harness.targets.KIND`, imported on first use; checks that it exports `names`."""
    module_name = f"harness.targets.{kind}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetSpecError(
            f"{kind} targets are not available ({exc}); reinstall the project (pip install -e .)"
        ) from None
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise TargetSpecError(
            f"{kind} targets are not available: {module_name} lacks {', '.join(missing)}"
        )
    return module


def check_command(
    command: str | Sequence[str], env: Mapping[str, str], where: str
) -> str | list[str]:
    """The command as given, once its program is known to exist (unless it is a template)."""
    try:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError as exc:
        raise TargetSpecError(f"{where}: cannot parse the command {command!r} ({exc})") from None
    if not argv:
        raise TargetSpecError(f"{where}: the command is empty; give the agent's command line")
    program = argv[0]
    path = env.get("PATH") if "{" not in env.get("PATH", "") else None
    if "{" not in program and shutil.which(program, path=path) is None:
        raise TargetSpecError(
            f"{where}: program '{program}' not found; install it, or give its full path"
        )
    return command if isinstance(command, str) else list(command)
