"""What a target is, checked: the one `TargetConfig` that `--target SPEC` and TOML both become.

    [targets.my-agent]         # ./cancel-harness.toml ([tool.cancel-harness.targets.NAME]
    kind = "acp"               # in ./pyproject.toml)
    command = ["npx", "my-acp-agent"]
    env = { OPENAI_BASE_URL = "{base_url}", OPENAI_API_KEY = "{api_key}" }
    providers = ["openai-chat"]
    capabilities_add = ["tools"]

A `TargetConfig` checks itself when made, whatever it came from: placeholders, key names,
field combinations. Every mistake is one TargetSpecError line naming where it is (the
file, the target and the field, or the `--target` spec) and how to mend it. See
docs/targets.md; `harness.targets.build` turns a config into a target.
"""

from __future__ import annotations

import difflib
import math
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fake_providers.kinds import ProviderKind, UnknownProviderKind
from harness.target import Capability


class TargetSpecError(ValueError):
    """A target the harness cannot build; the message says what is wrong and how to mend it."""


class Via(StrEnum):
    """How the agent reaches the fake provider (docs/proxy.md)."""

    DIRECT = "direct"  # its base URL points at the fake provider
    PROXY = "proxy"  # it keeps its real base URL and goes through `cancel-harness proxy`


def via_value(value: object, where: str) -> Via:
    if value not in list(Via):
        raise TargetSpecError(f'{where} is {value!r}; expected "proxy" or "direct"')
    return Via(str(value))


class TargetKind(StrEnum):
    """How the harness drives the agent (docs/targets.md)."""

    ACP = "acp"
    HTTP = "http"
    PTY = "pty"
    PYTHON = "python"
    REFERENCE = "reference"


# What `{name}` in a command, an env value or a URL may be (harness.targets.process fills
# them per case); `{{` and `}}` are literal braces.
PLACEHOLDERS = ("base_url", "api_key", "ca_file", "provider")
DEFAULT_STARTUP_TIMEOUT = 30.0
MAX_STARTUP_TIMEOUT = 600.0
MAX_CLOSE_WITHIN = 10.0
# Keys a pty target can send by name; anything else is written as { text = "..." }.
KEY_NAMES: Mapping[str, str] = {
    "esc": "\x1b",
    "escape": "\x1b",
    "enter": "\r",
    "return": "\r",
    "tab": "\t",
    "backspace": "\x7f",
    "space": " ",
    **{f"ctrl-{c}": chr(ord(c) - 96) for c in string.ascii_lowercase},
}
KEYS_HELP = 'key names (esc, enter, tab, backspace, space, ctrl-a ... ctrl-z) or { text = "..." }'


def key_bytes(name: str, where: str) -> str:
    """What the terminal receives for a key name (`ctrl+c` works as `ctrl-c`)."""
    key = name.strip().lower().replace("ctrl+", "ctrl-")
    if key in KEY_NAMES:
        return KEY_NAMES[key]
    close = difflib.get_close_matches(key, list(KEY_NAMES), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise TargetSpecError(f"{where}: unknown key {name!r}{hint}; use {KEYS_HELP} for literal text")


def check_template(text: str, where: str) -> None:
    """`text` uses only the known placeholders, and writes literal braces as `{{` `}}`."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise TargetSpecError(
            f"{where}: {text!r} has an unmatched brace; write {{{{ and }}}} for literal "
            "braces, {base_url} and the like for placeholders"
        ) from None
    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            close = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            hint = f" (did you mean '{{{close[0]}}}'?)" if close else ""
            raise TargetSpecError(
                f"{where}: unknown placeholder {{{name}}}{hint} in {text!r}; known: {known}; "
                "write {{ and }} for literal braces"
            )
        if spec or conversion:
            raise TargetSpecError(
                f"{where}: placeholder {{{name}}} takes no format in {text!r}; write {{{name}}}"
            )


def command_parts(command: str | Sequence[str], where: str) -> list[str]:
    """The command's argv before placeholders are filled (a string is split like a shell)."""
    try:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError as exc:
        raise TargetSpecError(f"{where}: cannot parse the command {command!r} ({exc})") from None
    if not argv:
        raise TargetSpecError(f"{where}: the command is empty; give the agent's command line")
    return argv


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One target, checked. `name` is set for a configured target (TOML); a `--target` spec
    leaves it None and the kind names the target."""

    kind: TargetKind
    where: str  # "cancel-harness.toml: target 'x'" or "target 'acp:my-agent'", for messages
    name: str | None = None
    command: str | tuple[str, ...] | None = None  # None: the reference agent's front door
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    factory: str | None = None
    startup_timeout: float | None = None
    capabilities: frozenset[Capability] | None = None
    capabilities_add: frozenset[Capability] = frozenset()
    capabilities_remove: frozenset[Capability] = frozenset()
    cancel_keys: tuple[str, ...] | None = None  # what the terminal receives, in order
    prompt_marker: str | None = None
    providers: tuple[ProviderKind, ...] | None = None  # wire formats the agent speaks
    close_within: float | None = None  # seconds: bound on the provider close after a cancel
    via: Via = Via.DIRECT  # PROXY: real base URL, HTTPS_PROXY to the case's provider

    def __post_init__(self) -> None:
        where = self.where
        if self.capabilities is not None and (self.capabilities_add or self.capabilities_remove):
            raise TargetSpecError(
                f"{where}: give either 'capabilities' (the full set) or 'capabilities_add' / "
                "'capabilities_remove' (changes to the kind's default), not both"
            )
        if self.kind is TargetKind.PYTHON and not self.factory:
            raise TargetSpecError(
                f"{where}: field 'factory' is missing; add factory = \"pkg.module:make_target\""
            )
        if self.url is not None and self.command is not None:
            raise TargetSpecError(
                f"{where}: give 'url' (a server already running) or 'command' (one to start), "
                "not both"
            )
        if self.command is not None:
            for part in command_parts(self.command, where):
                check_template(part, f"{where}: command")
        for key, value in self.env.items():
            check_template(value, f"{where}: env {key}")
        if self.via is Via.PROXY and (self.kind is TargetKind.REFERENCE or self.url is not None):
            raise TargetSpecError(
                f'{where}: via = "proxy" needs an agent the harness starts with its '
                "environment (acp, http or pty with a command, or a python adapter); "
                + (
                    "the in-process reference agent takes no proxy: use --target acp or http"
                    if self.url is None
                    else "a server already running at a url keeps the environment it has"
                )
            )
        if self.url is not None and ("{" in self.url or "}" in self.url):
            raise TargetSpecError(
                f"{where}: placeholders are not filled in a url (the agent's own server, "
                f"already running and pointed at the provider); write its address: {self.url!r}"
            )

    def capabilities_over(self, default: frozenset[Capability]) -> frozenset[Capability]:
        """The target's capabilities: the full set given, or the kind's default changed."""
        if self.capabilities is not None:
            return self.capabilities
        return (default | self.capabilities_add) - self.capabilities_remove

    def label(self, defects: Sequence[str]) -> str | None:
        """A configured target's name, with the defects switched on."""
        if self.name is None:
            return None
        return self.name + ("+" + ",".join(defects) if defects else "")


# ------------------------------------------------------------------------- field values


def capability_set(value: object, where: str) -> frozenset[Capability]:
    known = [c.value for c in Capability]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TargetSpecError(
            f"{where} is {value!r}; expected a list of capability names, such as "
            '["cancel", "transcript"]'
        )
    for item in value:
        if item not in known:
            close = difflib.get_close_matches(item, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TargetSpecError(
                f"{where}: unknown capability '{item}'{hint}; known: {', '.join(known)}"
            )
    return frozenset(Capability(v) for v in value)


def provider_kinds(value: object, where: str) -> tuple[ProviderKind, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise TargetSpecError(
            f'{where} is {value!r}; expected provider kinds, such as ["anthropic"] '
            f"(known: {', '.join(ProviderKind)})"
        )
    try:
        return tuple(dict.fromkeys(ProviderKind.parse(v) for v in value))
    except UnknownProviderKind as exc:
        raise TargetSpecError(f"{where}: {exc}") from None


def seconds(value: object, where: str, example: str, limit: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= limit
    ):
        raise TargetSpecError(
            f"{where} is {value!r}; expected seconds above 0 and at most {limit:g}, "
            f"such as {example}"
        )
    return float(value)


def cancel_keys(value: object, where: str) -> tuple[str, ...]:
    """Key names, or `{ text = "..." }` for literal text (a bare string is always a name)."""
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list) or not items:
        raise TargetSpecError(
            f'{where} is {value!r}; expected a list of {KEYS_HELP}, such as ["esc"]'
        )
    keys: list[str] = []
    for item in items:
        if isinstance(item, str):
            keys.append(key_bytes(item, where))
        elif isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
            if not item["text"]:
                raise TargetSpecError(f'{where}: {{ text = "" }} sends nothing; drop it')
            keys.append(item["text"])
        else:
            raise TargetSpecError(
                f'{where}: {item!r} is neither a key name nor {{ text = "..." }}; use {KEYS_HELP}'
            )
    return tuple(keys)
