"""Target kinds: how the harness drives an agent. `make_target` turns `--target SPEC` into one.

Only `reference` (the in-process reference agent) exists today; `python:`, `acp:`, `http:`
and `pty:` targets are coming.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.target import Target

COMING = ("python:", "acp:", "http:", "pty:")


class TargetSpecError(ValueError):
    """A `--target` the harness cannot build; the message says which kinds exist."""


def make_target(spec: str, defects: Sequence[str] = ()) -> Target:
    """A fresh, unstarted target for `spec` ("reference"), with the given defect switches."""
    if spec == "reference":
        try:
            from harness.targets.reference import ReferenceTarget
        except ImportError as exc:
            raise TargetSpecError(
                f"the reference target cannot be loaded ({exc}); reinstall the project "
                "(pip install -e .) or check harness/targets/reference.py"
            ) from exc
        target: Target = ReferenceTarget(defects=defects)
        return target
    coming = next((p for p in COMING if spec.startswith(p)), None)
    if coming is not None:
        raise TargetSpecError(
            f"target kind '{coming}' is not available yet; use --target reference "
            "(the only kind today)"
        )
    raise TargetSpecError(
        f"unknown target '{spec}'; use --target reference (python:, acp:, http: and pty: "
        "targets are coming)"
    )
