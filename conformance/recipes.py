"""Render the suite's targets (targets_template.toml) into a cancel-harness.toml for a cache.

The template names the cache's paths with `${PYTHON}`, `${NPM}` and `${NODE}`; the harness's
own `{base_url}`-style placeholders are left for it to fill per case.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from conformance.agents import NODE_PACKAGE

TEMPLATE = Path(__file__).parent / "targets_template.toml"


@dataclass(frozen=True, slots=True)
class CachePaths:
    """Where scripts/conformance keeps installs, homes and runs."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def npm(self) -> Path:
        return self.root / "npm"

    @property
    def node_bin(self) -> Path:
        package = NODE_PACKAGE.rsplit("@", 1)[0]
        return self.npm / "node22" / "node_modules" / package / "bin"

    @property
    def node(self) -> Path:
        return self.node_bin / "node"

    @property
    def stamps(self) -> Path:
        return self.root / "stamps"

    @property
    def homes(self) -> Path:
        return self.root / "homes"


def render(paths: CachePaths, template: str | None = None) -> str:
    """The template with the cache's paths filled in."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    values = {"${PYTHON}": paths.python, "${NPM}": paths.npm, "${NODE}": paths.node}
    for token, value in values.items():
        text = text.replace(token, str(value))
    return text


def target_tables(text: str) -> dict[str, object]:
    """The `[targets.NAME]` tables of a rendered file."""
    data = tomllib.loads(text)
    targets = data.get("targets", {})
    return dict(targets) if isinstance(targets, dict) else {}
