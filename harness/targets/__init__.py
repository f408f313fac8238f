"""Target kinds: how the harness drives an agent. `make_target` turns `--target SPEC` into one.

    reference                 the reference agent, in-process
    NAME                      a target configured in ./cancel-harness.toml or ./pyproject.toml
    acp | acp:COMMAND         an ACP agent over stdio (plain: the reference agent's ACP door)
    http | http:URL           the HTTP+SSE API (plain: the reference agent's server);
                              a bare http(s)://... URL works too
    pty | pty:COMMAND         a terminal agent driven by keystrokes (plain: the reference chat)
    python:MODULE:FACTORY     a Python adapter: MODULE.FACTORY() returns a Target

A spec and a TOML table both become a checked `TargetConfig` (config.py, spec.py,
config_files.py); `build_target` (build.py) is the one builder. Kinds load lazily, so
`cancel-harness list` never imports pexpect or an ACP client. See docs/targets.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from harness.target import Target
from harness.targets.build import build_target
from harness.targets.config import TargetConfig, TargetKind, TargetSpecError, Via
from harness.targets.config_files import load_targets
from harness.targets.spec import KINDS_HELP, parse_spec

__all__ = [
    "KINDS_HELP",
    "TargetConfig",
    "TargetKind",
    "TargetSpecError",
    "Via",
    "build_target",
    "load_targets",
    "make_target",
    "resolve_target",
]


def resolve_target(spec: str) -> TargetConfig:
    """The checked configuration `spec` names (TOML files are read only for a bare name)."""
    return parse_spec(spec, load_targets)


def make_target(spec: str, defects: Sequence[str] = (), via: str | None = None) -> Target:
    """A fresh, unstarted target for `spec`, with the given defect switches; `via` ("proxy"
    or "direct") overrides how the configuration says the agent reaches the provider."""
    config = resolve_target(spec)
    if via is not None:
        config = replace(config, via=Via(via))
    return build_target(config, defects)
