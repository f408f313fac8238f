"""Named targets from TOML: `[targets.NAME]` in ./cancel-harness.toml, or
`[tool.cancel-harness.targets.NAME]` in ./pyproject.toml (docs/targets.md).

Each table becomes a `TargetConfig`; its mistakes (and near misses such as `[target.x]`,
which TOML would happily ignore) are one TargetSpecError line naming the file, the target
and the field.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.targets.config import (
    DEFAULT_STARTUP_TIMEOUT,
    MAX_CLOSE_WITHIN,
    MAX_STARTUP_TIMEOUT,
    TargetConfig,
    TargetKind,
    TargetSpecError,
    Via,
    cancel_keys,
    capability_set,
    provider_kinds,
    seconds,
    via_value,
)

COMMON = (
    "capabilities",
    "capabilities_add",
    "capabilities_remove",
    "providers",
    "close_within",
    "via",
)
PROCESS = ("command", "env", "startup_timeout")
FIELDS: Mapping[TargetKind, tuple[str, ...]] = {  # what each kind takes besides `kind`
    TargetKind.ACP: (*PROCESS, *COMMON),
    TargetKind.HTTP: (*PROCESS, "url", *COMMON),
    TargetKind.PTY: (*PROCESS, "cancel_keys", "prompt_marker", *COMMON),
    TargetKind.PYTHON: ("factory", *COMMON),
    TargetKind.REFERENCE: COMMON,
}
ALL_FIELDS = ("kind", *dict.fromkeys(f for fs in FIELDS.values() for f in fs))
KINDS = ", ".join(TargetKind)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NEAR_MISSES = ("targets", "cancel-harness")  # sections whose misspellings we point out
FILES = (
    ("cancel-harness.toml", ("targets",)),
    ("pyproject.toml", ("tool", "cancel-harness", "targets")),
)


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
                first = found[name].where.split(": target")[0]
                raise TargetSpecError(f"{where} is also defined in {first}; keep one of the two")
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
    """The table at `keys`; a near miss on the way (`[target.x]`, `[tool.cancel_harness]`)
    is an error rather than a table nobody reads."""
    table: Any = data
    for depth, key in enumerate(keys):
        if not isinstance(table, dict):
            break
        for other, value in table.items() if key in NEAR_MISSES else ():
            if other != key and difflib.get_close_matches(other, [key], n=1, cutoff=0.8):
                child = [next(iter(value))] if isinstance(value, dict) and value else []
                wrong = _header([*keys[:depth], other, *child])
                fixed = _header([*keys[:depth], key, *child])
                raise TargetSpecError(
                    f"{shown}: [{wrong}] is never read; write [{fixed}] "
                    f"(targets live in [{_header(keys)}.NAME])"
                )
        table = table.get(key, {})
    if not isinstance(table, dict):
        header = _header(keys)
        raise TargetSpecError(f"{shown}: [{header}] must be a table of [{header}.NAME] tables")
    return table


def _header(keys: Sequence[str]) -> str:
    return ".".join(k if NAME.fullmatch(k) else f'"{k}"' for k in keys)


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
    raw_kind = entry.get("kind")
    if raw_kind is None:
        raise TargetSpecError(
            f"{where}: field 'kind' is missing; add kind = \"acp\" (one of {KINDS})"
        )
    if raw_kind not in list(TargetKind):
        raise TargetSpecError(f"{where}: field 'kind' is {raw_kind!r}; use one of {KINDS}")
    kind = TargetKind(raw_kind)
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
    return TargetConfig(
        kind=kind,
        where=where,
        name=name,
        command=fields.command(),
        env=fields.env(),
        url=fields.url(),
        factory=fields.text("factory"),
        startup_timeout=fields.get("startup_timeout", _startup_timeout),
        capabilities=fields.get("capabilities", capability_set),
        capabilities_add=fields.get("capabilities_add", capability_set) or frozenset(),
        capabilities_remove=fields.get("capabilities_remove", capability_set) or frozenset(),
        cancel_keys=fields.get("cancel_keys", cancel_keys),
        prompt_marker=fields.text("prompt_marker"),
        providers=fields.get("providers", provider_kinds),
        close_within=fields.get("close_within", _close_within),
        via=fields.get("via", via_value) or Via.DIRECT,
    )


def _startup_timeout(value: object, where: str) -> float:
    return seconds(value, where, f"{DEFAULT_STARTUP_TIMEOUT:g}", MAX_STARTUP_TIMEOUT)


def _close_within(value: object, where: str) -> float:
    return seconds(value, where, "0.5", MAX_CLOSE_WITHIN)


class _Fields:
    """Typed reads of one target table; a wrong type names the field and an example."""

    def __init__(self, entry: dict[str, Any], where: str) -> None:
        self.entry, self.where = entry, where

    def get[T](self, key: str, read: Callable[[object, str], T]) -> T | None:
        """`read(value, "WHERE: field 'KEY'")` when the field is there."""
        value = self.entry.get(key)
        return None if value is None else read(value, f"{self.where}: field '{key}'")

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
